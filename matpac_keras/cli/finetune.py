r"""`matpac-finetune`: fine-tunes a MATPAC backbone end to end on a downstream task.

    matpac-finetune --config=configs/finetune.py --workdir=runs/ft \
        --config.task=esc50 --config.model=matpac.keras --config.manual_dir=/data/ESC-50-master

    matpac-finetune --config=configs/finetune.py:audioset --workdir=runs/as \
        --config.model=matpac_plus_base_audioset --config.data_dir=~/tensorflow_datasets

The config is an ml_collections file (`get_config(variant)`); any field is overridden with
`--config.<field>=...` (an unknown field is an error). Every numeric field is checked against its
range (matpac_keras/config_ranges.py) before any work; NaN and infinities are refused.
See matpac_keras/evaluation/finetune.py for what runs and what is written into the workdir
(classifier.keras, classifier.labels.json, history.csv, results.json), and
matpac_keras/training/audioset_finetune.py for `config.task=audioset` (streamed,
class-balanced, counted in steps, checkpointed: the same command resumes a killed run).

One run per workdir: a second run on a workdir in use is refused, naming the holder's pid. The
outputs of an earlier run are refused before any work unless --overwrite; each output is
written atomically (a killed run leaves the old file or none, never a partial one).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from matpac_keras.cli.entry import run_app
from matpac_keras.errors import InputError

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Fine-tuning config file: configs/finetune.py, or configs/finetune.py:"
    "<fsdd|tiny|audioset|audioset_tiny>.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Where the classifier, history and results are written.")
flags.DEFINE_bool("overwrite", False, "Replace the outputs of an earlier run in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    filename = FLAGS["config"].config_filename
    if not os.path.isfile(filename.split(":")[0]):  # ml_collections defers this error
        raise InputError(f"--config {filename}: no such file")
    config = _CONFIG.value
    if config.task == "audioset":
        from matpac_keras.training.audioset_finetune import finetune_audioset as finetune
    else:
        from matpac_keras.evaluation.finetune import finetune

    # Checks the config, takes the workdir lock and checks the outputs before reading anything.
    finetune(config, FLAGS.workdir, overwrite=FLAGS.overwrite)


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
