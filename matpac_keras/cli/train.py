r"""matpac-train: MATPAC / MATPAC++ pretraining from a config file, resumable.

Usage:
  matpac-train --config=configs/demo.py --workdir=runs/demo
  matpac-train --config=configs/matpac.py --workdir=runs/matpac \
      --config.data.source=/data/tfds/matpac_audioset/1.0.0 --config.optim.lr=1e-4

--config is a Python file whose get_config() returns an ml_collections ConfigDict; append
":<variant>" to pick a variant (configs/demo.py:tiny). Any field can be overridden with
--config.<field>=<value>; an unknown field is an error. The fields are documented in
configs/matpac.py.

The workdir receives:
  checkpoints/ckpt-<step>.npz  weights, optimizer, teachers, centre, step, mask RNG and data
                               position; written atomically every train.checkpoint_every steps
                               and at the end, the newest train.keep_checkpoints kept
  metrics.jsonl                one JSON object per logged step (every train.log_every steps)
  tensorboard/                 the same scalars as TensorBoard events (train.tensorboard)
  config.json                  the config of the latest start
  config.<step>.json           the config that trained up to <step>, kept when a resumed run
                               changed it (--config.allow_config_change=True)
  backbone.keras               the student encoder, at the end (for matpac-embed)
  probe.json                   with evaluate.linear_probe: pretrained vs random-init accuracy
                               (and the starting encoder's, with --config.init_from)

--config.init_from=PATH starts from a checkpoint (an official .pt, or a .keras file or preset of
a MatpacBackbone or MatpacPretrainer), whose architecture replaces config.model's: further
pre-training on your audio. The run first prints what it loaded, what starts fresh and which
config.model fields changed.

Run again on the same workdir, it resumes from the newest checkpoint (ignoring --config.init_from,
and saying so), with the config that checkpoint recorded: other values (another optim.lr, a longer
train.epochs, ...) are refused, naming the fields, unless --config.allow_config_change=True,
which continues with them and keeps the old config as config.<step>.json (verbosity,
TensorBoard, the checkpoints kept and the probe's evaluate.* may change freely). One run at a
time holds a workdir (a second is refused, naming the first's pid).
The run counts its source first (unless data.num_examples is set) and prints how many clips it
found, used and dropped, by reason, before the first step. Every numeric field is checked against
its range (matpac_keras/config_ranges.py) before any work; NaN and infinities are refused.
A non-finite loss, a failing input pipeline or a failed write (disk full, ...) stops the run
with exit status 1 and keeps the checkpoints already written, naming the last good one.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from matpac_keras.allocator import return_freed_memory
from matpac_keras.cli.entry import run_app

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Training config file, optionally with a variant: configs/demo.py or configs/demo.py:tiny.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the encoder.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from matpac_keras.training.experiment import check_config
    from matpac_keras.training.loop import train

    check_config(_CONFIG.value)  # before the backend's start-up: a bad field fails at once
    result = train(_CONFIG.value, FLAGS.workdir, announce=lambda line: print(line, flush=True))
    if result.failure is not None:
        kept = result.checkpoint if result.checkpoint is not None else "none written"
        sys.exit(
            f"matpac-train: stopped: {result.failure}. Last good checkpoint: {kept}. "
            "Lower optim.lr (or check the data) and run again to resume from it."
        )
    print(f"trained {result.step} of {result.total_steps} steps; encoder: {result.backbone_path}")
    if result.probe is not None:
        print(probe_line(result.probe))


def probe_line(probe: dict) -> str:
    """The printed verdict of a run's probe (see `matpac_keras.training.probe`)."""
    clips = probe["probe_clips"]
    start = ""
    if "init_from" in probe:
        start = f", starting encoder (init_from) {probe['init_from']['accuracy']:.1%}"
    return (
        f"linear probe on {probe['description']} ({clips['train']} train, {clips['test']} "
        f"test): pretrained {probe['pretrained']['accuracy']:.1%}, random init "
        f"{probe['random_init']['accuracy']:.1%}{start} (chance {probe['chance']:.0%})"
    )


def run():
    """The console entry point: `--help` shows this module's docstring and flags."""
    # The demo's probe fits many small NumPy problems: OpenBLAS threads competing with the
    # backend's for the cores made it ~10x slower on a 2-core machine. Set before NumPy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Freed step buffers go back to the system (0.2-0.3 GiB less peak memory on ViT-B, CPU).
    return_freed_memory()
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
