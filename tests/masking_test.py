"""Masking (SPEC section 4, step 1): the visible count against the official integers, the
random and inverse block masks against NumPy (exact counts, permutations, block shape), and the
token gather against NumPy fancy indexing (exact, any ids, any dtype)."""

import keras
import numpy as np
import pytest

from matpac_keras.masking import (
    MASK_SHAPES,
    gather_tokens,
    inverse_block_permutation,
    mask_permutation,
    num_visible,
)


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


def _visible_grid(ids: np.ndarray, num_freq: int, visible: int) -> np.ndarray:
    """Mask permutations [N, tokens] -> visible-token grids [N, F, T] (bool), in NumPy."""
    grid = np.zeros(ids.shape, bool)
    np.put_along_axis(grid, ids[:, :visible], True, axis=1)
    return grid.reshape(ids.shape[0], num_freq, -1)


def _visible_neighbours(grid: np.ndarray) -> np.ndarray:
    """Visible 4-neighbours of each grid cell [N, F, T]."""
    p = np.pad(grid, ((0, 0), (1, 1), (1, 1))).astype(int)
    return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]


@pytest.mark.parametrize("mask_shape", MASK_SHAPES)
@pytest.mark.parametrize("n_time", [2, 4, 8, 38])  # FSDD demo, tiny tests, demo, paper grids
def test_masks_are_permutations_with_the_exact_visible_count(mask_shape, n_time):
    tokens = 5 * n_time
    noise = np.random.default_rng(n_time).random((64, tokens)).astype("float32")
    ids = keras.ops.convert_to_numpy(mask_permutation(noise, mask_shape, 5, 0.7))
    assert ids.shape == (64, tokens)
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.tile(np.arange(tokens), (64, 1)))
    visible = num_visible(tokens, 0.7)
    # Exactly `visible` visible tokens in every example: the masked share is the random mask's.
    np.testing.assert_array_equal(_visible_grid(ids, 5, visible).sum(axis=(1, 2)), visible)
    if mask_shape == "random":  # the official draw: argsort of the noise
        np.testing.assert_array_equal(ids, np.argsort(noise, axis=1, kind="stable"))


@pytest.mark.parametrize("n_time", [4, 8, 38])
def test_inverse_block_masks_keep_visible_tokens_in_blocks(n_time):
    """Visible tokens next to other visible tokens: in blocks, nearly all of them, with 2+
    visible 4-neighbours on average; in random masks of the same count, 62-71 % and about one
    (NumPy, same noise), so the thresholds would catch a random mask."""
    tokens, rng = 5 * n_time, np.random.default_rng(n_time)
    noise = rng.random((256, tokens)).astype("float32")
    visible = num_visible(tokens, 0.7)
    blocks = keras.ops.convert_to_numpy(inverse_block_permutation(noise, 5, visible))
    for ids, is_block in ((blocks, True), (np.argsort(noise, axis=1), False)):
        grid = _visible_grid(ids, 5, visible)
        neighbours = _visible_neighbours(grid)[grid]
        with_neighbour, mean = (neighbours > 0).mean(), neighbours.mean()
        assert (with_neighbour > 0.95 and mean > 1.8) == is_block, (with_neighbour, mean)
    # The lowest-noise token (the first block centre) is visible in every example.
    centre = np.argmin(noise, axis=1)
    assert all(centre[i] in blocks[i, :visible] for i in range(256))


def test_inverse_block_masks_over_leading_axes():
    """[batch, views, tokens] noise: each view its own mask, as the flattened rows."""
    noise = np.random.default_rng(9).random((3, 4, 40)).astype("float32")
    ids = keras.ops.convert_to_numpy(inverse_block_permutation(noise, 5, 12))
    flat = keras.ops.convert_to_numpy(inverse_block_permutation(noise.reshape(12, 40), 5, 12))
    np.testing.assert_array_equal(ids.reshape(12, 40), flat)
    with pytest.raises(ValueError, match="mask_shape must be one of"):
        mask_permutation(noise, "block", 5, 0.7)
