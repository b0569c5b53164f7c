"""MATPAC's losses (SPEC section 4) against the float64 NumPy formulas of tests/numpy_reference,
on random float32 inputs; the multiple-choice loss's gradients against their closed forms."""

import keras
import numpy as np
import pytest

from matpac_keras.losses import (
    center_update,
    classification_loss,
    multiple_choice_loss,
    prediction_loss,
    teacher_probabilities,
)
from tests import numpy_reference as ref


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _f32(rng, *shape, scale=1.0) -> np.ndarray:
    return (rng.normal(size=shape) * scale).astype("float32")


def _gradient(fn, x: np.ndarray) -> np.ndarray:
    """d fn(x) / dx for a scalar `fn` of a float32 array, with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)))
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = fn(tensor)
        return tape.gradient(value, tensor).numpy()
    if backend == "torch":
        import torch

        variable = torch.tensor(x, requires_grad=True)
        fn(variable).backward()
        return variable.grad.numpy()
    raise NotImplementedError(backend)


def test_prediction_loss_values():
    rng = np.random.default_rng(0)
    predicted, target = _f32(rng, 2, 3, 5, 8, scale=3.0), _f32(rng, 2, 1, 5, 8) + 0.5
    ours = _numpy(prediction_loss(predicted, target))  # target broadcast over heads, as used
    expected = 2 - 2 * np.sum(ref.l2_normalize(predicted) * ref.l2_normalize(target), axis=-1)
    assert ours.shape == (2, 3, 5)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert expected.min() < 1.0 < expected.max() < 4.0  # a spread of values, not one


def test_prediction_loss_is_scale_free_and_bounded():
    rng = np.random.default_rng(1)
    x = _f32(rng, 4, 8)
    same = _numpy(prediction_loss(x, 7.0 * x))
    opposite = _numpy(prediction_loss(x, -0.01 * x))
    zero = _numpy(prediction_loss(np.zeros_like(x), x))  # l2-normalised zero stays zero
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    np.testing.assert_allclose(opposite, 4.0, rtol=1e-6)
    np.testing.assert_array_equal(zero, 2.0)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_teacher_probabilities_centred_and_sharpened(as_tensor):
    rng = np.random.default_rng(2)
    logits, center = _f32(rng, 2, 5, 12), _f32(rng, 1, 1, 12, scale=0.5)
    temperature = np.float32(0.055)  # tau_t mid-ramp; the model passes a float32 tensor
    tau = keras.ops.convert_to_tensor(temperature) if as_tensor else float(temperature)
    ours = _numpy(teacher_probabilities(logits, center, tau))
    expected = ref.softmax((logits.astype(np.float64) - center) / np.float64(temperature))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ours.sum(-1), 1.0, rtol=1e-6)
    # the centre matters: without it the distribution differs
    uncentred = ref.softmax(logits.astype(np.float64) / np.float64(temperature))
    assert np.abs(uncentred - expected).max() > 0.1


def test_classification_loss_is_cross_entropy_with_student_temperature():
    rng = np.random.default_rng(3)
    student_logits = _f32(rng, 3, 4, 10)
    teacher_probs = ref.softmax(_f32(rng, 3, 4, 10) / 0.04).astype("float32")
    ours = _numpy(
        classification_loss(student_logits, keras.ops.convert_to_tensor(teacher_probs), 0.1)
    )
    expected = -np.sum(teacher_probs * ref.log_softmax(student_logits / 0.1), axis=-1)
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    # tau_s is applied: at tau_s = 1 the loss is another one
    at_one = -np.sum(teacher_probs * ref.log_softmax(student_logits), axis=-1)
    assert np.abs(at_one - expected).min() > 0.1


def _per_head_losses(seed: int) -> np.ndarray:
    """[B=2, M=5, heads=4] prediction losses in [0, 4)."""
    return np.random.default_rng(seed).uniform(0.2, 3.0, size=(2, 5, 4)).astype("float32")


def _soft_reference(losses, temperature) -> np.ndarray:
    losses = losses.astype(np.float64)
    return np.sum(ref.softmax(-losses / temperature) * losses, axis=-1)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 2e-3])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_multiple_choice_loss_soft_assignment(temperature, as_tensor):
    losses = _per_head_losses(4)
    if temperature == 2e-3:  # heads within a few T of each other: soft differs from min
        losses = (1.0 + np.arange(4) * 1e-3 + losses[..., :1] * 1e-3).astype("float32")
    tau = keras.ops.convert_to_tensor(np.float32(temperature)) if as_tensor else temperature
    ours = _numpy(multiple_choice_loss(losses, tau))
    expected = _soft_reference(losses, temperature)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert (expected - losses.min(-1)).max() > 1e-4  # the soft branch, not the minimum


@pytest.mark.parametrize("temperature", [1e-4, 5e-5, 0.0])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_multiple_choice_loss_minimum_below_threshold(temperature, as_tensor):
    """At T <= 1e-4 the loss is the minimum over heads (SPEC: "while T > 1e-4 ... afterwards
    min"); with heads 1e-4 apart a softmax at T ~ 1e-4 would still average them."""
    base = _per_head_losses(5)
    losses = (base[..., :1] + np.array([3, 0, 1, 2]) * 1e-4).astype("float32")
    if as_tensor:
        # float32(1e-4) rounds above 1e-4: the boundary itself is only exact as a Python float
        tau = keras.ops.convert_to_tensor(np.float32(min(temperature, 9e-5)))
    else:
        tau = temperature
    ours = _numpy(multiple_choice_loss(losses, tau))
    np.testing.assert_array_equal(ours, losses[..., 1])
    assert (_soft_reference(losses, 1.01e-4) - losses[..., 1] > 1e-5).all()


def test_multiple_choice_soft_gradient_holds_the_assignment_constant():
    """d/dl sum(w * softmax(-l/T) * l) = w * softmax(-l/T): no gradient through the weights."""
    losses = _per_head_losses(6)
    cotangent = np.random.default_rng(7).normal(size=losses.shape[:-1]).astype("float32")

    def fn(x):
        return keras.ops.sum(keras.ops.multiply(cotangent, multiple_choice_loss(x, 0.5)))

    expected = cotangent[..., None] * ref.softmax(-losses.astype(np.float64) / 0.5)
    np.testing.assert_allclose(_gradient(fn, losses), expected, rtol=1e-5, atol=1e-7)


def test_multiple_choice_hard_gradient_reaches_the_first_argmin_only():
    losses = _per_head_losses(8)
    losses[0, :, 3] = losses[0, :, 1] = losses[0].min(-1) - 0.1  # ties between heads 1 and 3
    cotangent = np.random.default_rng(9).normal(size=losses.shape[:-1]).astype("float32")

    def fn(x):
        return keras.ops.sum(keras.ops.multiply(cotangent, multiple_choice_loss(x, 1e-5)))

    expected = cotangent[..., None] * np.eye(4)[losses.argmin(-1)]  # numpy: the first argmin
    assert (losses.argmin(-1)[0] == 1).all()
    np.testing.assert_allclose(_gradient(fn, losses), expected, rtol=1e-6)


@pytest.mark.parametrize("momentum", [0.9, 0.0, 1.0])
def test_center_update_formula(momentum):
    rng = np.random.default_rng(10)
    center = _f32(rng, 1, 1, 7)
    teacher_output = ref.softmax(_f32(rng, 3, 5, 7) / 0.04).astype("float32")
    ours = _numpy(center_update(center, teacher_output, momentum))
    mean = teacher_output.astype(np.float64).mean(axis=(0, 1), keepdims=True)
    expected = momentum * center.astype(np.float64) + (1 - momentum) * mean
    assert ours.shape == (1, 1, 7) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


def test_center_update_of_half_precision_logits_is_float32():
    rng = np.random.default_rng(11)
    center = _f32(rng, 1, 1, 6)
    logits = _f32(rng, 2, 9, 6, scale=4.0).astype("float16")
    ours = _numpy(center_update(center, keras.ops.convert_to_tensor(logits), 0.9))
    mean = logits.astype(np.float64).mean(axis=(0, 1), keepdims=True)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, 0.9 * center + 0.1 * mean, rtol=1e-6, atol=1e-6)
