"""A tiny MATPAC pretrainer and data for fast training-step tests (D=32, one block)."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.optimizers import AdamW
from matpac_keras.pretrainer import MatpacPretrainer

TINY_FRAMES = 64  # a 5 x 4 grid: 20 tokens, 6 visible, 14 masked
# Large EMA steps, as in the fixtures, so that the teachers move visibly: at step 5 the
# encoder decay is 0.945 and the head decay 0.9.
FAST_SCHEDULES = dict(
    teacher_temperature=(0.04, 0.07, 10),
    encoder_ema=(0.9, 0.99),
    head_ema=(0.8, 1.0),
    total_steps=10,
)


# The tiny predictor and heads (besides the backbone) of every tiny pretrainer.
TINY_HEADS = dict(
    predictor_dim=32,
    predictor_depth=1,
    predictor_heads=2,
    head_hidden_dim=32,
    head_bottleneck_dim=16,
    num_classes=32,
)


def tiny_pretrainer(seed: int = 0, dtype=None, **kwargs) -> MatpacPretrainer:
    """A built tiny pretrainer whose initial weights depend only on `seed`."""
    keras.utils.set_random_seed(seed)
    backbone = MatpacBackbone(
        embed_dim=32, depth=1, num_heads=2, max_frames=TINY_FRAMES, dtype=dtype
    )
    options = dict(
        **TINY_HEADS,
        seed=seed,
        dtype=dtype,
        **FAST_SCHEDULES,
    )
    model = MatpacPretrainer(backbone, **{**options, **kwargs})
    model.build(None)
    return model


def tiny_batch(batch_size: int = 4, seed: int = 0) -> np.ndarray:
    """Normalised-log-mel-like noise [batch, 80, TINY_FRAMES]."""
    return np.random.default_rng(seed).normal(size=(batch_size, 80, TINY_FRAMES)).astype("float32")


def tiny_masks(batch_size: int = 4, seed: int = 0) -> np.ndarray:
    """Mask permutations [batch, 20] for `tiny_batch`."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(20) for _ in range(batch_size)]).astype("int32")


def numpy_values(variables) -> list:
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


EQUIVALENCE_OPTIMIZERS = ("adamw", "sgd_clipped")


def equivalence_optimizer(kind: str) -> keras.optimizers.Optimizer:
    """Optimizers for "N devices equal one device" tests.

    "adamw": our AdamW with epsilon 1e-4. With the default 1e-6, Adam's first step is about
    lr * sign(g), so a gradient that is pure rounding noise (|g| ~ 1e-6, e.g. where attention
    is invariant to it) moves its weight by lr * O(1) in either direction depending on the
    order of a sum: a 1e-8 difference between two devices' reductions then shows as ~1e-5.
    "sgd_clipped": plain SGD, linear in the gradient, with global-norm clipping active at 0.01.
    """
    if kind == "adamw":
        return AdamW(learning_rate=1e-3, epsilon=1e-4)
    if kind == "sgd_clipped":
        return keras.optimizers.SGD(learning_rate=0.1, global_clipnorm=0.01)
    raise ValueError(f"kind must be one of {EQUIVALENCE_OPTIMIZERS}; got {kind!r}")


def assert_same_step(ours, reference, our_logs: dict, reference_logs: dict) -> None:
    """One training step on several devices equals the single-device step: the losses and the
    gradient norm, every weight (students, teachers, centre) and the step counter."""
    for key in ("loss", "loss_cls", "loss_pred", "grad_norm"):
        assert our_logs[key] == pytest.approx(reference_logs[key], rel=1e-5), key
    for variable, expected in zip(ours.weights, reference.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable),
            keras.ops.convert_to_numpy(expected),
            atol=1e-6,
            err_msg=variable.path,
        )
    assert int(keras.ops.convert_to_numpy(ours.step)) == int(
        keras.ops.convert_to_numpy(reference.step)
    )
