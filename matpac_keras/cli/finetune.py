r"""`matpac-finetune`: fine-tunes a MATPAC backbone end to end on a downstream task.

    matpac-finetune --config=configs/finetune.py --workdir=runs/ft \
        --config.task=esc50 --config.model=matpac.keras --config.manual_dir=/data/ESC-50-master

The config is an ml_collections file (`get_config(variant)`); any field is overridden with
`--config.<field>=...`. See matpac_keras/evaluation/finetune.py for what runs and what is written
into the workdir (classifier.keras, history.csv, results.json).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from matpac_keras.cli.entry import run_app

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Fine-tuning config file: configs/finetune.py, or configs/finetune.py:<fsdd|tiny>.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Where the classifier, history and results are written.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from matpac_keras.evaluation.finetune import check_config, finetune

    try:
        check_config(_CONFIG.value)
    except (ValueError, FileNotFoundError) as error:  # a bad field value, a missing model
        raise app.UsageError(str(error)) from error
    try:
        finetune(_CONFIG.value, FLAGS.workdir)
    except FileNotFoundError as error:  # a dataset not prepared, a missing manual_dir
        raise app.UsageError(str(error)) from error


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
