"""`matpac-convert`: an official MATPAC / MATPAC++ PyTorch checkpoint -> a `.keras` file.

Reads `.pt` files without PyTorch (matpac_keras.torch_checkpoint) and `.npz` exports of a
state_dict. Encoder-only files give a MatpacBackbone; full training files a MatpacPretrainer
(student, predictor, heads, teachers and centre), from which `matpac-embed` uses the student.

    matpac-convert --checkpoint matpac_encoder.pt --output matpac.keras
"""

import os
import sys

import numpy as np
from absl import flags, logging

from matpac_keras.cli.entry import run_app

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Official checkpoint: a .pt file (or .npz of its tensors).")
flags.DEFINE_string("output", None, "Where to write the .keras file.")
flags.DEFINE_integer(
    "num_heads", None, "Encoder attention heads. Default: encoder width / 64 (ViT convention)."
)
flags.DEFINE_integer(
    "predictor_num_heads", None, "Predictor attention heads. Default: predictor width / 32."
)
flags.DEFINE_integer("num_mels", 80, "Mel bins of the model's input.")
flags.mark_flags_as_required(["checkpoint", "output"])


def read_state_dict(path: str) -> dict:
    """A state_dict from a `.pt` file or an `.npz` (nested keys written as `outer/inner`)."""
    from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if path.endswith(".npz"):
        state: dict = {}
        with np.load(path) as arrays:
            for key in arrays.files:
                outer, _, inner = key.rpartition("/") if key.startswith("_") else ("", "", key)
                (state.setdefault(outer, {}) if outer else state)[inner] = arrays[key]
        return state
    return find_state_dict(load_torch_checkpoint(path))


def main(argv):
    del argv
    from matpac_keras.convert import model_from_state_dict

    state = read_state_dict(FLAGS.checkpoint)
    model = model_from_state_dict(
        state, FLAGS.num_heads, FLAGS.predictor_num_heads, num_mels=FLAGS.num_mels
    )
    output = FLAGS.output if FLAGS.output.endswith(".keras") else FLAGS.output + ".keras"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    model.save(output)
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
