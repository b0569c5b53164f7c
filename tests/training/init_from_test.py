"""`config.init_from`: a run that starts from an official `.pt` (encoder-only or full) or from
a `.keras` file or preset of a MatpacBackbone or MatpacPretrainer (training/init_from.py).

The runs use `configs/demo.py:tiny` (D=32, one block) on the synthetic corpus, whose
architecture the checkpoint replaces (the fixtures' model: D=128, 3 blocks, 4 heads, predictor
64 wide, n_t=128), 5 steps of 4 crops, in-process under the current KERAS_BACKEND. With the
learning rate at 0 (AdamW's decoupled weight decay is lr x 0.05: 0 too) the student does not
move, so the workdir's `backbone.keras` must give the authors' embeddings (`embed.npz`).
"""

import json
import os
import pathlib
import shutil

import keras
import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.errors import InputError
from matpac_keras.saving import load_backbone, save_preset
from matpac_keras.training import checkpoint
from matpac_keras.training.experiment import build_optimizer, build_pretrainer, run_budget
from matpac_keras.training.init_from import PRETRAINER_LAYERS, apply_architecture, read_init_source
from matpac_keras.training.loop import train
from matpac_keras.training.metrics_log import read_metrics
from tests.cli.train_test import REPO, _kill_mid_way, _run, assert_same_checkpoint
from tests.conftest import relative_error

STEPS = 5
ARCHITECTURE = "model.embed_dim 32 -> 128, model.depth 1 -> 3, model.max_frames 32 -> 128"
HEADS = (
    "model.predictor_dim 16 -> 64, model.predictor_depth 1 -> 2, model.head_hidden_dim 32 -> "
    "256, model.head_bottleneck_dim 16 -> 256, model.num_classes 32 -> 256"
)


def _tiny(init_from, lr: float = 0.0, **model):
    """`configs/demo.py:tiny` from `init_from`, 5 steps, the fixtures' head counts."""
    config = load_config(pathlib.Path(REPO) / "configs" / "demo.py", "tiny")
    config.init_from = os.fspath(init_from)
    config.model.update({"num_heads": 4, "predictor_heads": 4, **model})
    config.train.update(dict(epochs=1.0, warmup_epochs=0.4, teacher_temperature_epochs=0.4))
    config.train.verbose = 0
    config.optim.update(dict(lr=lr, final_lr=0.0))
    return config


def _train(config, workdir):
    """The run's result and what it announced about its start (the data line, announced last,
    before the steps, left out)."""
    lines = []
    result = train(config, workdir, announce=lines.append)
    assert lines[-1].startswith("data: 20 clips in the synthetic demo corpus"), lines
    return result, lines[:-1]


def _assert_fixture_embeddings(path, fixture_arrays):
    expected = fixture_arrays("embed")
    extractor = EmbeddingExtractor(load_backbone(path), mode="precise", layers=True)
    out = extractor.embed_waveforms(expected["waveform"])
    assert relative_error(out.embedding, expected["precise_pooled/emb"]) < 1e-4
    assert relative_error(out.layers, expected["precise_pooled/layers"]) < 1e-4


@pytest.fixture(scope="module")
def encoder_run(fixtures_dir, tmp_path_factory):
    """A finished run from the encoder-only `.pt`, at lr 0."""
    workdir = tmp_path_factory.mktemp("encoder_only")
    result, lines = _train(_tiny(fixtures_dir / "encoder_only.pt"), workdir)
    return dict(workdir=workdir, result=result, lines=lines)


def test_encoder_only_pt(encoder_run, fixtures_dir, fixture_arrays):
    path = fixtures_dir / "encoder_only.pt"
    assert encoder_run["lines"] == [
        f"config.init_from {path} (official encoder-only .pt): the student encoder and its EMA "
        "teacher start from it; the predictor and the classification heads start fresh (seeded "
        "init); the step counter, optimizer state and schedules start at 0",
        f"config.init_from: the architecture is the checkpoint's: {ARCHITECTURE}",
    ]
    assert encoder_run["result"].step == STEPS
    rows = read_metrics(encoder_run["workdir"])
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # from step 0
    assert rows[0]["teacher_temp"] == pytest.approx(0.04)  # the tau_t ramp from its start
    _assert_fixture_embeddings(encoder_run["workdir"] / "backbone.keras", fixture_arrays)


def test_full_pt(fixtures_dir, fixture_arrays, tmp_path):
    path = fixtures_dir / "train_full.pt"
    result, lines = _train(_tiny(path), tmp_path)
    assert lines[0].startswith(f"config.init_from {path} (official training .pt): the student")
    assert "teachers and centre start as saved" in lines[0]
    assert (
        lines[1]
        == f"config.init_from: the architecture is the checkpoint's: {ARCHITECTURE}, {HEADS}"
    )
    assert result.step == STEPS
    _assert_fixture_embeddings(tmp_path / "backbone.keras", fixture_arrays)


def _start(init_from, **model):
    """A pretrainer built from `init_from`'s architecture, its weights loaded, as a run's."""
    config = _tiny(init_from, **model)
    source = read_init_source(config)
    config, _ = apply_architecture(config, source.model)
    budget = run_budget(config, 20)
    pretrainer = build_pretrainer(config, budget, source.backbone)
    pretrainer.compile(optimizer=build_optimizer(config.optim, budget))
    source.load(pretrainer)
    return source, config, pretrainer


def _numpy(variables) -> list:
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _teacher_tensors(pretrainer) -> dict:
    """{fixture name: teacher weight} of the teacher encoder and head, in PyTorch layout."""
    out = {}

    def add(name, layer, kernel="kernel", bias="bias", transpose=True):
        value = keras.ops.convert_to_numpy(getattr(layer, kernel))
        out[f"{name}.weight"] = value.T if transpose else value
        out[f"{name}.bias"] = keras.ops.convert_to_numpy(getattr(layer, bias))

    for i, block in enumerate(pretrainer.teacher_encoder.blocks):
        p = f"_ema/blocks.{i}."
        add(p + "norm1", block.norm1, "gamma", "beta", False)
        add(p + "attn.qkv", block.attn.qkv)
        add(p + "attn.proj", block.attn.proj)
        add(p + "norm2", block.norm2, "gamma", "beta", False)
        add(p + "mlp.fc1", block.fc1)
        add(p + "mlp.fc2", block.fc2)
    add("_ema/norm", pretrainer.teacher_encoder.norm, "gamma", "beta", False)
    head = pretrainer.teacher_head
    for index, layer in zip((0, 2, 4), head.mlp, strict=True):
        add(f"_cls_head_ema/mlp.{index}", layer)
    out["_cls_head_ema/last_layer.weight_g"] = keras.ops.convert_to_numpy(head.last_layer.g)
    out["_cls_head_ema/last_layer.weight_v"] = keras.ops.convert_to_numpy(head.last_layer.v).T
    return out


def test_full_pt_loads_teachers_and_centre(fixtures_dir, fixture_arrays):
    expected = fixture_arrays("train_full")
    _, _, pretrainer = _start(fixtures_dir / "train_full.pt")
    teachers = _teacher_tensors(pretrainer)
    assert len(teachers) == len([k for k in expected if k.startswith(("_ema/", "_cls_head_ema/"))])
    for name, value in teachers.items():
        np.testing.assert_array_equal(value, expected[name].reshape(value.shape), err_msg=name)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(pretrainer.center), expected["cls_head_loss.center"]
    )
    assert int(keras.ops.convert_to_numpy(pretrainer.step)) == 0
    assert int(keras.ops.convert_to_numpy(pretrainer.optimizer.iterations)) == 0


@pytest.fixture(scope="module")
def saved_models(encoder_run, fixtures_dir, tmp_path_factory):
    """The encoder run's backbone and pretrainer (its last checkpoint), as .keras and presets."""
    folder = tmp_path_factory.mktemp("saved")
    _, config, pretrainer = _start(fixtures_dir / "encoder_only.pt")
    checkpoint.restore_checkpoint(checkpoint.latest_checkpoint(encoder_run["workdir"]), pretrainer)
    backbone = encoder_run["workdir"] / "backbone.keras"
    save_preset(load_backbone(backbone), folder / "backbone_preset")
    pretrainer.save(folder / "pretrainer.keras")
    pretrainer.save_to_preset(folder / "pretrainer_preset")
    return dict(
        paths={
            "MatpacBackbone .keras": backbone,
            "MatpacBackbone preset": folder / "backbone_preset",
            "MatpacPretrainer .keras": folder / "pretrainer.keras",
            "MatpacPretrainer preset": folder / "pretrainer_preset",
        },
        pretrainer=pretrainer,
    )


@pytest.mark.parametrize(
    "kind",
    [
        "MatpacBackbone .keras",
        "MatpacBackbone preset",
        "MatpacPretrainer .keras",
        "MatpacPretrainer preset",
    ],
)
def test_keras_files_and_presets_round_trip(saved_models, kind):
    saved = saved_models["pretrainer"]
    # head counts from the saved config, not config.model's
    source, config, pretrainer = _start(saved_models["paths"][kind], num_heads=2, predictor_heads=2)
    assert source.kind == kind and source.full == kind.startswith("MatpacPretrainer")
    assert (config.model.num_heads, config.model.embed_dim) == (4, 128)
    layers = PRETRAINER_LAYERS if source.full else ("backbone",)
    for name in layers:
        for ours, theirs in zip(
            getattr(pretrainer, name).weights, getattr(saved, name).weights, strict=True
        ):
            np.testing.assert_array_equal(_numpy([ours])[0], _numpy([theirs])[0], err_msg=ours.path)
    if source.full:
        assert config.model.predictor_heads == 4
        np.testing.assert_array_equal(*_numpy([pretrainer.center, saved.center]))
    else:  # the teacher is the loaded student
        for student, teacher in pretrainer.teacher_pairs()[0]:
            np.testing.assert_array_equal(*_numpy([student, teacher]))
    assert int(keras.ops.convert_to_numpy(pretrainer.step)) == 0


def test_bad_sources_are_named(fixtures_dir, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    other = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(other)
    classifier = fixtures_dir / "heads" / "as_enc_and_head.pt"
    missing = tmp_path / "missing.pt"
    for path, message in (
        (missing, "no such file or preset directory"),
        (text, "not a torch.save zip checkpoint"),
        (classifier, "an AudioSet fine-tuned classifier (head.*), not a pretraining checkpoint"),
        (other, "holds a Sequential"),
        (tmp_path, "not a model preset (no config.json)"),
    ):
        with pytest.raises(InputError) as error:
            read_init_source(_tiny(path))
        assert str(error.value).startswith(f"config.init_from {path}: {message}")
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="config.init_from .*missing.pt: no such file"):
        train(_tiny(missing), tmp_path / "run")


def test_bad_head_counts_and_long_crops_are_refused(fixtures_dir):
    encoder, full = fixtures_dir / "encoder_only.pt", fixtures_dir / "train_full.pt"
    with pytest.raises(InputError, match=r"config.model.num_heads=3 does not divide the encoder"):
        read_init_source(_tiny(encoder, num_heads=3))
    with pytest.raises(InputError, match=r"config.model.predictor_heads=3 does not divide the pr"):
        read_init_source(_tiny(full, predictor_heads=3))
    config = _tiny(encoder, max_frames=256)
    config.data.crop_frames = 256
    with pytest.raises(InputError) as error:
        read_init_source(config)
    assert str(error.value).startswith(
        f"config.data.crop_frames=256 exceeds the max_frames=128 of config.init_from {encoder}"
    )


def test_workdir_with_checkpoints_resumes_and_ignores_init_from(
    encoder_run, fixtures_dir, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(encoder_run["workdir"], workdir)
    latest = checkpoint.latest_checkpoint(workdir)
    # train_full's predictor and heads differ from the run's: loading it could not restore
    other = fixtures_dir / "train_full.pt"
    result, lines = _train(_tiny(other), workdir)
    assert lines == [
        f"resuming from {latest}: config.init_from {other} ignored (the workdir's checkpoints "
        "continue the run)"
    ]
    assert result.step == STEPS
    assert json.loads((workdir / "config.json").read_text())["model"]["embed_dim"] == 128


@pytest.mark.slow  # three training processes
def test_sigkill_and_resume_end_bit_identical(fixtures_dir, tmp_path_factory):
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax")))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    overrides = (
        f"--config.init_from={fixtures_dir / 'encoder_only.pt'}",
        "--config.model.num_heads=4",
    )
    reference, resumed = tmp_path_factory.mktemp("reference"), tmp_path_factory.mktemp("resumed")
    _run(reference, *overrides, epochs=4)
    killed_at = _kill_mid_way(resumed, *overrides, total=20, epochs=4)
    assert 10 <= killed_at < 20
    finished = _run(resumed, *overrides, epochs=4)
    assert "config.init_from" in finished.stdout and "ignored" in finished.stdout
    steps = [step for step, _ in checkpoint.list_checkpoints(reference)]
    assert steps[-1] == 20
    for step, path in checkpoint.list_checkpoints(resumed):
        if step > killed_at:
            assert_same_checkpoint(checkpoint.checkpoint_dir(reference) / path.name, path)
