"""Mixed precision training: float16 / bfloat16 students, float32 teachers and centre."""

import keras
import numpy as np
import pytest

from matpac_keras.optimizers import AdamW
from tests.pretrainer_tiny import numpy_values, tiny_batch, tiny_masks, tiny_pretrainer


@pytest.mark.parametrize(
    "policy, compute_dtype", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_three_steps_keep_teachers_and_centre_float32(policy, compute_dtype):
    if policy == "mixed_float16" and keras.backend.backend() == "jax":
        if all(d.startswith("cpu") for d in keras.distribution.list_devices()):
            pytest.skip("XLA:CPU has no float16 matmul (dot_general F16_F16_F32); GPU only")
    model = tiny_pretrainer(dtype=policy)
    assert model.backbone.encoder.compute_dtype == compute_dtype
    assert model.student_head.compute_dtype == compute_dtype
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    # Keras wraps the optimizer for dynamic loss scaling under mixed_float16 only.
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    encoder, head = model.teacher_pairs()
    teachers = [t for _, t in encoder + head]
    before = numpy_values(teachers)

    history = model.fit(tiny_batch(batch_size=6), batch_size=2, epochs=1, verbose=0)

    assert int(keras.ops.convert_to_numpy(model.step)) == 3
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        assert np.all(np.isfinite(value)), variable.path
        if variable is not model.step:
            assert variable.dtype == "float32", variable.path  # students too (mixed policy)
    for teacher in [model.center, *teachers]:
        assert teacher.dtype == "float32" and not teacher.trainable, teacher.path
    assert np.abs(keras.ops.convert_to_numpy(model.center)).max() > 0
    moved = [
        np.abs(keras.ops.convert_to_numpy(t) - b).max()
        for t, b in zip(teachers, before, strict=True)
    ]
    assert max(moved) > 0  # the EMA ran at steps 1 and 2 (none at step 0)
    if scaled:
        assert float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)) > 0


def test_loss_scaling_leaves_the_step_unchanged():
    """Dynamic loss scaling (here on float32, so that it runs on every backend's CPU): the
    gradients are unscaled before clipping and the update, and the logged norm is unscaled."""
    batch = {"source": tiny_batch(), "ids_shuffle": tiny_masks()}
    results = []
    for scaled in (False, True):
        model = tiny_pretrainer(seed=4)
        model.step.assign(5)
        optimizer = AdamW(learning_rate=1e-3)
        if scaled:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**10)
        model.compile(optimizer=optimizer)
        logs = model.train_on_batch(batch, return_dict=True)
        results.append((logs, numpy_values(model.weights)))
    (plain_logs, plain), (scaled_logs, scaled) = results
    assert scaled_logs["grad_norm"] == pytest.approx(plain_logs["grad_norm"], rel=1e-5)
    assert scaled_logs["loss"] == pytest.approx(plain_logs["loss"], rel=1e-6)
    for a, b in zip(scaled, plain, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
