"""From a config to a run: checks that name the bad field, config files, the random init."""

import pathlib

import keras
import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.demo.synthetic import make_corpus
from matpac_keras.errors import InputError
from matpac_keras.training.data_source import in_memory_corpus
from matpac_keras.training.experiment import (
    build_backbone,
    build_pretrainer,
    check_config,
    run_budget,
)
from matpac_keras.training.inputs import InMemoryCorpus

DEMO = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.py"


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
        ("data.synthetic.seconds", 0.2, ValueError, r"synthetic\): clips of 0.2 s give 18 frames"),
        (
            "data.synthetic.seconds",
            0.0,
            ValueError,
            r"synthetic.seconds=0.0: must be in \(0, inf\)",
        ),
        ("data.synthetic.clips_per_class", 0, ValueError, "clips_per_class=0: must be in"),
        ("train.warmup_epochs", 4.0, ValueError, "config.train.warmup_epochs=4.0 gives 20"),
        ("train.checkpoint_every", 3, ValueError, "checkpoint_every=3 must be a multiple"),
        ("train.log_every", 0, ValueError, r"config.train.log_every=0: must be in \[1"),
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
    corpus = in_memory_corpus(config)
    assert config.data.num_examples is None and corpus.num_clips == 20
    assert run_budget(config, corpus.num_clips).total_steps == 4 * 20 // 4
    expected, _ = make_corpus(2, 0.5, config.seed)  # the tiny config's 2 clips x 10, 0.5 s
    np.testing.assert_array_equal(corpus.waveforms(), expected)


@pytest.mark.single_backend
def test_an_in_memory_corpus_passed_as_the_source_is_checked_and_counted():
    """A corpus of one's own, given to the loop as `source` (config.data.source unused)."""
    config = _tiny()
    config.data.source = None
    corpus = InMemoryCorpus("my corpus", 12, 16000, lambda: np.zeros((12, 16000), "float32"))
    assert in_memory_corpus(config, corpus) is corpus
    check_config(config, corpus)
    config.data.num_examples = 13
    with pytest.raises(InputError, match="num_examples=13, but my corpus has 12 clips"):
        check_config(config, corpus)
    config.data.num_examples = None
    short = InMemoryCorpus("short", 12, 4000, lambda: np.zeros((12, 4000), "float32"))
    with pytest.raises(InputError, match="short: clips of 0.25 s give 23 frames, fewer than"):
        check_config(config, short)
    wrong = InMemoryCorpus("odd", 12, 16000, lambda: np.zeros((11, 16000), "float32"))
    with pytest.raises(ValueError, match=r"odd: made clips of shape \(11, 16000\), not the"):
        wrong.waveforms()


@pytest.mark.single_backend
def test_load_config_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(tmp_path / "nope.py")


def test_random_init_baseline_is_the_runs_initial_encoder():
    """The demo's random-init encoder: the one the run started from, weight for weight."""
    config = _tiny()
    keras.utils.set_random_seed(config.seed)
    budget = run_budget(config, in_memory_corpus(config).num_clips)
    student = build_pretrainer(config, budget).backbone
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
