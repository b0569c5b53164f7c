"""The training batches a run feeds: under multi-process JAX, each process its own rows."""

import pathlib

import jax
import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.training.data_source import TrainingData, process_rows

pytestmark = pytest.mark.single_backend
REPO = pathlib.Path(__file__).resolve().parents[2]


def _tiny(distribution: str):
    config = load_config(REPO / "configs" / "demo.py", "tiny")
    config.train.distribution = distribution
    return config


def test_one_process_feeds_the_whole_batch():
    assert process_rows(_tiny("data_parallel")) is None
    assert process_rows(_tiny("mirrored")) is None


def _batches(config, start, count):
    data = TrainingData(config)
    data.start({})
    return list(data.batches(start, count))


def test_each_of_two_processes_feeds_its_half(monkeypatch):
    config = _tiny("data_parallel")
    whole = [batch for batch in _batches(config, 3, 2)]
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    halves = []
    for index in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        halves.append([batch for (batch,) in _batches(config, 3, 2)])
    assert len(whole) == len(halves[0]) == 2
    for full, first, second in zip(whole, *halves, strict=True):
        assert len(first) == len(second) == len(full) // 2
        np.testing.assert_array_equal(np.concatenate([first, second]), full)


def test_batch_must_split_evenly_over_processes(monkeypatch):
    config = _tiny("data_parallel")
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        process_rows(config)
