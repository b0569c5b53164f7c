"""From a config to a run: checks that name the bad field, config files, the random init."""

import pathlib

import keras
import numpy as np
import pytest

from matpac_keras.errors import InputError
from matpac_keras.training.config_file import load_config
from matpac_keras.training.experiment import (
    build_backbone,
    build_pretrainer,
    check_config,
    run_budget,
    synthetic_clips,
)

DEMO = pathlib.Path(__file__).resolve().parents[1] / "configs" / "demo.py"


def _tiny():
    return load_config(DEMO, "tiny")


@pytest.mark.single_backend
@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("data.source", "/no/such/corpus", InputError, "config.data.source '/no/such"),
        ("data.source", None, ValueError, "config.data.source is not set"),
        ("data.num_examples", 21, ValueError, "config.data.num_examples=21, but .* 20 clips"),
        ("data.crop_frames", 48, ValueError, "config.data.crop_frames=48 exceeds"),
        ("data.synthetic.seconds", 0.2, ValueError, "seconds=0.2 gives clips of 18 frames"),
        ("train.warmup_epochs", 4.0, ValueError, "config.train.warmup_epochs=4.0 gives 20"),
        ("train.checkpoint_every", 3, ValueError, "checkpoint_every=3 must be a multiple"),
        ("train.log_every", 0, ValueError, "config.train.log_every must be at least 1"),
        ("train.distribution", "tpu", ValueError, "config.train.distribution must be one of"),
    ],
)
def test_check_config_names_the_field(field, value, error, message):
    config = _tiny()
    check_config(config)
    if field == "train.checkpoint_every":
        config.train.log_every = 2
    *parents, name = field.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    node[name] = value
    with pytest.raises(error, match=message):
        check_config(config)


@pytest.mark.single_backend
@pytest.mark.parametrize(
    "name, message",
    [
        ("nowhere", "probe_source 'nowhere': not one of"),
        ("no_such_module:probe_data", "probe_source 'no_such_module:probe_data': No module"),
        ("matpac_keras.demo.fsdd:nothing", "probe_source 'matpac_keras.demo.fsdd:nothing': "),
    ],
)
def test_a_bad_probe_source_is_named_before_the_run(name, message):
    config = _tiny()
    config.evaluate.linear_probe = True
    check_config(config)  # the synthetic probe of the demo corpus
    config.evaluate.probe_source = name
    with pytest.raises(InputError, match=message):
        check_config(config)


@pytest.mark.single_backend
def test_synthetic_corpus_is_counted_for_the_budget():
    config = _tiny()
    assert config.data.num_examples is None and synthetic_clips(config) == 20
    assert run_budget(config, synthetic_clips(config)).total_steps == 4 * 20 // 4


@pytest.mark.single_backend
def test_load_config_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(tmp_path / "nope.py")


def test_random_init_baseline_is_the_runs_initial_encoder():
    """The demo's random-init encoder: the one the run started from, weight for weight."""
    config = _tiny()
    keras.utils.set_random_seed(config.seed)
    student = build_pretrainer(config, run_budget(config, synthetic_clips(config))).backbone
    keras.utils.set_random_seed(config.seed)
    baseline = build_backbone(config.model)
    for a, b in zip(student.weights, baseline.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    keras.utils.set_random_seed(config.seed + 1)
    other = build_backbone(config.model)
    assert not np.array_equal(
        keras.ops.convert_to_numpy(other.weights[1]),
        keras.ops.convert_to_numpy(baseline.weights[1]),
    )
