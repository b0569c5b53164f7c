"""Masking (SPEC section 4, step 1): the visible count against the official integers, and the
token gather against NumPy fancy indexing (exact, any ids, any dtype)."""

import keras
import numpy as np
import pytest

from matpac_keras.masking import gather_tokens, num_visible


@pytest.mark.parametrize(
    "num_tokens, mask_ratio, expected",
    [
        (190, 0.7, 57),  # the paper's 5 x 38 grid (SPEC: len_keep = 57)
        (20, 0.7, 6),  # the tiny test grid
        (190, 0.75, 47),  # 47.5 truncates, as `int` does
        (40, 0.5, 20),
        (10, 0.0, 10),
        (10, 1.0, 0),
        (10, 0.9, 0),  # 10 * (1 - 0.9) = 0.99999...: truncated to 0 as the official code does
    ],
)
def test_num_visible(num_tokens, mask_ratio, expected):
    assert num_visible(num_tokens, mask_ratio) == expected


def _tokens(seed: int, shape=(3, 7, 5)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("ids_dtype", ["int32", "int64"])
def test_gather_tokens_equals_fancy_indexing(ids_dtype):
    tokens = _tokens(0)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 7, size=(3, 4)).astype(ids_dtype)  # repeats allowed
    ours = keras.ops.convert_to_numpy(gather_tokens(tokens, ids))
    assert ours.shape == (3, 4, 5)
    np.testing.assert_array_equal(ours, tokens[np.arange(3)[:, None], ids])


def test_gather_with_each_rows_own_permutation_and_its_inverse():
    tokens = _tokens(2, (4, 9, 6))
    rng = np.random.default_rng(3)
    ids_shuffle = np.stack([rng.permutation(9) for _ in range(4)]).astype("int32")
    assert len({tuple(row) for row in ids_shuffle}) == 4  # rows differ: no row mix-up hides
    shuffled = gather_tokens(tokens, ids_shuffle)
    values = keras.ops.convert_to_numpy(shuffled)
    for b in range(4):
        for i in range(9):
            np.testing.assert_array_equal(values[b, i], tokens[b, ids_shuffle[b, i]])
    restored = gather_tokens(shuffled, np.argsort(ids_shuffle, axis=-1))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), tokens)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int32"])
def test_gather_tokens_keeps_the_dtype(dtype):
    tokens = keras.ops.cast(_tokens(4) * 10, dtype)
    ids = np.array([[6, 0], [3, 3], [1, 5]], "int32")
    out = gather_tokens(tokens, ids)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    expected = keras.ops.convert_to_numpy(keras.ops.cast(tokens, "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
        expected[np.arange(3)[:, None], ids],
    )
