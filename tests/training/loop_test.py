"""A run whose checkpoint, metrics or encoder cannot be written (disk full) stops with an error
naming the file and the last good checkpoint, which stays intact; bad workdirs; one run per
workdir (`matpac-train` twice on one workdir, then after SIGKILL of the holder)."""

import errno
import hashlib
import os
import pathlib
import signal
import subprocess

import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.training import checkpoint
from matpac_keras.training.loop import WriteError, train
from matpac_keras.training.metrics_log import MetricsWriter, read_metrics
from tests.cli.train_test import REPO, _env, _start, _wait_for_checkpoint

pytestmark = pytest.mark.single_backend  # file writing: the same under every backend
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _tiny():
    """`configs/demo.py:tiny` for 10 steps (2 epochs of 5), a checkpoint every 2 steps."""
    config = load_config(pathlib.Path(REPO) / "configs" / "demo.py", "tiny")
    config.train.update(dict(epochs=2.0, verbose=0, tensorboard=False))
    return config


def _digests(workdir) -> dict[int, str]:
    return {
        step: hashlib.sha256(path.read_bytes()).hexdigest()
        for step, path in checkpoint.list_checkpoints(workdir)
    }


def _full_disk_at(monkeypatch, target, attribute, step_of, fail_at):
    """Makes `target.attribute` write part of its output and then raise ENOSPC at step
    `fail_at` (`step_of(args)`: the step of a call)."""
    original = getattr(target, attribute)

    def failing(*args, **kwargs):
        if step_of(args) == fail_at:
            raise OSError(ENOSPC.errno, ENOSPC.strerror, "<the file>")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, attribute, failing)


def test_disk_full_while_checkpointing_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    original_savez = np.savez
    saved_steps = []

    def savez(file, **arrays):  # the disk fills up half way through the checkpoint of step 6
        step = checkpoint.json.loads(str(arrays["metadata"]))["step"]
        saved_steps.append(step)
        if step == 6:
            file.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file.name)
        return original_savez(file, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", savez)
    with pytest.raises(WriteError) as raised:
        train(_tiny(), tmp_path)
    last_good = tmp_path / "checkpoints" / "ckpt-00000004.npz"
    partial = tmp_path / "checkpoints" / "ckpt-00000006.npz.tmp"
    assert str(raised.value) == (
        f"{partial}: cannot write: No space left on device. Last good checkpoint: {last_good} "
        "(intact). Free space (or make the folder writable) and run the same command again to "
        "resume."
    )
    assert saved_steps == [2, 4, 6]
    assert sorted(_digests(tmp_path)) == [2, 4] and not partial.exists()
    metadata, _ = checkpoint.read_checkpoint(last_good)  # readable, complete
    assert metadata["step"] == 4
    # Space freed: the same command resumes from step 4 and finishes.
    monkeypatch.setattr(checkpoint.np, "savez", original_savez)
    before = _digests(tmp_path)
    result = train(_tiny(), tmp_path)
    assert result.step == result.total_steps == 10 and result.failure is None
    after = _digests(tmp_path)
    assert {s: after[s] for s in before} == before and sorted(after) == [2, 4, 6, 8, 10]


@pytest.mark.parametrize("what", ["metrics", "encoder"])
def test_disk_full_while_writing_metrics_or_the_encoder(tmp_path, monkeypatch, what):
    if what == "metrics":  # the row of step 7
        _full_disk_at(monkeypatch, MetricsWriter, "write", lambda args: args[1], 7)
        last_good = "ckpt-00000006.npz"
    else:  # backbone.keras, after the last checkpoint
        import keras

        _full_disk_at(monkeypatch, keras.Model, "save", lambda args: "backbone", "backbone")
        last_good = "ckpt-00000010.npz"
    with pytest.raises(WriteError, match="cannot write: No space left on device") as raised:
        train(_tiny(), tmp_path)
    assert f"Last good checkpoint: {tmp_path / 'checkpoints' / last_good} (intact)" in str(
        raised.value
    )
    before = _digests(tmp_path)
    assert max(before) == int(last_good[5:13])
    assert not list(tmp_path.glob("**/*.tmp*")) and not (tmp_path / "backbone.keras").exists()
    assert [r["step"] for r in read_metrics(tmp_path)][-1] <= int(last_good[5:13]) + 1


def test_workdir_that_is_a_file_gets_one_line(tmp_path):
    workdir = tmp_path / "file"
    workdir.write_text("not a folder")
    result = subprocess.run(
        [
            os.sys.executable,
            "-c",
            "import sys; from matpac_keras.cli.train import run; sys.argv[0] = 'matpac-train'; "
            "run()",
            "--config=configs/demo.py:tiny",
            f"--workdir={workdir}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=_env(),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: --workdir {workdir}: is a file, not a folder"
    )
    assert "Traceback" not in result.stderr and workdir.read_text() == "not a folder"


@pytest.mark.slow  # 2 training processes
def test_second_run_on_a_workdir_is_refused_until_the_holder_dies(tmp_path):
    long_run = ("--config.train.tensorboard=False",)
    holder = _start(tmp_path, *long_run, epochs=1000)  # 5,000 steps: still running below
    try:
        _wait_for_checkpoint(holder, tmp_path, 2)
        second = subprocess.run(
            [
                os.sys.executable,
                "-m",
                "matpac_keras.cli.train",
                "--config=configs/demo.py:tiny",
                f"--workdir={tmp_path}",
                "--config.train.verbose=0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env=_env(),
        )
        assert holder.poll() is None
        assert second.returncode == 1
        assert f"Error: --workdir {tmp_path}: in use by pid {holder.pid} on " in second.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        assert holder.wait() == -signal.SIGKILL
    # The killed holder's lock file stays behind; the next run takes it over at once (that it
    # then resumes exactly is tests/cli/train_real_audio_test.py's subject).
    assert (tmp_path / ".lock").exists()
    taken = subprocess.run(
        [
            os.sys.executable,
            "-c",
            "import sys; from matpac_keras.workdir_lock import workdir_lock\n"
            "with workdir_lock(sys.argv[1]):\n    print('taken')",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=_env(),
    )
    assert taken.returncode == 0 and taken.stdout == "taken\n", taken.stderr[-3000:]
