"""`matpac-train` as a user runs it on the synthetic demo corpus: its logs, TensorBoard events
and probe; diverging. Also the helpers of the real-audio runs (tests/cli/train_real_audio_test.py),
which SIGKILL runs and resume them.

The runs use `configs/demo.py:tiny` (D=32, one block, 4-crop batches, 5 steps per epoch) under
the current KERAS_BACKEND. That a run SIGKILLed half way and started again ends in exactly the
state of an uninterrupted run (same student, teachers, centre, step counter, mask generator,
optimizer moments and schedules, hence the same logged metrics) is tested on real audio, from a
folder and from a TFDS directory, in tests/cli/train_real_audio_test.py.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from matpac_keras.training.checkpoint import list_checkpoints, read_checkpoint
from matpac_keras.training.metrics_log import read_metrics

TINY = "configs/demo.py:tiny"
EPOCHS = 8  # 40 steps, a checkpoint every 2
TOTAL = 40
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(workdir, *overrides, config=TINY, epochs=EPOCHS):
    return [
        sys.executable,
        "-m",
        "matpac_keras.cli.train",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.train.epochs={epochs}",
        "--config.train.verbose=0",
        "--config.deterministic=True",
        *overrides,
    ]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}


def _run(workdir, *overrides, ok=True, **command) -> subprocess.CompletedProcess:
    """Runs `matpac-train` to its end; `command`: `_command`'s config and epochs."""
    result = subprocess.run(
        _command(workdir, *overrides, **command),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=_env(),
    )
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result


def _start(workdir, *overrides, **command) -> subprocess.Popen:
    return subprocess.Popen(
        _command(workdir, *overrides, **command),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_checkpoint(process, workdir, step: int) -> None:
    """Waits until `workdir` holds a checkpoint at `step` or later (the run still going)."""
    deadline = time.monotonic() + 240
    while not [s for s, _ in list_checkpoints(workdir) if s >= step]:
        assert process.poll() is None, "the run ended before writing the checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.005)


def _kill_mid_way(workdir, *overrides, total=TOTAL, **command) -> int:
    """Starts a run, SIGKILLs it once a checkpoint at half way (of `total` steps) or later
    exists; returns the step of the newest complete checkpoint."""
    process = _start(workdir, *overrides, **command)
    _wait_for_checkpoint(process, workdir, total // 2)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return list_checkpoints(workdir)[-1][0]


def assert_same_checkpoint(path_a, path_b) -> None:
    """Two checkpoints hold the same step and bit-identical arrays, variable by variable."""
    meta_a, arrays_a = read_checkpoint(path_a)
    meta_b, arrays_b = read_checkpoint(path_b)
    assert meta_a["step"] == meta_b["step"]
    assert meta_a.get("epoch_lengths") == meta_b.get("epoch_lengths")
    assert meta_a["data_position"] == meta_b["data_position"]
    for group in ("model", "optimizer"):
        assert list(arrays_a[group]) == list(arrays_b[group])
        for name, value in arrays_a[group].items():
            np.testing.assert_array_equal(arrays_b[group][name], value, err_msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, with TensorBoard and the linear probe."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax")))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    reference = tmp_path_factory.mktemp("reference")
    finished = _run(
        reference, "--config.train.tensorboard=True", "--config.evaluate.linear_probe=True"
    )
    return {"reference": reference, "reference_stdout": finished.stdout}


@pytest.mark.slow  # the runs fixture: a training process
def test_logs_hold_the_metrics_and_tensorboard_events(runs):
    rows = read_metrics(runs["reference"])
    assert [r["step"] for r in rows] == list(range(1, TOTAL + 1))
    expected = {"loss", "loss_cls", "loss_pred", "lr", "teacher_temp", "grad_norm"}
    expected |= {"z_hat_m_std", "z_m_std", "teacher_perplexity", "teacher_classes"}
    expected |= {"argmax_agreement"}
    assert expected <= set(rows[0])
    for row in rows:
        assert np.isclose(row["loss"], 0.5 * row["loss_cls"] + 0.5 * row["loss_pred"], rtol=1e-5)
    # tau_t: 0.04 -> 0.07 over 1 epoch (5 steps), logged at the step of the update (0-based).
    taus = [r["teacher_temp"] for r in rows]
    np.testing.assert_allclose(taus[:7], [0.04, 0.046, 0.052, 0.058, 0.064, 0.07, 0.07], 1e-6)
    # lr: linear warm-up over 5 steps to 5e-4, then cosine to 1e-5 at step 40.
    lrs = [r["lr"] for r in rows]
    np.testing.assert_allclose(lrs[:6], [0, 1e-4, 2e-4, 3e-4, 4e-4, 5e-4], rtol=1e-6)
    cosine = 1e-5 + (5e-4 - 1e-5) * 0.5 * (1 + np.cos(np.pi * (np.arange(5, 40) - 5) / 35))
    np.testing.assert_allclose(lrs[5:], cosine, rtol=1e-5)
    events = _tensorboard_scalars(runs["reference"] / "tensorboard")
    assert sorted(events["loss"]) == list(range(1, TOTAL + 1))
    for row in rows:
        for name in expected:
            assert np.isclose(events[name][row["step"]], row[name], rtol=1e-6), name
    assert json.loads((runs["reference"] / "config.json").read_text())["train"]["epochs"] == 8
    assert (runs["reference"] / "backbone.keras").is_file()


@pytest.mark.slow  # the runs fixture: a training process
def test_finished_run_prints_and_writes_the_probe(runs):
    probe = json.loads((runs["reference"] / "probe.json").read_text())
    assert probe["probe_clips"] == {"train": 40, "test": 40} and probe["chance"] == 0.1
    accuracies = [probe[name]["accuracy"] for name in ("pretrained", "random_init")]
    assert all(0 <= a <= 1 for a in accuracies)
    lines = runs["reference_stdout"].splitlines()
    backbone = runs["reference"] / "backbone.keras"
    assert f"trained {TOTAL} of {TOTAL} steps; encoder: {backbone}" in lines
    assert (
        "linear probe on held-out synthetic clips (40 train, 40 test): "
        f"pretrained {accuracies[0]:.1%}, random init {accuracies[1]:.1%} (chance 10%)"
    ) in lines


def _tensorboard_scalars(logdir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar events under `logdir` (read with TensorFlow)."""
    tf = pytest.importorskip("tensorflow")
    scalars = {}
    for path in logdir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # the runs fixture: a training process
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(runs, tmp_path):
    workdir = tmp_path / "diverging"
    shutil.copytree(runs["reference"], workdir)
    before = {step: _digest(path) for step, path in list_checkpoints(workdir)}
    # Continue the finished run for 2 more epochs at an absurd learning rate.
    changed = ("--config.train.epochs=10", "--config.optim.lr=1e30")
    result = _run(workdir, *changed, "--config.allow_config_change=True", ok=False)
    assert "non-finite loss" in result.stderr
    assert f"Last good checkpoint: {workdir / 'checkpoints' / 'ckpt-00000040.npz'}" in (
        result.stderr
    )
    after = {step: _digest(path) for step, path in list_checkpoints(workdir)}
    assert after == before  # nothing written, nothing removed, nothing changed
    assert not list((workdir / "checkpoints").glob("*.tmp"))
    rows = read_metrics(workdir)
    assert rows[-1]["loss"] in ("nan", "inf", "-inf")
    assert rows[-1]["step"] > TOTAL


def _entry_point(*args) -> subprocess.CompletedProcess:
    """The console script `matpac-train` (what `pip install` writes calls `run()` so)."""
    code = "import sys; from matpac_keras.cli.train import run; sys.argv[0] = 'matpac-train'; run()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=_env(),
    )


@pytest.mark.single_backend
def test_help_describes_the_command_and_its_flags():
    result = _entry_point("--help")  # absl exits with status 1 after the help
    for text in ("matpac-train --config=configs/demo.py --workdir=", "--config.optim.lr=1e-4"):
        assert text in result.stdout
    for flag in ("--config:", "--workdir:", "metrics.jsonl", "checkpoints/ckpt-<step>.npz"):
        assert flag in result.stdout


@pytest.mark.single_backend
@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.optim.learnin_rate=1", "no field optim.learnin_rate"),
        ("--config.optimm.lr=1", "no field optimm (did you mean --config.optim?)"),
    ],
)
def test_unknown_config_field_is_named(tmp_path, override, message):
    result = _entry_point(f"--config={TINY}", f"--workdir={tmp_path}", override)
    assert result.returncode == 1
    assert f"Error: {override}: the config has no field" in result.stderr
    assert message in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.single_backend
def test_missing_data_source_is_named(tmp_path):
    missing = tmp_path / "no_such_corpus"
    result = _entry_point(
        f"--config={TINY}", f"--workdir={tmp_path}", f"--config.data.source={missing}"
    )
    assert result.returncode == 1
    assert f"Error: config.data.source '{missing}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())
