"""The predictor (SPEC section 4, step 4) against a float64 NumPy forward from its own weights:
project, append mask tokens, un-shuffle, add positions, trunk, re-shuffle, keep the masked ones,
project with each output head. Every weight is random and each row has its own permutation."""

import keras
import numpy as np
import pytest

from matpac_keras.predictor import MatpacPredictor
from tests import numpy_reference as ref

ENCODER_DIM, PREDICTOR_DIM, DEPTH, HEADS, MLP_RATIO = 8, 16, 2, 2, 2.0
FREQ, MAX_TIME, TIME = 2, 5, 3  # a 2 x 3 grid (6 tokens) within a 2 x 5 position grid
BATCH, VISIBLE = 3, 2


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def _random_predictor(num_prediction_heads: int, seed: int = 0) -> MatpacPredictor:
    predictor = MatpacPredictor(
        ENCODER_DIM,
        PREDICTOR_DIM,
        DEPTH,
        HEADS,
        MLP_RATIO,
        num_prediction_heads,
        FREQ,
        MAX_TIME,
    )
    predictor.build((None, None, ENCODER_DIM))
    rng = np.random.default_rng(seed)
    for variable in predictor.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    return predictor


def _torch_block_state(block) -> dict:
    """A Keras TransformerBlock's weights under PyTorch (timm) names and layout."""
    pairs = {
        "norm1.weight": block.norm1.gamma,
        "norm1.bias": block.norm1.beta,
        "attn.qkv.weight": block.attn.qkv.kernel,
        "attn.qkv.bias": block.attn.qkv.bias,
        "attn.proj.weight": block.attn.proj.kernel,
        "attn.proj.bias": block.attn.proj.bias,
        "norm2.weight": block.norm2.gamma,
        "norm2.bias": block.norm2.beta,
        "mlp.fc1.weight": block.fc1.kernel,
        "mlp.fc1.bias": block.fc1.bias,
        "mlp.fc2.weight": block.fc2.kernel,
        "mlp.fc2.bias": block.fc2.bias,
    }
    return {key: _numpy(v).T if len(v.shape) == 2 else _numpy(v) for key, v in pairs.items()}


def _reference(predictor: MatpacPredictor, encoded, ids_shuffle) -> np.ndarray:
    """[B, heads, M, D] in float64, written as SPEC section 4 step 4 reads."""
    batch, num_tokens = ids_shuffle.shape
    n_visible = encoded.shape[1] - 1
    x = ref.dense(
        encoded, _numpy(predictor.input_projection.kernel), _numpy(predictor.input_projection.bias)
    )
    mask_token = _numpy(predictor.mask_token)[0, 0]
    grid = np.zeros((batch, num_tokens, PREDICTOR_DIM))
    for b in range(batch):
        for i in range(num_tokens):  # shuffle position i holds token ids_shuffle[b, i]
            grid[b, ids_shuffle[b, i]] = x[b, 1 + i] if i < n_visible else mask_token
    positions = ref.sincos_2d(PREDICTOR_DIM, FREQ, MAX_TIME).reshape(FREQ, MAX_TIME, -1)
    grid = grid + positions[:, :TIME].reshape(1, FREQ * TIME, -1)  # first TIME columns
    h = np.concatenate([x[:, :1], grid], axis=1)
    for block in predictor.trunk.blocks:
        h = ref.block(h, _torch_block_state(block), "", HEADS)
    norm = predictor.trunk.norm
    h = ref.layer_norm(h, _numpy(norm.gamma), _numpy(norm.beta))[:, 1:]
    masked = np.stack([h[b, ids_shuffle[b, n_visible:]] for b in range(batch)])
    return np.stack(
        [
            ref.dense(masked, _numpy(head.kernel), _numpy(head.bias))
            for head in predictor.output_heads
        ],
        axis=1,
    )


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    encoded = rng.normal(size=(BATCH, 1 + VISIBLE, ENCODER_DIM)).astype("float32")
    ids_shuffle = np.stack([rng.permutation(FREQ * TIME) for _ in range(BATCH)]).astype("int32")
    assert len({tuple(row) for row in ids_shuffle}) == BATCH
    return encoded, ids_shuffle


@pytest.mark.parametrize("num_prediction_heads", [1, 3])
def test_predictor_matches_numpy_reference(num_prediction_heads):
    predictor = _random_predictor(num_prediction_heads)
    encoded, ids_shuffle = _inputs(1)
    ours = keras.ops.convert_to_numpy(predictor(encoded, ids_shuffle))
    expected = _reference(predictor, encoded.astype(np.float64), ids_shuffle)
    assert ours.shape == (BATCH, num_prediction_heads, FREQ * TIME - VISIBLE, ENCODER_DIM)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    if num_prediction_heads > 1:  # each head has its own output projection
        assert np.abs(expected[:, 0] - expected[:, 1]).max() > 0.1


def test_predictions_follow_the_shuffle_order_of_the_masked_tokens():
    """Permuting the masked part of `ids_shuffle` permutes the predictions the same way, and
    permuting the visible part together with the encoded tokens changes nothing."""
    predictor = _random_predictor(1, seed=2)
    encoded, ids_shuffle = _inputs(3)
    base = keras.ops.convert_to_numpy(predictor(encoded, ids_shuffle))
    masked_order = np.array([2, 0, 3, 1])
    ids = ids_shuffle.copy()
    ids[:, VISIBLE:] = ids_shuffle[:, VISIBLE:][:, masked_order]
    permuted = keras.ops.convert_to_numpy(predictor(encoded, ids))
    np.testing.assert_allclose(permuted, base[:, :, masked_order], rtol=1e-5, atol=1e-6)
    ids = ids_shuffle.copy()
    ids[:, :VISIBLE] = ids_shuffle[:, VISIBLE - 1 :: -1][:, :VISIBLE]
    swapped = np.concatenate([encoded[:, :1], encoded[:, VISIBLE:0:-1]], axis=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(predictor(swapped, ids)), base, rtol=1e-5, atol=1e-6
    )
    # and the mask matters: another set of visible tokens gives other predictions
    other = np.roll(ids_shuffle, 1, axis=-1)
    assert np.abs(keras.ops.convert_to_numpy(predictor(encoded, other)) - base).max() > 0.1


def test_config_round_trip():
    predictor = _random_predictor(3)
    clone = MatpacPredictor.from_config(predictor.get_config())
    assert clone.get_config() == predictor.get_config()
    assert clone.num_prediction_heads == 3 and clone.max_time_patches == MAX_TIME
