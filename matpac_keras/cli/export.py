"""`matpac-export`: a MATPAC `.keras` model -> a TensorFlow SavedModel serving clip embeddings.

    matpac-export --model matpac.keras --output export/matpac/1
    matpac-export --model matpac.keras --head probe.keras --layers --output export/matpac/1
    matpac-export --model as_tagger --output export/as_tagger/1      # a classifier: + classify
    matpac-export --model runs/ft/classifier.keras --output DIR
    matpac-export --model matpac.keras --temporal_support=2 --hop=1 --output export/ts2/1

The SavedModel's `serving_default` signature takes `waveform` (float32 [batch, samples], 16 kHz,
any length of at least 400 samples) and returns `embedding` [batch, F*D] (and `layers`
[batch, blocks, F*D] with --layers). A `classify` signature returns `probabilities` [batch, K],
`top_labels` and `top_probabilities` (the top 5) when --model is a MatpacAudioClassifier (the
authors' heads converted by matpac-convert, or matpac-finetune's classifier.keras: its own
labels, scored as `matpac-tag` scores it) or with --head: a probe (a Keras model on embeddings
[batch, F*D], its labels in `HEAD.labels.json` beside it: see matpac_keras/head_labels.py) or a
MatpacAudioClassifier. A classifier's probabilities are a sigmoid of its logits if it is
multi-label, else a softmax (--activation chooses); it scores with its own backbone, by crops of
its own `crop_frames` (set by matpac-finetune) unless --crop_frames says otherwise.

--temporal_support, --hop and --aggregate choose the embedding's windows as matpac-embed's do
(windows of that many seconds, rounded to whole 0.16 s patch columns, one every --hop seconds,
each averaged over its time steps, then aggregated: mean, max or mean+max); the graph computes
them for waveforms of any length, in memory bounded by one window of the batch. A probe --head
scores that same embedding (its input is twice as wide with mean+max); a classifier scores its
own.

--output is checked before any model is read (an existing non-empty folder is refused without
--overwrite) and the SavedModel is written into a hidden sibling folder, renamed to --output when
complete: a failed or killed export leaves the old folder (or none), never a partial one.

The model may come from any backend; this command always runs Keras on TensorFlow: it sets
KERAS_BACKEND=tensorflow itself before Keras is imported.
"""

import os
import sys

from absl import app, flags, logging

from matpac_keras.cli.entry import run_app
from matpac_keras.cli.window_flags import check_window_flags, define_window_flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model",
    None,
    "A MATPAC model: a preset directory or a .keras backbone, pretrainer or classifier.",
)
flags.DEFINE_string("output", None, "The SavedModel folder to write (new or empty).")
flags.DEFINE_string(
    "head",
    None,
    "Optional .keras probe on clip embeddings, or a MatpacAudioClassifier (preset or .keras). "
    "Default: --model itself if it is a classifier.",
)
flags.DEFINE_string(
    "labels",
    None,
    "The head's label file. Default: a classifier's own labels, else HEAD.labels.json beside "
    "--head.",
)
flags.DEFINE_enum(
    "activation",
    None,
    ["sigmoid", "softmax"],
    "A classifier head's probabilities. Default: sigmoid if it is multi-label, else softmax.",
)
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Chunking mode (SPEC section 6).")
flags.DEFINE_bool("layers", False, "Also return every layer's clip embedding (`layers`).")
flags.DEFINE_integer(
    "crop_frames", None, "MatpacAudioClassifier --head: score crops of this length.", lower_bound=1
)
flags.DEFINE_bool("overwrite", False, "Replace an existing, non-empty --output folder.")
define_window_flags(__name__)
flags.mark_flags_as_required(["model", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from matpac_keras.model_path import check_model_path
    from matpac_keras.outputs import atomic_output, check_output

    # Before any model is read: refused if it exists (unless --overwrite) or cannot be written.
    check_output(FLAGS.output, overwrite=FLAGS.overwrite, folder=True, flag="--output")
    check_model_path(FLAGS.model)
    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.export import check_head, check_tensorflow_backend, export_saved_model
    from matpac_keras.head_labels import load_head_labels
    from matpac_keras.saving import is_classifier, load_backbone, load_classifier, load_model

    check_tensorflow_backend()
    head_path = FLAGS.head or (FLAGS.model if is_classifier(FLAGS.model) else None)
    if head_path is None and (FLAGS.labels or FLAGS.crop_frames is not None or FLAGS.activation):
        raise app.UsageError(
            "--labels, --crop_frames and --activation need --head or a classifier --model"
        )
    flag = "--head" if FLAGS.head else "--model"
    try:
        backbone = load_backbone(FLAGS.model)
    except (OSError, ValueError) as error:
        raise app.UsageError(f"--model: {error}") from error
    check_window_flags(backbone, FLAGS.temporal_support, FLAGS.hop)
    windows = dict(
        temporal_support=FLAGS.temporal_support, hop=FLAGS.hop, aggregate=FLAGS.aggregate
    )
    width = EmbeddingExtractor(backbone, **windows).embedding_size
    head = head_labels = None
    if head_path is not None:
        try:
            if is_classifier(head_path):
                head = load_classifier(head_path)
                head_labels = head.head_labels(FLAGS.activation)
            elif FLAGS.activation:
                raise app.UsageError("--activation needs a classifier head, not a probe")
            else:
                head = load_model(head_path)
            if FLAGS.labels or head_labels is None:
                head_labels = load_head_labels(FLAGS.labels or head_path)
            check_head(head, head_labels, backbone, FLAGS.crop_frames, width)
        except (OSError, ValueError) as error:
            raise app.UsageError(f"{flag} {head_path}: {error}") from error
    # Written into a hidden sibling folder, renamed to --output when complete: TF Serving,
    # which loads the highest numeric version folder, never sees a partial export.
    with atomic_output(FLAGS.output, overwrite=FLAGS.overwrite, folder=True) as temporary:
        signatures = export_saved_model(
            backbone,
            temporary,
            FLAGS.mode,
            FLAGS.layers,
            head,
            head_labels,
            FLAGS.crop_frames,
            **windows,
        )
    logging.info("signatures: %s", signatures)
    print(f"wrote {FLAGS.output}: signatures {', '.join(signatures)} (mode {FLAGS.mode})")


def run():
    previous = os.environ.get("KERAS_BACKEND", "tensorflow")
    if previous != "tensorflow":
        logging.info("KERAS_BACKEND=%s ignored: SavedModel export runs on TensorFlow", previous)
    os.environ["KERAS_BACKEND"] = "tensorflow"  # read by Keras when it is first imported
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
