"""`config.train.steps_per_execution`: several steps per call of the compiled step give the run
one step per call gives (metrics rows, checkpoints' weights), on every backend; and the
config checks that keep logging and checkpoints on execution boundaries."""

import pathlib

import keras
import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.errors import InputError
from matpac_keras.training import checkpoint
from matpac_keras.training.experiment import check_config
from matpac_keras.training.loop import train
from matpac_keras.training.metrics_log import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tiny(steps_per_execution: int):
    """`configs/demo.py:tiny` for 10 steps, a metrics row every 2, checkpoints every 4."""
    config = load_config(REPO / "configs" / "demo.py", "tiny")
    config.train.update(dict(epochs=2.0, verbose=0, tensorboard=False))
    config.train.update(dict(log_every=2, checkpoint_every=4, keep_checkpoints=10))
    config.train.steps_per_execution = steps_per_execution
    config.deterministic = True
    return config


def test_two_steps_per_execution_trains_as_one(tmp_path):
    if keras.backend.backend() == "torch":
        with pytest.raises(InputError, match="one step per call under the torch backend"):
            check_config(_tiny(2))
        return
    one, two = tmp_path / "one", tmp_path / "two"
    train(_tiny(1), one)
    train(_tiny(2), two)
    rows_one, rows_two = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two] == [2, 4, 6, 8, 10]
    for a, b in zip(rows_one, rows_two, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)
    steps = [step for step, _ in checkpoint.list_checkpoints(two)]
    assert steps == [step for step, _ in checkpoint.list_checkpoints(one)] == [4, 8, 10]
    with (
        np.load(checkpoint.latest_checkpoint(one)) as a,
        np.load(checkpoint.latest_checkpoint(two)) as b,
    ):
        weights = [k for k in a.files if k.startswith("weights/")] or a.files
        for key in weights:
            if np.issubdtype(a[key].dtype, np.floating):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.single_backend
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps_per_execution", 0, r"steps_per_execution=0: must be in \[1, inf\)"),
        ("steps_per_execution", 3, "log_every=2 must be a multiple of .*steps_per_execution=3"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    config = _tiny(1)
    config.train[field] = value
    with pytest.raises(InputError, match=message):
        check_config(config)


@pytest.mark.single_backend
def test_jit_compile_takes_true_false_or_none():
    config = _tiny(1)
    assert config.train.jit_compile is None  # Keras's "auto" for the small configs
    for value in (True, False, None):
        config.train.jit_compile = value
        check_config(config)
