"""One training step of the active KERAS_BACKEND's module (SPEC section 4) on a tiny pretrainer,
against float64 NumPy from the weights before the step: the teachers move by the EMA of the
pre-update students, the centre by its momentum formula, the students by the optimizer (plain
SGD: by -lr times the gradient whose norm the step logs), and the step counter by one."""

import importlib

import keras
import numpy as np
import pytest

from matpac_keras.train_steps.dispatch import backend_train_step
from tests.pretrainer_tiny import (
    FAST_SCHEDULES,
    numpy_values,
    tiny_batch,
    tiny_masks,
    tiny_pretrainer,
)

STEP = 5
LEARNING_RATE = 0.5


def _ramp(start: float, end: float, steps: int) -> float:
    return start + (end - start) * min(STEP / steps, 1.0)


def test_dispatch_picks_the_active_backends_module(monkeypatch):
    backend = keras.backend.backend()
    module = importlib.import_module(f"matpac_keras.train_steps.{backend}_step")
    assert backend_train_step() is module.train_step
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(NotImplementedError, match="not 'numpy'"):
        backend_train_step()


def _forward(model):
    """`forward_with_mask` at STEP (no side effects); compiled on JAX, where running it op by op
    would take longer than the step itself."""

    def forward(source, ids):
        return model.forward_with_mask(source, ids, step=STEP)

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(forward)
    return forward


@pytest.fixture(scope="module")
def one_step() -> dict:
    """Values before and after one `train_on_batch` (step 5, plain SGD) of a tiny pretrainer
    whose teachers differ from their students and whose centre is random."""
    model = tiny_pretrainer()
    encoder, head = model.teacher_pairs()
    pairs = encoder + head
    rng = np.random.default_rng(0)
    for _, teacher in pairs:
        teacher.assign(
            keras.ops.convert_to_numpy(teacher)
            + rng.normal(0, 0.1, teacher.shape).astype("float32")
        )
    center = rng.normal(0, 0.5, (1, 1, model.num_classes)).astype("float32")
    model.center.assign(center)
    model.step.assign(STEP)
    source, ids = tiny_batch(), tiny_masks()
    forward = _forward(model)(source, ids)
    before = dict(
        students=numpy_values([s for s, _ in pairs]),
        teachers=numpy_values([t for _, t in pairs]),
        trainable=numpy_values(model.trainable_variables),
        teacher_probs=keras.ops.convert_to_numpy(forward["teacher_probs"]).astype(np.float64),
        loss=float(keras.ops.convert_to_numpy(forward["loss"])),
        center=center.astype(np.float64),
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE))
    logs = model.train_on_batch({"source": source, "ids_shuffle": ids}, return_dict=True)
    after = dict(
        students=numpy_values([s for s, _ in pairs]),
        teachers=numpy_values([t for _, t in pairs]),
        trainable=numpy_values(model.trainable_variables),
        center=keras.ops.convert_to_numpy(model.center),
        step=int(keras.ops.convert_to_numpy(model.step)),
    )
    names = [t.path for _, t in pairs]
    decays = [_ramp(*FAST_SCHEDULES["encoder_ema"], FAST_SCHEDULES["total_steps"])] * len(
        encoder
    ) + [_ramp(*FAST_SCHEDULES["head_ema"], FAST_SCHEDULES["total_steps"])] * len(head)
    return dict(model=model, before=before, after=after, logs=logs, names=names, decays=decays)


def test_teachers_move_by_the_ema_of_the_pre_update_students(one_step):
    before, after = one_step["before"], one_step["after"]
    for name, t0, s0, s1, t1, decay in zip(
        one_step["names"],
        before["teachers"],
        before["students"],
        after["students"],
        after["teachers"],
        one_step["decays"],
        strict=True,
    ):
        expected = decay * t0.astype(np.float64) + (1 - decay) * s0.astype(np.float64)
        error = np.abs(t1 - expected).max()
        assert error < 1e-6, f"{name}: {error:.2e}"
        # the formula with the post-update student is another one, on every tensor
        post_update = decay * t0.astype(np.float64) + (1 - decay) * s1.astype(np.float64)
        assert np.abs(post_update - expected).max() > 1e-5, name


def test_centre_moves_by_its_momentum_formula(one_step):
    model, before = one_step["model"], one_step["before"]
    mean = before["teacher_probs"].reshape(-1, model.num_classes).mean(axis=0)
    momentum = model.center_momentum
    expected = momentum * before["center"] + (1 - momentum) * mean
    np.testing.assert_allclose(one_step["after"]["center"], expected, atol=1e-6)
    assert np.abs(expected - before["center"]).max() > 1e-3


def test_students_move_by_sgd_of_the_logged_gradient(one_step):
    """Plain SGD: |w_after - w_before| = lr * |g| over all trainable variables together."""
    update = np.sqrt(
        sum(
            np.sum((a.astype(np.float64) - b) ** 2)
            for a, b in zip(
                one_step["before"]["trainable"], one_step["after"]["trainable"], strict=True
            )
        )
    )
    grad_norm = one_step["logs"]["grad_norm"]
    assert grad_norm > 1e-2
    assert update / LEARNING_RATE == pytest.approx(grad_norm, rel=1e-3)


def test_step_counter_and_logs(one_step):
    logs = one_step["logs"]
    assert one_step["after"]["step"] == STEP + 1
    assert logs["loss"] == pytest.approx(one_step["before"]["loss"], rel=1e-5)
    tau = _ramp(*FAST_SCHEDULES["teacher_temperature"])
    assert logs["teacher_temp"] == pytest.approx(tau, rel=1e-6)
    assert logs["lr"] == pytest.approx(LEARNING_RATE, rel=1e-6)
