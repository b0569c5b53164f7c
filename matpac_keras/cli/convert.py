"""`matpac-convert`: an official MATPAC / MATPAC++ PyTorch checkpoint -> a keras-hub preset
directory or a `.keras` file.

Reads `.pt` files without PyTorch (matpac_keras.torch_checkpoint) and `.npz` exports of a
state_dict. The architecture is read from the tensors (the attention heads, which shapes do not
show, default to width / 64, the ViT convention all published models follow); the published
files (`matpac_keras.presets`) are recognised by name and checked against their entry.

    matpac-convert --checkpoint matpac_plus_6s_2048_enconly.pt --output matpac_plus  # preset
    matpac-convert --checkpoint matpac_10_2048.pt --output matpac.keras [--overwrite]
    matpac-convert --checkpoint matpac_plus_as_48_1_map_enc_and_head.pt --output as_tagger
    matpac-convert --checkpoint matpac_plus_6s_2048_enconly.pt --probe esc50.pth --task esc50 \
        --output esc50_tagger

The authors' heads (SPEC section 9) give a `MatpacAudioClassifier` with its labels and audio
preprocessor: an AudioSet fine-tuned file with its head (`head_norm.*`, `head.*`) the 527-class
AudioSet tagger (BatchNorm + Linear on the frequency-averaged clip embedding of its 992-frame
chunks), and `--probe` one of their probe heads (`probe.weight` [n, 5 x D]) on the encoder-only
file it was trained on, with `--task`'s labels (`matpac_keras.class_mappings.TASK_HEADS`).

An `--output` ending in `.keras` gets a `.keras` file: a MatpacBackbone for encoder-only files,
a MatpacPretrainer (student, predictor, heads, teachers and centre) for training files. Any
other name gets a preset directory (config.json, model.weights.h5, metadata.json,
audio_converter.json) holding the (student) encoder and its audio converter, which
`keras_hub.models.Backbone.from_preset(DIR)` and every `--model` flag load.

The output is checked before the checkpoint is read (an existing one is refused without
--overwrite) and written atomically: a failed or killed run leaves no partial file or folder.
"""

import sys

from absl import app, flags, logging

from matpac_keras.class_mappings import TASK_HEADS
from matpac_keras.cli.entry import run_app
from matpac_keras.errors import InputError
from matpac_keras.outputs import atomic_output, check_output

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Official checkpoint: a .pt file (or .npz of its tensors).")
flags.DEFINE_string(
    "output",
    None,
    "Where to write: a name ending in .keras gets a .keras file, any other a keras-hub preset "
    "directory (the encoder and its audio converter).",
)
flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
flags.DEFINE_integer(
    "num_heads",
    None,
    "Encoder attention heads. Default: encoder width / 64 (ViT convention).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "predictor_num_heads",
    None,
    "Predictor attention heads. Default: predictor width / 32.",
    lower_bound=1,
)
flags.DEFINE_integer("num_mels", 80, "Mel bins of the model's input.", lower_bound=1)
flags.DEFINE_string(
    "probe",
    None,
    "One of the authors' probe heads (a .pth of probe.weight [n, 5 x D] and probe.bias) to put "
    "on the encoder-only --checkpoint it was trained on; needs --task.",
)
flags.DEFINE_enum(
    "task",
    None,
    list(TASK_HEADS),
    "The task of --probe (its labels); 'audioset' for a fine-tuned file with its head.",
)
flags.mark_flags_as_required(["checkpoint", "output"])


def check_published(path: str, backbone) -> None:
    """For a published file (by name), its architecture checked against `presets.py`.

    Raises:
        CheckpointMismatchError: the file's tensors disagree with its entry.
    """
    from matpac_keras.backbone import BACKBONE_VARIANTS
    from matpac_keras.convert import CheckpointMismatchError
    from matpac_keras.presets import published_checkpoint

    entry = published_checkpoint(path)
    if entry is None:
        return
    expected = dict(BACKBONE_VARIANTS[entry.variant], max_frames=entry.max_frames)
    found = {key: getattr(backbone, key) for key in expected}
    if found != expected:
        raise CheckpointMismatchError(
            f"named as the published {entry.file} ({entry.description}: {expected}), but its "
            f"tensors give {found}"
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    preset = not FLAGS.output.endswith(".keras")
    output = check_output(  # before the work: exists? writable?
        FLAGS.output.rstrip("/") or FLAGS.output, FLAGS.overwrite, folder=preset, flag="--output"
    )
    if FLAGS.task is not None and FLAGS.probe is None and FLAGS.task != "audioset":
        raise app.UsageError(f"--task={FLAGS.task} names the task of a --probe head: pass --probe")
    from matpac_keras.torch_checkpoint import read_state_dict

    state = read_state_dict(FLAGS.checkpoint)  # before Keras is imported: fails in a moment
    probe = None if FLAGS.probe is None else read_state_dict(FLAGS.probe, flag="--probe")
    if probe is not None and FLAGS.task is None:
        raise app.UsageError("--probe needs --task: the task the head was trained on")
    from matpac_keras.convert import (
        CheckpointMismatchError,
        classifier_from_state_dict,
        has_classification_head,
        model_from_state_dict,
    )

    where = f"--checkpoint {FLAGS.checkpoint}"
    try:
        if probe is not None or has_classification_head(state):
            if probe is not None:
                where = f"--checkpoint {FLAGS.checkpoint} with --probe {FLAGS.probe}"
            model = classifier_from_state_dict(
                state, probe, FLAGS.task, FLAGS.num_heads, num_mels=FLAGS.num_mels
            )
        else:
            model = model_from_state_dict(
                state, FLAGS.num_heads, FLAGS.predictor_num_heads, num_mels=FLAGS.num_mels
            )
        check_published(FLAGS.checkpoint, getattr(model, "backbone", model))
    except CheckpointMismatchError as error:
        raise InputError(f"{where}: {error}") from error
    backbone = getattr(model, "backbone", model)
    classifier = model is not backbone and not hasattr(model, "predictor")
    with atomic_output(output, overwrite=FLAGS.overwrite, folder=preset) as temporary:
        if preset and classifier:
            model.save_to_preset(temporary)
        elif preset:
            from matpac_keras.saving import save_preset

            save_preset(backbone, temporary)
        else:
            model.save(temporary)
    logging.info(
        "wrote %s: %s, encoder D=%d depth=%d heads=%d max_frames=%d",
        output,
        type(model).__name__,
        backbone.embed_dim,
        backbone.depth,
        backbone.num_heads,
        backbone.max_frames,
    )
    kind = type(model if classifier or not preset else backbone).__name__
    kind = f"preset of the {kind}" if preset else kind
    if classifier:
        kind += f", {model.num_classes} classes"
    print(f"wrote {output} ({kind})")


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
