"""Layers against the NumPy reference, the fixtures' tables, and Keras round trips."""

import keras
import numpy as np
import pytest

from matpac_keras.heads import ClassificationHead, WeightNormDense
from matpac_keras.layers import (
    PatchEmbedding,
    TransformerBlock,
    TransformerStack,
    l2_normalize,
    sincos_2d,
)
from tests import numpy_reference as ref
from tests.test_case import run_layer_test, run_precision_test


def _torch_block_state(dim, hidden, rng, prefix=""):
    shapes = {
        "norm1.weight": (dim,),
        "norm1.bias": (dim,),
        "attn.qkv.weight": (3 * dim, dim),
        "attn.qkv.bias": (3 * dim,),
        "attn.proj.weight": (dim, dim),
        "attn.proj.bias": (dim,),
        "norm2.weight": (dim,),
        "norm2.bias": (dim,),
        "mlp.fc1.weight": (hidden, dim),
        "mlp.fc1.bias": (hidden,),
        "mlp.fc2.weight": (dim, hidden),
        "mlp.fc2.bias": (dim,),
    }
    return {prefix + k: rng.normal(0, 0.3, s).astype("float32") for k, s in shapes.items()}


def _load_block(block, state):
    pairs = [
        (block.norm1.gamma, "norm1.weight"),
        (block.norm1.beta, "norm1.bias"),
        (block.attn.qkv.kernel, "attn.qkv.weight"),
        (block.attn.qkv.bias, "attn.qkv.bias"),
        (block.attn.proj.kernel, "attn.proj.weight"),
        (block.attn.proj.bias, "attn.proj.bias"),
        (block.norm2.gamma, "norm2.weight"),
        (block.norm2.beta, "norm2.bias"),
        (block.fc1.kernel, "mlp.fc1.weight"),
        (block.fc1.bias, "mlp.fc1.bias"),
        (block.fc2.kernel, "mlp.fc2.weight"),
        (block.fc2.bias, "mlp.fc2.bias"),
    ]
    for variable, key in pairs:
        value = state[key]
        variable.assign(value.T if value.ndim == 2 else value)


@pytest.mark.parametrize("num_heads", [1, 4])
def test_transformer_block_matches_numpy_reference(num_heads):
    rng = np.random.default_rng(num_heads)
    state = _torch_block_state(32, 128, rng)
    block = TransformerBlock(num_heads)
    block.build((None, None, 32))
    _load_block(block, state)
    x = rng.normal(size=(2, 7, 32)).astype("float32")
    ours = keras.ops.convert_to_numpy(block(x))
    expected = ref.block(x.astype(np.float64), state, "", num_heads)
    np.testing.assert_allclose(ours, expected, atol=2e-5 * np.abs(expected).max())


def test_head_count_changes_the_output():
    rng = np.random.default_rng(0)
    state = _torch_block_state(32, 128, rng)
    x = rng.normal(size=(1, 5, 32)).astype("float32")
    outs = []
    for heads in (1, 4):
        block = TransformerBlock(heads)
        block.build((None, None, 32))
        _load_block(block, state)
        outs.append(keras.ops.convert_to_numpy(block(x)))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


def test_patch_embedding_equals_strided_conv():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(24, 1, 16, 16)).astype("float32")
    bias = rng.normal(size=(24,)).astype("float32")
    layer = PatchEmbedding(24)
    layer.build((None, 80, 64))
    layer.projection.kernel.assign(weight.reshape(24, 256).T)
    layer.projection.bias.assign(bias)
    spectrogram = rng.normal(size=(2, 80, 70)).astype("float32")  # 6 trailing frames dropped
    ours = keras.ops.convert_to_numpy(layer(spectrogram))
    assert ours.shape == (2, 5, 4, 24)
    expected = ref.patch_embed(spectrogram.astype(np.float64), weight, bias)
    np.testing.assert_allclose(ours.reshape(2, 20, 24), expected, atol=1e-4)


def test_sincos_positions_equal_official_tables(fixture_arrays):
    state = fixture_arrays("train_full")
    np.testing.assert_array_equal(state["pos_embed"][0, 0], 0)
    np.testing.assert_allclose(
        sincos_2d(128, 5, 8).reshape(40, 128), state["pos_embed"][0, 1:], atol=1e-7
    )
    np.testing.assert_allclose(
        sincos_2d(64, 5, 8).reshape(40, 64), state["decoder.decoder_pos_embed"][0, 1:], atol=1e-7
    )


def test_sincos_first_half_encodes_time():
    table = sincos_2d(16, 5, 38)
    np.testing.assert_array_equal(table[0, :, :8], table[3, :, :8])  # same time, any frequency
    np.testing.assert_array_equal(table[:, 0, 8:], table[:, 7, 8:])  # same frequency, any time
    np.testing.assert_allclose(table[0, 1, 0], np.sin(1.0))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(18, 5, 38)


def test_weight_norm_dense():
    rng = np.random.default_rng(2)
    layer = WeightNormDense(6)
    layer.build((None, 4))
    v = rng.normal(size=(4, 6)).astype("float32")
    g = rng.uniform(0.5, 2, size=(6,)).astype("float32")
    layer.v.assign(v)
    layer.g.assign(g)
    x = rng.normal(size=(3, 4)).astype("float32")
    expected = x @ (v / np.linalg.norm(v, axis=0) * g)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_l2_normalize_in_half_precision_neither_overflows_nor_divides_by_zero(dtype):
    x = keras.ops.cast(np.array([[300.0, 0.0], [200.0, 200.0], [0.0, 0.0]], "float32"), dtype)
    out = l2_normalize(x)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    expected = [[1.0, 0.0], [0.5**0.5, 0.5**0.5], [0.0, 0.0]]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), expected, atol=4e-3
    )


def test_l2_normalize_matches_torch_semantics():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], "float32")
    out = keras.ops.convert_to_numpy(l2_normalize(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


LAYER_CASES = [
    (PatchEmbedding, dict(embed_dim=32, patch_size=16), (2, 80, 48), (2, 5, 3, 32)),
    (TransformerBlock, dict(num_heads=4, mlp_ratio=2.0), (2, 5, 32), (2, 5, 32)),
    (TransformerStack, dict(depth=2, num_heads=4), (2, 5, 32), (2, 5, 32)),
    (
        ClassificationHead,
        dict(hidden_dim=64, bottleneck_dim=16, num_classes=10),
        (2, 5, 32),
        (2, 5, 10),
    ),
    (WeightNormDense, dict(units=8), (2, 32), (2, 8)),
]


@pytest.mark.parametrize("cls, kwargs, shape, output_shape", LAYER_CASES)
def test_layer_contract(cls, kwargs, shape, output_shape):
    data = np.random.default_rng(0).normal(size=shape).astype("float32")
    run_layer_test(cls, kwargs, data, output_shape)


@pytest.mark.parametrize("cls, kwargs, shape, output_shape", LAYER_CASES)
def test_mixed_precision(cls, kwargs, shape, output_shape):
    keras.utils.set_random_seed(0)
    run_precision_test(cls, kwargs, np.random.default_rng(0).normal(size=shape).astype("float32"))


def test_each_layer_gets_its_own_random_initial_weights():
    block = TransformerBlock(2)
    block.build((None, None, 8))
    fc1 = keras.ops.convert_to_numpy(block.fc1.kernel).ravel()
    fc2 = keras.ops.convert_to_numpy(block.fc2.kernel).ravel()
    qkv = keras.ops.convert_to_numpy(block.attn.qkv.kernel).ravel()
    proj = keras.ops.convert_to_numpy(block.attn.proj.kernel).ravel()
    assert not np.allclose(fc1, fc2)  # same element count: a shared initialiser made them equal
    assert not np.allclose(qkv[: proj.size], proj)


def test_patch_bias_starts_as_pytorch_conv_default():
    """The official patch conv's bias keeps PyTorch's default: uniform in +-1/sqrt(p * p)."""
    keras.utils.set_random_seed(0)
    layer = PatchEmbedding(4096, patch_size=16)
    layer.build((None, 80, 32))
    bias = keras.ops.convert_to_numpy(layer.projection.bias)
    assert np.abs(bias).max() <= 1 / 16
    assert np.std(bias) == pytest.approx(1 / 16 / np.sqrt(3), rel=0.05)
