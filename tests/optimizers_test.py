"""The torch-exact AdamW against torch.optim.AdamW and torch's clip_grad_norm_ themselves."""

import keras
import numpy as np
import pytest
import torch

from matpac_keras import optimizers
from matpac_keras.optimizers import AdamW, clip_coefficient, global_norm
from matpac_keras.schedules import WarmupCosineDecay

SHAPES = [(4, 3), (3,), (2, 2, 2)]


def _gradients(rng) -> list[list[np.ndarray]]:
    """Four steps: near-epsilon (|g| ~ 1e-7..1e-5), ordinary, large (clipped at 3), mixed."""
    steps = []
    for scale in (3e-6, 0.1, 5.0, None):
        grads = []
        for shape in SHAPES:
            if scale is None:
                g = rng.normal(0, 1, shape) * 10.0 ** rng.uniform(-7, 0, shape)
            else:
                g = rng.normal(0, scale, shape)
            grads.append(g.astype("float32"))
        steps.append(grads)
    return steps


def _torch_run(initial, steps, learning_rates) -> list[list[np.ndarray]]:
    params = [torch.tensor(v, requires_grad=True) for v in initial]
    optimizer = torch.optim.AdamW(params, lr=1.0, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.05)
    history = []
    for grads, lr in zip(steps, learning_rates, strict=True):
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def _keras_run(optimizer, initial, steps) -> list[list[np.ndarray]]:
    variables = [keras.Variable(v) for v in initial]
    history = []
    for grads in steps:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        history.append([keras.ops.convert_to_numpy(v) for v in variables])
    return history


def _worst(a, b) -> float:
    pairs = [(x, y) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True)]
    return max(np.abs(x - y).max() for x, y in pairs)


def test_matches_torch_adamw_with_clipping():
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    steps = _gradients(rng)
    assert float(np.sqrt(sum((g.astype("float64") ** 2).sum() for g in steps[2]))) > 3.0
    reference = _torch_run(initial, steps, [1e-3] * 4)
    ours = _keras_run(AdamW(learning_rate=1e-3), initial, steps)
    assert _worst(ours, reference) < 1e-6
    # Keras's own AdamW (epsilon added before the bias correction) fails this comparison.
    keras_adamw = keras.optimizers.AdamW(
        learning_rate=1e-3, beta_2=0.95, epsilon=1e-6, weight_decay=0.05, global_clipnorm=3.0
    )
    assert _worst(_keras_run(keras_adamw, initial, steps), reference) > 1e-4


def test_matches_torch_adamw_under_a_schedule():
    rng = np.random.default_rng(1)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    steps = _gradients(rng)
    schedule = WarmupCosineDecay(1e-2, warmup_steps=2, total_steps=4)
    rates = [float(keras.ops.convert_to_numpy(schedule(i))) for i in range(4)]
    ours = _keras_run(AdamW(learning_rate=schedule), initial, steps)
    assert _worst(ours, _torch_run(initial, steps, rates)) < 1e-6


def test_clipping_inside_the_update_is_exact(monkeypatch):
    """One replica: the clipping factor is applied inside `update_step` (no clipped copy of the
    gradients); the weights are bit for bit those of clipping the gradients first."""
    rng = np.random.default_rng(3)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    steps = _gradients(rng)
    optimizer = AdamW(learning_rate=1e-3)
    grads = [keras.ops.convert_to_tensor(g) for g in steps[2]]  # a clipped step
    assert all(a is b for a, b in zip(optimizer._clip_gradients(grads), grads, strict=True))
    optimizer._clip_scale = None
    folded = _keras_run(AdamW(learning_rate=1e-3), initial, steps)
    monkeypatch.setattr(optimizers, "_one_replica", lambda: False)  # clip the copies first
    copied = _keras_run(AdamW(learning_rate=1e-3), initial, steps)
    for xs, ys in zip(folded, copied, strict=True):
        for x, y in zip(xs, ys, strict=True):
            np.testing.assert_array_equal(x, y)


def test_global_norm_and_clip_coefficient():
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=s).astype("float32") for s in SHAPES]
    norm = np.sqrt(sum((g.astype("float64") ** 2).sum() for g in grads))
    ours = float(keras.ops.convert_to_numpy(global_norm([*grads, None])))
    assert ours == pytest.approx(norm, rel=1e-6)
    assert float(keras.ops.convert_to_numpy(clip_coefficient(ours, 3.0))) == pytest.approx(
        min(3.0 / (norm + 1e-6), 1.0), rel=1e-6
    )


def test_config_round_trip():
    optimizer = AdamW(
        learning_rate=WarmupCosineDecay(3e-4, 10, 100),
        beta_2=0.9,
        epsilon=1e-8,
        global_clipnorm=1.0,
    )
    restored = AdamW.from_config(optimizer.get_config())
    config = restored.get_config()
    assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (0.9, 0.9, 1e-8)
    assert (config["weight_decay"], config["global_clipnorm"]) == (0.05, 1.0)
    assert isinstance(restored.learning_rate, type(optimizer.learning_rate))
