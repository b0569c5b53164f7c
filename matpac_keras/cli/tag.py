"""`matpac-tag`: the most probable labels of audio clips, from a MATPAC classifier.

    matpac-tag --model as_tagger a.wav b.flac                 # top-5 AudioSet labels per clip
    matpac-tag --model esc50_tagger --top_k 3 --output tags.json clips/
    matpac-tag --model runs/ft/classifier.keras --input_list files.txt --output tags.npz

--model is a MatpacAudioClassifier: a preset directory or `.keras` file written by
matpac-convert (the authors' AudioSet tagger from an `enc_and_head` checkpoint, or one of their
probe heads with --probe and --task) or by matpac-finetune (`classifier.keras`). Inputs are
audio files (wav, flac, ogg, mp3, ...; any length, mixed to mono and resampled to 16 kHz),
folders (their audio files, recursively, sorted) and with --input_list a text file of paths (one
per line, relative to the list's folder; blank and `#` lines skipped).

Each clip is scored as `MatpacAudioClassifier.clip_logits` scores it: the head on the clip
embedding of the whole file (chunks of the model's `max_frames`, or crops of the classifier's
`crop_frames` when matpac-finetune trained it by crops; --crop_frames overrides). Probabilities
are a sigmoid of the logits (the default for multi-label heads: each tag on its own) or a
softmax (the default for single-label heads, and the authors' choice for every head: with
--activation=softmax the probabilities equal their inference package's).

--runtime=onnx or openvino runs the encoder in ONNX Runtime or OpenVINO (CPU), and the head in
NumPy: exported once from the model (under KERAS_BACKEND=tensorflow) into the cache folder
($MATPAC_ENCODER_CACHE, else ~/.cache/matpac_keras/encoders), keyed by the model file's content;
later runs find it there and import neither TensorFlow nor Keras. --precision=bfloat16 (with
openvino) computes the encoder in bfloat16.

Prints, per clip, its top --top_k labels (unless --notable). --output writes, atomically,
`tags.json` (a list of {"file", "labels", "probabilities"}, top-k, most probable first) or
`tags.npz` (`files` [N], `labels` [K], `probabilities` [N, K] of every class, `activation`, and
with --skip_errors the `skipped` files and their `errors`). Every file's header is read first:
a missing, unreadable or truncated file stops the run before any tagging, or with --skip_errors
is left out and listed. A file whose embedding or probabilities hold NaN or Inf (samples of 1e30
in a float file) stops the run naming it, or with --skip_errors is left out and listed.
"""

import os
import sys

from absl import app, flags

from matpac_keras.cli.entry import run_app
from matpac_keras.cli.runtime_flags import check_runtime_flags, define_runtime_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A MatpacAudioClassifier: a preset directory or a .keras file.")
flags.DEFINE_string(
    "output", None, "Optional file to write: NAME.json (top-k per clip) or NAME.npz (all classes)."
)
flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
flags.DEFINE_integer("top_k", 5, "Labels shown (and written to JSON) per clip.", lower_bound=1)
flags.DEFINE_enum(
    "activation",
    None,
    ["sigmoid", "softmax"],
    "Logits -> probabilities. Default: sigmoid for a multi-label classifier, else softmax.",
)
flags.DEFINE_integer(
    "crop_frames",
    None,
    "Score crops of this many frames. Default: the classifier's own (set by matpac-finetune), "
    "else whole chunks of its max_frames.",
    lower_bound=1,
)
flags.DEFINE_integer("batch_size", 16, "Chunks encoded at once.", lower_bound=1)
flags.DEFINE_bool(
    "skip_errors",
    False,
    "Leave out unreadable files and those of non-finite results (listed in an .npz output).",
)
flags.DEFINE_string(
    "input_list", None, "A text file of audio paths, one per line (relative to its folder)."
)
flags.DEFINE_bool("table", True, "Print each clip's top labels (--notable: only a summary).")
define_runtime_flags(__name__)
flags.mark_flags_as_required(["model"])

OUTPUT_SUFFIXES = (".json", ".npz")


def main(argv):
    if len(argv) < 2 and FLAGS.input_list is None:
        raise app.UsageError("give audio files or folders after the flags, or --input_list")
    from matpac_keras.model_path import check_model_path
    from matpac_keras.outputs import atomic_output, check_output

    if FLAGS.output is not None and not FLAGS.output.endswith(OUTPUT_SUFFIXES):
        raise app.UsageError(f"--output {FLAGS.output!r}: name a .json or an .npz file")
    # Before any model is read: the inputs exist, the output can be written.
    from matpac_keras.audio import input_audio_files

    paths = input_audio_files(argv[1:], FLAGS.input_list)
    if FLAGS.output is not None:
        check_output(FLAGS.output, FLAGS.overwrite, flag="--output")
    check_runtime_flags()
    check_model_path(FLAGS.model)
    from tqdm import tqdm

    from matpac_keras.tagging import tag_files

    classifier = _classifier()
    try:
        classifier.clip_extractor(FLAGS.crop_frames)
    except ValueError as error:
        raise app.UsageError(f"--crop_frames: {error}") from error
    with tqdm(total=len(paths), desc="tagging", unit="file", file=sys.stderr) as bar:
        tags = tag_files(
            classifier,
            paths,
            activation=FLAGS.activation,
            crop_frames=FLAGS.crop_frames,
            batch_size=FLAGS.batch_size,
            skip_errors=FLAGS.skip_errors,
            progress=bar.update,
        )
    if FLAGS.table:
        print(tags.table(FLAGS.top_k))
    if FLAGS.output is not None:
        with atomic_output(FLAGS.output, overwrite=FLAGS.overwrite) as temporary:
            tags.write(temporary, FLAGS.top_k, FLAGS.output.rpartition(".")[2])
    skipped = f", {len(tags.skipped)} skipped" if tags.skipped else ""
    written = f"; wrote {FLAGS.output}" if FLAGS.output is not None else ""
    print(
        f"tagged {len(tags.files)} clips with {len(tags.labels)} labels "
        f"({tags.activation}){skipped}{written}"
    )


def _classifier():
    """The --model classifier: in Keras, or with --runtime=onnx|openvino its cached export and
    head (`NumpyClassifier`: no Keras imported), exported first if the cache has none."""
    if FLAGS.runtime == "keras":
        from matpac_keras.saving import load_classifier

        return load_classifier(FLAGS.model)
    from matpac_keras.cli.runtime_flags import runtime_encoder
    from matpac_keras.numpy_classifier import NumpyClassifier, head_arrays, save_head

    loaded = []

    def load_backbone():
        from matpac_keras.saving import load_classifier

        loaded.append(load_classifier(FLAGS.model))
        return loaded[0].backbone

    encoder, _ = runtime_encoder(FLAGS.model, False, load_backbone)
    head = os.path.join(os.path.dirname(encoder.path), "head.npz")
    if not os.path.isfile(head):  # exported by this run, or by matpac-embed
        if not loaded:
            load_backbone()
        try:
            save_head(head_arrays(loaded[0]), head)
        except ValueError as error:
            raise app.UsageError(f"--runtime={FLAGS.runtime}: {error}: use Keras") from None
    return NumpyClassifier.load(head, encoder)


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
