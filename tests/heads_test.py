"""The classification head (SPEC section 3) against a float64 NumPy forward from its own weights:
MLP with exact GELU -> bottleneck -> l2-normalise -> weight-normalised Dense (g, v separate)."""

import keras
import numpy as np
import pytest

from matpac_keras.heads import ClassificationHead, WeightNormDense
from tests import numpy_reference as ref

IN, HIDDEN, BOTTLENECK, CLASSES = 8, 16, 6, 10


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _random_head(seed: int) -> ClassificationHead:
    """A built head whose every weight (biases, g) is random, so each one shows in the output."""
    head = ClassificationHead(HIDDEN, BOTTLENECK, CLASSES)
    head.build((None, None, IN))
    rng = np.random.default_rng(seed)
    for variable in head.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
    head.last_layer.g.assign(rng.uniform(0.5, 2.0, CLASSES).astype("float32"))
    return head


def _reference(head: ClassificationHead, x: np.ndarray) -> np.ndarray:
    w = [[_numpy(v).astype(np.float64) for v in layer.weights] for layer in head.mlp]
    h = ref.gelu(ref.dense(x, *w[0]))
    h = ref.gelu(ref.dense(h, *w[1]))
    z = ref.l2_normalize(ref.dense(h, *w[2]))
    v = _numpy(head.last_layer.v).astype(np.float64)  # Keras layout [in, units]
    g = _numpy(head.last_layer.g).astype(np.float64)
    # PyTorch's weight_norm on weight_v [units, in]: each output unit's row has norm g
    weight = g[:, None] * v.T / np.linalg.norm(v.T, axis=1, keepdims=True)
    return z @ weight.T


def test_head_matches_numpy_reference():
    head = _random_head(0)
    x = np.random.default_rng(1).normal(size=(2, 5, IN)).astype("float32")
    ours = _numpy(head(x))
    expected = _reference(head, x.astype(np.float64))
    assert ours.shape == (2, 5, CLASSES)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_logits_are_bounded_by_the_gains():
    """|logit_k| <= g_k: a unit bottleneck times a weight row of norm g_k (Cauchy-Schwarz)."""
    head = _random_head(2)
    x = np.random.default_rng(3).normal(size=(64, IN)).astype("float32") * 10
    logits = _numpy(head(x))
    gains = _numpy(head.last_layer.g)
    assert (np.abs(logits) <= gains * (1 + 1e-6)).all()
    assert (np.abs(logits).max(axis=0) > 0.3 * gains).all()  # not trivially small


def test_bottleneck_scale_does_not_matter_down_to_zero():
    """l2-normalisation with torch's eps 1e-12: a bottleneck of norm ~1e-8 gives the logits of
    one of norm ~1; an all-zero one gives zero logits (no division by zero)."""
    head = _random_head(4)
    dense_2 = head.mlp[2]
    dense_2.kernel.assign(np.zeros(dense_2.kernel.shape, "float32"))  # bottleneck = bias
    bias = np.random.default_rng(5).normal(size=BOTTLENECK).astype("float32")
    x = np.ones((3, IN), "float32")
    logits = {}
    for scale in (1.0, 1e-8, 0.0):
        dense_2.bias.assign(bias * np.float32(scale))
        logits[scale] = _numpy(head(x))
    np.testing.assert_allclose(logits[1e-8], logits[1.0], rtol=1e-5, atol=1e-6)
    assert np.abs(logits[1.0]).max() > 0.1
    np.testing.assert_array_equal(logits[0.0], 0.0)


def test_weight_norm_is_per_output_unit_and_g_scales_it():
    rng = np.random.default_rng(5)
    layer = WeightNormDense(CLASSES)
    layer.build((None, BOTTLENECK))
    v = rng.normal(size=(BOTTLENECK, CLASSES)).astype("float32")
    g = rng.uniform(0.5, 2.0, CLASSES).astype("float32")
    layer.v.assign(v)
    layer.g.assign(g)
    x = rng.normal(size=(4, BOTTLENECK)).astype("float32")
    before = _numpy(layer(x))
    scales = rng.uniform(0.1, 10.0, CLASSES).astype("float32")
    layer.v.assign(v * scales)  # rescaling a unit's v does not change its kernel
    np.testing.assert_allclose(_numpy(layer(x)), before, rtol=1e-5, atol=1e-6)
    layer.g.assign(g * scales)  # rescaling its g rescales its output
    np.testing.assert_allclose(_numpy(layer(x)), before * scales, rtol=1e-5, atol=1e-6)


def test_initial_gain_is_one_and_g_v_are_separate_weights():
    head = ClassificationHead(HIDDEN, BOTTLENECK, CLASSES)
    head.build((None, IN))
    last = head.last_layer
    np.testing.assert_array_equal(_numpy(last.g), np.ones(CLASSES))
    assert tuple(last.v.shape) == (BOTTLENECK, CLASSES)
    trainable = {id(w) for w in head.trainable_weights}
    assert {id(last.g), id(last.v)} <= trainable
    assert len(head.trainable_weights) == 3 * 2 + 2  # three Dense (kernel, bias), g and v
    for dense in head.mlp:  # SPEC: Linear bias 0 at the start
        np.testing.assert_array_equal(_numpy(dense.bias), 0.0)


@pytest.mark.parametrize("shape", [(3, IN), (2, 4, IN)])
def test_output_shape(shape):
    head = _random_head(6)
    x = np.zeros(shape, "float32")
    assert tuple(head(x).shape) == (*shape[:-1], CLASSES)
    assert head.compute_output_shape(shape) == (*shape[:-1], CLASSES)


def test_v_starts_as_pytorch_linear_default():
    """The official head's weight-normed nn.Linear keeps PyTorch's default initialisation,
    uniform in +-1/sqrt(inputs) (Xavier, which the rest of the model gets, would give rows of
    another norm: the step size of v's direction depends on it)."""
    keras.utils.set_random_seed(0)
    layer = WeightNormDense(512)
    layer.build((None, 64))
    v = keras.ops.convert_to_numpy(layer.v)
    bound = 1 / np.sqrt(64)
    assert np.abs(v).max() <= bound
    assert np.abs(v).max() > 0.99 * bound  # uniform up to the bound, not narrower
    assert np.std(v) == pytest.approx(bound / np.sqrt(3), rel=0.02)


def test_v_follows_the_run_seed():
    """v's draw is fixed by `set_random_seed` (an initializer made at import time would fix its
    own seed first: the same v for every seed, another in every process)."""

    def v_for(seed):
        keras.utils.set_random_seed(seed)
        layer = WeightNormDense(8)
        layer.build((None, 4))
        return keras.ops.convert_to_numpy(layer.v)

    np.testing.assert_array_equal(v_for(0), v_for(0))
    assert not np.allclose(v_for(0), v_for(1))
