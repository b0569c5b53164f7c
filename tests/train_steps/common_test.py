"""The step's backend-agnostic maths (SPEC section 4): the teacher EMA against its float64
formula, and the collapse monitors against NumPy on random and on degenerate (collapsed,
uniform) inputs."""

import keras
import numpy as np
import pytest

from matpac_keras.train_steps.common import collapse_monitors, teacher_ema_updates
from tests import numpy_reference as ref


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _tensors(seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in [(4, 3), (5,), (1, 1, 6)]]


@pytest.mark.parametrize("as_tensor", [False, True])
def test_teacher_ema_formula(as_tensor):
    students, teachers = _tensors(0), _tensors(1)
    decay = np.float32(0.945)  # the model passes a float32 tensor (linear_ramp)
    new = teacher_ema_updates(
        students, teachers, keras.ops.convert_to_tensor(decay) if as_tensor else float(decay)
    )
    assert len(new) == 3
    for value, s, t in zip(new, students, teachers, strict=True):
        expected = np.float64(decay) * t + (1 - np.float64(decay)) * s.astype(np.float64)
        assert _numpy(value).shape == t.shape
        np.testing.assert_allclose(_numpy(value), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("decay, pick", [(1.0, "teacher"), (0.0, "student")])
def test_teacher_ema_extremes(decay, pick):
    students, teachers = _tensors(2), _tensors(3)
    new = teacher_ema_updates(students, teachers, decay)
    for value, s, t in zip(new, students, teachers, strict=True):
        np.testing.assert_array_equal(_numpy(value), t if pick == "teacher" else s)


def test_teacher_ema_of_a_half_precision_student_stays_float32():
    students, teachers = _tensors(4), _tensors(5)
    halves = [keras.ops.cast(s, "bfloat16") for s in students]
    new = teacher_ema_updates(halves, teachers, 0.9)
    for value, s, t in zip(new, halves, teachers, strict=True):
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        s64 = _numpy(keras.ops.cast(s, "float32")).astype(np.float64)
        np.testing.assert_allclose(_numpy(value), 0.9 * t + 0.1 * s64, rtol=1e-6, atol=1e-7)


def test_teacher_ema_needs_matching_lists():
    with pytest.raises(ValueError, match="2 student tensors for 3 teacher tensors"):
        teacher_ema_updates(_tensors(6)[:2], _tensors(7), 0.9)


def _monitors(z_hat, z, student_logits, teacher_probs) -> dict:
    values = collapse_monitors(
        *(x.astype("float32") for x in (z_hat, z, student_logits, teacher_probs))
    )
    for name, value in values.items():
        assert (
            tuple(value.shape) == () and keras.backend.standardize_dtype(value.dtype) == "float32"
        ), name
    return {name: float(_numpy(value)) for name, value in values.items()}


def _channel_std(z):
    """The official `compute_var` of the normalised z: sqrt(unbiased variance + 1e-6), averaged
    over channels."""
    flat = ref.l2_normalize(z).reshape(-1, z.shape[-1])
    return np.sqrt(flat.var(axis=0, ddof=1) + 1e-6).mean()


def test_collapse_monitors_on_random_inputs():
    rng = np.random.default_rng(8)
    z_hat, z = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6)) * 0.3 + 1.0
    student_logits = rng.normal(size=(3, 4, 5))
    teacher_probs = ref.softmax(rng.normal(size=(3, 4, 5)) / 0.3)
    teacher_probs[0, :2] = ref.softmax(student_logits[0, :2] * 20)  # two tokens that agree
    mean = teacher_probs.reshape(-1, 5).mean(axis=0)
    teacher_argmax = teacher_probs.argmax(-1).ravel()
    expected = {
        "z_hat_m_std": _channel_std(z_hat),
        "z_m_std": _channel_std(z),
        "teacher_perplexity": np.exp(-(mean * np.log(mean)).sum()),
        "teacher_classes": float(len(np.unique(teacher_argmax))),
        "argmax_agreement": float((teacher_argmax == student_logits.argmax(-1).ravel()).mean()),
    }
    assert 1 / 12 < expected["argmax_agreement"] < 1
    assert expected["z_m_std"] < expected["z_hat_m_std"]  # the two are told apart
    assert _monitors(z_hat, z, student_logits, teacher_probs) == pytest.approx(expected, rel=1e-5)


def test_collapse_monitors_of_a_collapsed_batch():
    """One class everywhere, identical latents: perplexity 1, one class, std sqrt(1e-6)."""
    rng = np.random.default_rng(9)
    z = np.broadcast_to(rng.normal(size=6), (2, 5, 6))
    teacher_probs = np.zeros((2, 5, 7))
    teacher_probs[..., 3] = 1.0
    student_logits = rng.normal(size=(2, 5, 7))
    student_logits[0, :, 3] = 10.0  # agree on the 5 tokens of the first example only
    student_logits[1, :, 3] = -10.0
    ours = _monitors(z, 2.0 * z, student_logits, teacher_probs)
    assert ours == pytest.approx(
        dict(
            z_hat_m_std=1e-3,
            z_m_std=1e-3,
            teacher_perplexity=1.0,
            teacher_classes=1.0,
            argmax_agreement=0.5,
        ),
        rel=1e-4,
    )


def test_teacher_perplexity_is_the_class_count_when_use_is_uniform():
    eye = np.eye(8)[np.arange(16) % 8].reshape(2, 8, 8)  # each class the argmax of 2 tokens
    ours = _monitors(np.ones((2, 8, 4)), np.ones((2, 8, 4)), eye, eye)
    assert ours["teacher_perplexity"] == pytest.approx(8.0, rel=1e-5)
    assert ours["teacher_classes"] == 8.0 and ours["argmax_agreement"] == 1.0
