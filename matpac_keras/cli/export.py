"""`matpac-export`: a MATPAC `.keras` model -> a TensorFlow SavedModel serving clip embeddings.

    matpac-export --model matpac.keras --output export/matpac/1
    matpac-export --model matpac.keras --head probe.keras --layers --output export/matpac/1
    matpac-export --model classifier.keras --head classifier.keras --crop_frames 608 --output DIR

The SavedModel's `serving_default` signature takes `waveform` (float32 [batch, samples], 16 kHz,
any length of at least 400 samples) and returns `embedding` [batch, F*D] (and `layers`
[batch, blocks, F*D] with --layers). With --head, a probe (a Keras model on embeddings
[batch, F*D]) or a fine-tuned MatpacAudioClassifier, and its labels (`HEAD.labels.json` beside it:
see matpac_keras/head_labels.py), a `classify` signature returns `probabilities`, `top_labels`
and `top_probabilities` (the top 5). A MatpacAudioClassifier scores with its own backbone; with
--crop_frames (its fine-tuning config's crop_frames) as fine-tuning's test did.

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

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model",
    None,
    "A MATPAC model: a preset directory or a .keras backbone, pretrainer or classifier.",
)
flags.DEFINE_string("output", None, "The SavedModel folder to write (new or empty).")
flags.DEFINE_string(
    "head", None, "Optional .keras probe on clip embeddings or MatpacAudioClassifier."
)
flags.DEFINE_string(
    "labels", None, "The head's label file. Default: HEAD.labels.json beside --head."
)
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Chunking mode (SPEC section 6).")
flags.DEFINE_bool("layers", False, "Also return every layer's clip embedding (`layers`).")
flags.DEFINE_integer(
    "crop_frames", None, "MatpacAudioClassifier --head: score crops of this length.", lower_bound=1
)
flags.DEFINE_bool("overwrite", False, "Replace an existing, non-empty --output folder.")
flags.mark_flags_as_required(["model", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.head and (FLAGS.labels or FLAGS.crop_frames is not None):
        raise app.UsageError("--labels and --crop_frames need --head")
    from matpac_keras.outputs import atomic_output, check_output

    # Before any model is read: refused if it exists (unless --overwrite) or cannot be written.
    check_output(FLAGS.output, overwrite=FLAGS.overwrite, folder=True, flag="--output")
    from matpac_keras.head_labels import load_head_labels  # before TensorFlow: fails faster

    head = head_labels = None
    if FLAGS.head:
        try:
            head_labels = load_head_labels(FLAGS.labels or FLAGS.head)
        except (OSError, ValueError) as error:
            raise app.UsageError(f"--head {FLAGS.head}: {error}") from error
    from matpac_keras.export import check_head, check_tensorflow_backend, export_saved_model
    from matpac_keras.saving import load_backbone, load_model

    check_tensorflow_backend()
    try:
        backbone = load_backbone(FLAGS.model)
    except (OSError, ValueError) as error:
        raise app.UsageError(f"--model: {error}") from error
    if FLAGS.head:
        try:
            head = load_model(FLAGS.head)
            check_head(head, head_labels, backbone, FLAGS.crop_frames)
        except (OSError, ValueError) as error:
            raise app.UsageError(f"--head {FLAGS.head}: {error}") from error
    # Written into a hidden sibling folder, renamed to --output when complete: TF Serving,
    # which loads the highest numeric version folder, never sees a partial export.
    with atomic_output(FLAGS.output, overwrite=FLAGS.overwrite, folder=True) as temporary:
        signatures = export_saved_model(
            backbone, temporary, FLAGS.mode, FLAGS.layers, head, head_labels, FLAGS.crop_frames
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
