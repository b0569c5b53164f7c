"""The training configs: loadable with every variant, one schema, the paper's figures, and the
MATPAC++ config runnable end to end (its `runlocal` variant, in-process)."""

import pathlib

import numpy as np
import pytest
from ml_collections import config_dict

from matpac_keras.config_file import load_config
from matpac_keras.demo.synthetic import NUM_CLASSES
from matpac_keras.distribute import default_dtype_policy, local_devices
from matpac_keras.schedules import StepBudget
from matpac_keras.training.experiment import build_backbone, check_config, run_budget

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
TRAINING = {
    "matpac": ("", "runlocal"),
    "matpac_plusplus": ("", "runlocal"),
    "demo": ("", "tiny", "fsdd"),
}


def load(name: str, arg: str | None = None) -> config_dict.ConfigDict:
    """`--config=configs/<name>.py[:arg]`, as config_flags loads it."""
    return load_config(CONFIGS / f"{name}.py", arg or None)


def _schema(config, prefix="") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, config_dict.ConfigDict):
            out.update(_schema(value, f"{prefix}{key}."))
        else:
            field = config._fields[key]
            kind = field.get_type() if isinstance(field, config_dict.FieldReference) else None
            out[prefix + key] = kind or type(value)
    return out


@pytest.mark.single_backend
def test_all_configs_share_one_schema():
    reference = _schema(load("matpac"))
    for name, variants in TRAINING.items():
        for arg in variants:
            assert _schema(load(name, arg)) == reference, (name, arg)
    with pytest.raises(ValueError, match="runlocal"):
        load("matpac", "big")
    with pytest.raises(ValueError, match="tiny' or 'fsdd"):
        load("demo", "big")


@pytest.mark.single_backend
def test_each_config_documents_its_command_and_passes_the_checks():
    for name, variants in TRAINING.items():
        doc = (CONFIGS / f"{name}.py").read_text()
        assert f"matpac-train --config=configs/{name}.py --workdir=" in doc
        for arg in variants:
            config = load(name, arg)
            if config.data.source is None:  # the paper's runs: the user names the corpus
                config.data.source = str(CONFIGS)
            check_config(config)


@pytest.mark.single_backend
def test_paper_config_is_the_papers_run():
    config = load("matpac")
    assert config.data.num_examples is None  # counted from the source by default
    # SPEC section 5: 294,816 updates, 19,654 warm-up, 9,827 for the tau_t ramp, at the
    # official run's clip count (configs/matpac.py's docstring).
    assert run_budget(config, 2_012_615) == StepBudget(294_816, 19_654, 9_827)
    assert (config.optim.lr, config.optim.beta_1, config.optim.beta_2) == (
        3e-4,
        0.9,
        0.95,
    )
    assert (config.optim.epsilon, config.optim.weight_decay) == (1e-6, 0.05)
    assert config.optim.global_clipnorm == 3.0 and config.train.global_batch_size == 2048
    assert config.data.crop_frames == config.model.max_frames == 608
    backbone = build_backbone(config.model)
    assert (backbone.embed_dim, backbone.depth, backbone.num_heads) == (768, 12, 12)
    assert config.model.dtype == "auto"  # bf16 on accelerators; the paper ran mixed_float16
    assert config.train.jit_compile is True and config.train.steps_per_execution == 1
    on_accelerator = bool(local_devices("GPU") or local_devices("TPU"))
    expected = "mixed_bfloat16" if on_accelerator else "float32"
    assert backbone.dtype_policy.name == default_dtype_policy() == expected
    assert config.model.encoder_ema == (0.99995, 0.99999) and config.model.head_ema == (0.998, 1.0)
    plusplus = load("matpac_plusplus")
    assert plusplus.model.num_prediction_heads == 5 and config.model.num_prediction_heads == 1
    plusplus.model.num_prediction_heads = 1
    assert plusplus.to_dict() == config.to_dict()  # MATPAC++ differs by its heads only


@pytest.mark.single_backend
def test_demo_config():
    config = load("demo")
    backbone = build_backbone(config.model)  # the model the docstring (and README) describe
    assert (backbone.embed_dim, backbone.depth, backbone.num_heads) == (128, 4, 4)
    assert backbone.max_frames == config.data.crop_frames == 128  # 1.28 s crops, 5 x 8 grid
    clips = config.data.synthetic.clips_per_class * NUM_CLASSES
    assert clips == 2000 and config.data.num_examples is None  # counted: the corpus' clips
    assert run_budget(config, clips) == StepBudget(2500, 125, 250)  # 40 epochs of 2,000 / 32
    assert config.evaluate.linear_probe and config.data.source == "synthetic"
    assert config.evaluate.probe_source == "synthetic"


@pytest.mark.single_backend
def test_fsdd_demo_config():
    config = load("demo", "fsdd")
    assert config.data.source.endswith("shared/data/fsdd/recordings")
    assert config.data.exclude == "*_[0-4].wav" and config.evaluate.probe_source == "fsdd_digits"
    assert config.data.crop_frames == config.model.max_frames == 32
    assert config.data.num_examples is None and config.evaluate.linear_probe


def test_matpac_plusplus_runlocal_trains(tmp_path):
    from matpac_keras.training.checkpoint import read_checkpoint
    from matpac_keras.training.loop import train
    from matpac_keras.training.metrics_log import read_metrics

    config = load("matpac_plusplus", "runlocal")
    config.train.epochs = 0.6  # 3 steps of 4 crops
    config.train.tensorboard = False
    config.train.verbose = 0
    result = train(config, tmp_path)
    assert result.failure is None and result.step == result.total_steps == 3
    metadata, arrays = read_checkpoint(result.checkpoint)
    assert metadata["config"]["model"]["num_prediction_heads"] == 5
    heads = {name.split("/")[-2] for name in arrays["model"] if "/output_head_" in name}
    assert heads == {f"output_head_{i}" for i in range(5)}
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in rows)
