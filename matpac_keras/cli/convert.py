"""`matpac-convert`: an official MATPAC / MATPAC++ PyTorch checkpoint -> a `.keras` file.

Reads `.pt` files without PyTorch (matpac_keras.torch_checkpoint) and `.npz` exports of a
state_dict. Encoder-only files give a MatpacBackbone; full training files a MatpacPretrainer
(student, predictor, heads, teachers and centre), from which `matpac-embed` uses the student.

    matpac-convert --checkpoint matpac_encoder.pt --output matpac.keras [--overwrite]

The output is checked before the checkpoint is read (an existing file is refused without
--overwrite) and written atomically: a failed or killed run leaves no partial file.
"""

import os
import sys
import zipfile

import numpy as np
from absl import app, flags, logging

from matpac_keras.cli.entry import run_app
from matpac_keras.errors import InputError
from matpac_keras.outputs import OutputError, atomic_output, check_output, with_suffix

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Official checkpoint: a .pt file (or .npz of its tensors).")
flags.DEFINE_string("output", None, "The .keras file to write (.keras is appended if missing).")
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
flags.mark_flags_as_required(["checkpoint", "output"])


def read_state_dict(path: str) -> dict:
    """A state_dict from a `.pt` file or an `.npz` (nested keys written as `outer/inner`)."""
    from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

    if os.path.isdir(path):
        raise InputError(f"--checkpoint {path}: is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--checkpoint {path}: no such file")
    if path.endswith(".npz"):
        state: dict = {}
        try:
            with np.load(path) as arrays:
                for key in arrays.files:
                    outer, _, inner = key.rpartition("/") if key.startswith("_") else ("", "", key)
                    (state.setdefault(outer, {}) if outer else state)[inner] = arrays[key]
        except (ValueError, zipfile.BadZipFile, EOFError) as error:
            raise InputError(f"--checkpoint {path}: not an .npz file of tensors") from error
        return state
    return find_state_dict(load_torch_checkpoint(path))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        output = with_suffix(FLAGS.output, ".keras")
    except OutputError as error:
        raise OutputError(f"--output {error}") from None
    check_output(
        output, overwrite=FLAGS.overwrite, flag="--output"
    )  # before the work: exists? writable?
    state = read_state_dict(FLAGS.checkpoint)  # before Keras is imported: fails in a moment
    from matpac_keras.convert import CheckpointMismatchError, model_from_state_dict

    try:
        model = model_from_state_dict(
            state, FLAGS.num_heads, FLAGS.predictor_num_heads, num_mels=FLAGS.num_mels
        )
    except CheckpointMismatchError as error:
        raise InputError(f"--checkpoint {FLAGS.checkpoint}: {error}") from error
    with atomic_output(output, overwrite=FLAGS.overwrite) as temporary:
        model.save(temporary)
    backbone = getattr(model, "backbone", model)
    logging.info(
        "wrote %s: %s, encoder D=%d depth=%d heads=%d max_frames=%d",
        output,
        type(model).__name__,
        backbone.embed_dim,
        backbone.depth,
        backbone.num_heads,
        backbone.max_frames,
    )
    print(f"wrote {output} ({type(model).__name__})")


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
