"""MatpacPretrainer as a keras-hub Task: `fit` with its default compile, presets (its own and a
backbone's), config round trip, refused arguments. Its training step's numbers are checked in
tests/pretrainer_train_step_test.py."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.optimizers import AdamW
from matpac_keras.pretrainer import MatpacPretrainer
from matpac_keras.schedules import WarmupCosineDecay
from tests.pretrainer_tiny import TINY_HEADS, numpy_values, tiny_batch, tiny_pretrainer
from tests.test_case import run_task_test


def test_fits_with_the_default_compile():
    model = tiny_pretrainer(total_steps=30)
    assert isinstance(model.optimizer, AdamW)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, WarmupCosineDecay)
    assert (schedule.warmup_steps, schedule.total_steps) == (2, 30)  # 1/15 of the run
    # The warm-up starts from 0 (fairseq's warmup_init_lr = 0): the first update moves nothing.
    run_task_test(model, tiny_batch(), steps=2)
    assert int(keras.ops.convert_to_numpy(model.step)) == 2


def test_preset_round_trip_keeps_every_weight(tmp_path):
    model = tiny_pretrainer(seed=3)
    model.fit(tiny_batch(), batch_size=4, epochs=1, verbose=0)  # teachers, centre, step move
    model.save_to_preset(tmp_path / "preset")
    assert {"task.json", "task.weights.h5", "config.json"} <= {
        p.name for p in (tmp_path / "preset").iterdir()
    }
    loaded = MatpacPretrainer.from_preset(str(tmp_path / "preset"))
    assert type(loaded) is MatpacPretrainer
    assert loaded.get_config() == model.get_config()
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for variable, got, value in zip(
        model.weights, numpy_values(loaded.weights), numpy_values(model.weights), strict=True
    ):
        np.testing.assert_array_equal(got, value, err_msg=variable.path)


def test_starts_from_a_backbone_preset(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    backbone.save_to_preset(tmp_path / "backbone")
    model = MatpacPretrainer.from_preset(str(tmp_path / "backbone"), **TINY_HEADS)
    assert type(model) is MatpacPretrainer
    for ours, theirs in zip(model.backbone.weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs)
        )
    # The teacher starts as a copy of the pre-trained student trunk.
    for student, teacher in model.teacher_pairs()[0]:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(student), keras.ops.convert_to_numpy(teacher)
        )


def test_config_round_trip_without_compiling():
    model = tiny_pretrainer()
    config = model.get_config()
    assert config["backbone"]["class_name"] == "MatpacBackbone"
    clone = MatpacPretrainer.from_config({**config, "compile": False})
    assert getattr(clone, "optimizer", None) is None
    assert clone.get_config() == config


def test_a_preprocessor_is_refused():
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    with pytest.raises(ValueError, match="preprocessor must be None"):
        MatpacPretrainer(backbone, preprocessor=object())


def _values(layer) -> list:
    return [keras.ops.convert_to_numpy(w) for w in layer.weights]


def test_independent_teachers_as_the_official_code():
    """teacher_init="independent": the teacher encoder its own Xavier draw, the teacher head
    MLP normal(0.02) with zero biases, only the weight-normed last layer shared."""
    model = tiny_pretrainer(head_hidden_dim=256)
    assert model.teacher_init == "independent"  # the default
    for student, teacher in zip(
        _values(model.backbone.encoder), _values(model.teacher_encoder), strict=True
    ):
        if student.ndim == 2:  # kernels: other draws of the same distribution
            assert not np.allclose(student, teacher)
            assert np.std(teacher) == pytest.approx(np.std(student), rel=0.2)
    for dense in model.teacher_head.mlp:
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in (dense.kernel, dense.bias))
        assert np.std(kernel) == pytest.approx(0.02, rel=0.05)
        np.testing.assert_array_equal(bias, 0)
    for student, teacher in zip(
        _values(model.student_head.last_layer),
        _values(model.teacher_head.last_layer),
        strict=True,
    ):
        np.testing.assert_array_equal(student, teacher)
    config = {**model.get_config(), "teacher_init": "copy"}
    assert MatpacPretrainer.from_config(config).teacher_init == "copy"
    with pytest.raises(ValueError, match="teacher_init"):
        tiny_pretrainer(teacher_init="random")
