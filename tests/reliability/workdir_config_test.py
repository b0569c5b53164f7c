"""Issue 25, items 5-6: a workdir with checkpoints resumes only with the config they recorded.

Rerunning a finished run with another optim.lr printed "trained 10 of 10 steps" and rewrote
config.json with a learning rate that never trained; another model.embed_dim ended in a
traceback. Now such a run is refused naming the fields that differ, before any step, and
config.json is left as it was; `config.allow_config_change=True` continues with the new values
and keeps the config that trained as config.<step>.json.
"""

import json
import pathlib
import shutil

import pytest

from matpac_keras.config_file import load_config
from matpac_keras.errors import InputError
from matpac_keras.training.loop import train
from tests.cli.run_cli import run_cli

pytestmark = pytest.mark.single_backend  # the workdir's bookkeeping: the same on every backend

DEMO = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.py"


def _tiny(**train):
    """`configs/demo.py:tiny` for 10 steps (2 epochs of 5), a checkpoint every 2 steps."""
    config = load_config(DEMO, "tiny")
    config.train.update({**dict(epochs=2.0, verbose=0, tensorboard=False), **train})
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("finished")
    result = train(_tiny(), workdir)
    assert result.step == result.total_steps == 10
    return workdir


def _copy(finished, tmp_path) -> pathlib.Path:
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    return workdir


def _files(workdir) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "field, value, change",
    [
        ("optim.lr", 1e-3, "optim.lr: 0.0005 -> 0.001"),
        ("model.embed_dim", 64, "model.embed_dim: 32 -> 64"),
        ("train.epochs", 4.0, "train.epochs: 2.0 -> 4.0"),
    ],
)
def test_another_config_on_a_finished_workdir_is_refused_naming_the_fields(
    finished, tmp_path, field, value, change
):
    workdir = _copy(finished, tmp_path)
    before = _files(workdir)
    config = _tiny()
    group, name = field.split(".")
    config[group][name] = value
    with pytest.raises(InputError) as raised:
        train(config, workdir)
    message = str(raised.value)
    assert message.startswith(f"config: differs from the config that trained {workdir} up to ")
    assert f"step 10 ({change}): use another --workdir, or set " in message
    assert message.endswith(
        "--config.allow_config_change=True to continue this run with the new values"
    )
    assert _files(workdir) == before  # config.json untouched, nothing trained or written


def test_what_does_not_change_training_may_change(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    config = _tiny(verbose=1, keep_checkpoints=3)
    result = train(config, workdir)
    assert result.step == result.total_steps == 10 and result.failure is None


def test_allow_config_change_continues_and_keeps_the_config_that_trained(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    config = _tiny(epochs=4.0)
    config.allow_config_change = True
    said = []
    result = train(config, workdir, announce=said.append)
    assert result.step == result.total_steps == 20 and result.failure is None
    kept = workdir / "config.10.json"
    assert said[0] == (
        "config changed at step 10 (train.epochs: 2.0 -> 4.0): the config that trained steps up "
        f"to 10 is kept as {kept}"
    )
    assert json.loads(kept.read_text())["train"]["epochs"] == 2.0
    assert json.loads((workdir / "config.json").read_text())["train"]["epochs"] == 4.0


def test_allow_config_change_of_the_architecture_is_one_error_naming_the_checkpoint(
    finished, tmp_path
):
    workdir = _copy(finished, tmp_path)
    config = _tiny()
    config.model.embed_dim = 64
    config.allow_config_change = True
    with pytest.raises(InputError, match=r"ckpt-00000010.npz: .* has shape \(.*32.*\) there"):
        train(config, workdir)
    assert not (workdir / "backbone.tmp.keras").exists()


def test_matpac_train_refuses_another_lr_in_one_line_and_prints_data_before_the_steps(tmp_path):
    workdir = tmp_path / "run"
    args = ["--config=configs/demo.py:tiny", f"--workdir={workdir}", "--config.train.epochs=2"]
    quiet = ["--config.train.tensorboard=False"]
    first = run_cli("train", *args, *quiet, "--config.train.verbose=1")
    lines = first.stdout.splitlines()
    # With stdout piped, the data line came after the steps' progress lines.
    assert lines[0] == (
        "data: 20 clips in the synthetic demo corpus (config.data.synthetic): 20 used, 0 dropped"
    )
    assert any(line.startswith("10/10") for line in lines[1:]), first.stdout
    assert lines[-1] == f"trained 10 of 10 steps; encoder: {workdir / 'backbone.keras'}"
    config_json = (workdir / "config.json").read_bytes()
    again = run_cli("train", *args, *quiet, "--config.optim.lr=0.001", ok=False)
    assert again.returncode == 1 and again.stdout == ""
    assert "Traceback" not in again.stderr and "data:" not in again.stderr  # before counting
    assert again.stderr.strip().splitlines()[-1] == (
        f"Error: config: differs from the config that trained {workdir} up to step 10 "
        "(optim.lr: 0.0005 -> 0.001): use another --workdir, or set "
        "--config.allow_config_change=True to continue this run with the new values"
    )
    assert (workdir / "config.json").read_bytes() == config_json
