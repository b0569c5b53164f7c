"""Issue 25, item 7: a full disk during `matpac-train` ends with the one `Error:` line naming
the last good checkpoint and exit status 1, whichever file it hits.

The TensorBoard events file is written by TensorFlow, whose full disk is a
ResourceExhaustedError, not an OSError: it escaped the run's write-error handling as a
traceback (and the events writer, left open, was flushed again at exit).
"""

import os
import pathlib
import subprocess
import sys

import pytest

from matpac_keras.config_file import load_config
from matpac_keras.training.loop import WriteError, train
from matpac_keras.training.metrics_log import MetricsWriter

pytestmark = pytest.mark.single_backend  # the TensorBoard writer is TensorFlow's on every backend

REPO = pathlib.Path(__file__).resolve().parents[2]

# Installs a TensorBoard events writer whose disk fills up at its 7th flush (step 7's row) and
# stays full (its close fails too). Shared by the in-process test and the CLI's process.
FULL_DISK = """
import tensorflow as tf
from matpac_keras.training import tensorboard

class FullDiskWriter:
    def __init__(self, writer, logdir):
        self.writer, self.logdir, self.flushes = writer, logdir, 0

    def as_default(self):
        return self.writer.as_default()

    def _full(self):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{self.logdir}/events.out.tfevents; No space left on device"
        )

    def flush(self):
        self.flushes += 1
        if self.flushes >= 7:
            self._full()
        self.writer.flush()

    def close(self):
        self.writer.close()
        if self.flushes >= 7:
            self._full()

original_init = tensorboard.TensorBoardWriter.__init__

def full_disk_init(self, logdir):
    original_init(self, logdir)
    self._writer = FullDiskWriter(self._writer, self.logdir)

tensorboard.TensorBoardWriter.__init__ = full_disk_init
"""


def _tiny():
    config = load_config(REPO / "configs" / "demo.py", "tiny")
    config.train.update(dict(epochs=2.0, verbose=0, tensorboard=True))
    return config


def test_a_full_disk_under_tensorboard_is_a_write_error_naming_the_last_checkpoint(
    tmp_path, monkeypatch
):
    from matpac_keras.training import tensorboard

    namespace = {}
    exec(FULL_DISK, namespace)  # noqa: S102 - the shared patch above
    monkeypatch.setattr(tensorboard.TensorBoardWriter, "__init__", namespace["full_disk_init"])
    with pytest.raises(WriteError) as raised:
        train(_tiny(), tmp_path)
    last_good = tmp_path / "checkpoints" / "ckpt-00000006.npz"
    assert str(raised.value) == (
        f"{tmp_path / 'tensorboard'}: cannot write: No space left on device. Last good "
        f"checkpoint: {last_good} (intact). Free space (or make the folder writable) and run the "
        "same command again to resume."
    )


def test_matpac_train_on_a_full_disk_exits_1_with_one_line(tmp_path):
    run = "import sys; from matpac_keras.cli.train import run; sys.argv[0] = 'matpac-train'; run()"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK + run, "--config=configs/demo.py:tiny"]
        + [f"--workdir={tmp_path}", "--config.train.epochs=2", "--config.train.verbose=0"]
        + ["--config.train.tensorboard=True"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 1, result.stderr[-3000:]
    for crash in ("Traceback", "Fatal Python error", "terminate called"):
        assert crash not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'tensorboard'}: cannot write: No space left on device. Last good "
        f"checkpoint: {tmp_path / 'checkpoints' / 'ckpt-00000006.npz'} (intact). Free space (or "
        "make the folder writable) and run the same command again to resume."
    )


def test_metrics_writer_closes_tensorboard_even_if_the_metrics_file_cannot_be_closed(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=True)
    closed = []

    class Unflushable:
        def close(self):
            raise OSError(28, "No space left on device", str(tmp_path / "metrics.jsonl"))

    writer._file.close()
    writer._file = Unflushable()
    events = writer._tensorboard
    real_close = events.close
    events.close = lambda: closed.append(real_close())
    with pytest.raises(OSError, match="No space left on device"):
        writer.close()
    assert closed == [None]
