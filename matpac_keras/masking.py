"""Masking of patch tokens (SPEC section 4, step 1): the paper's random unstructured masks, and
inverse block masks (data2vec 2.0, EAT) as an option.

A mask is a token permutation `ids_shuffle` [..., tokens], visible tokens first: the first
`num_visible` entries are the visible tokens, the rest the masked ones. Tokens are in the patch
grid's frequency-major order (index = f * n_time + t).
"""

import math

from keras import ops

MASK_SHAPES = ("random", "inverse_block")
# Side of the square blocks of visible tokens (data2vec 2.0's `mask_length` for images; EAT's 5
# spans a 64 x 8 grid, more than our 5 frequency rows).
INVERSE_BLOCK_SIZE = 3


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept visible: `int(num_tokens * (1 - mask_ratio))`, as the official code."""
    return int(num_tokens * (1 - mask_ratio))


def gather_tokens(tokens, ids):
    """tokens [B, L, D], ids [B, M] -> [B, M, D] with out[b, i] = tokens[b, ids[b, i]]."""
    ids = ops.cast(ids, "int32")[:, :, None]
    return ops.take_along_axis(tokens, ops.repeat(ids, ops.shape(tokens)[-1], axis=-1), axis=1)


def mask_permutation(noise, mask_shape: str, num_freq_patches: int, mask_ratio: float):
    """Uniform noise [..., tokens] in [0, 1) -> a mask permutation [..., tokens], visible first.

    "random": `argsort(noise)` (the official code). "inverse_block": `inverse_block_permutation`.
    """
    if mask_shape == "random":
        return ops.argsort(noise, axis=-1)
    if mask_shape == "inverse_block":
        visible = num_visible(noise.shape[-1], mask_ratio)
        return inverse_block_permutation(noise, num_freq_patches, visible)
    raise ValueError(f"mask_shape must be one of {MASK_SHAPES}; got {mask_shape!r}")


def inverse_block_permutation(noise, num_freq_patches: int, visible: int):
    """Inverse block masks: visible tokens in square blocks, the rest masked (data2vec 2.0).

    As data2vec 2.0's `compute_block_mask_2d(inverse_mask=True)`, blocks of
    `INVERSE_BLOCK_SIZE`^2 tokens are placed at random centres (clipped at the grid's edges) to
    mark the *visible* region, and the count is then made exact, `visible` tokens per example
    (the random mask's count, so shapes stay static). Here the centres are the
    ceil(visible / size^2) tokens of lowest noise, and the count is fixed by rank rather than at
    random: tokens are ranked by (in the region, number of 4-neighbours in the region, -noise),
    so a region that is too large loses its edge tokens first and one too small grows by the
    tokens next to it. Static shapes, `keras.ops` only (any backend, inside a compiled step).

    Args:
        noise: uniform noise [..., tokens] (tokens = num_freq_patches * n_time, frequency-major).
        num_freq_patches: int. Frequency rows of the patch grid.
        visible: int. Visible tokens per example.

    Returns:
        int32 permutations [..., tokens]: the `visible` tokens first, then the masked ones.
    """
    shape, tokens = ops.shape(noise), noise.shape[-1]
    n_time = tokens // num_freq_patches
    grid = ops.reshape(ops.cast(noise, "float32"), (-1, num_freq_patches, n_time))
    centres_count = max(1, math.ceil(visible / INVERSE_BLOCK_SIZE**2))
    threshold = ops.sort(ops.reshape(grid, (-1, tokens)), axis=-1)[:, centres_count - 1]
    centres = ops.cast(grid <= threshold[:, None, None], "float32")
    low = -(INVERSE_BLOCK_SIZE // 2)
    offsets = range(low, low + INVERSE_BLOCK_SIZE)
    region = centres
    for df in offsets:
        for dt in offsets:
            region = ops.maximum(region, _shifted(centres, df, dt))
    neighbours = sum(_shifted(region, df, dt) for df, dt in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    priority = 10.0 * region + neighbours - grid  # region first; then more neighbours; then noise
    ids = ops.argsort(-ops.reshape(priority, (-1, tokens)), axis=-1)
    return ops.reshape(ops.cast(ids, "int32"), shape)


def _shifted(grid, df: int, dt: int):
    """grid [N, F, T] moved so that out[:, f, t] = grid[:, f + df, t + dt], zeros outside."""
    rows, cols = grid.shape[1], grid.shape[2]
    if abs(df) >= rows or abs(dt) >= cols:
        return ops.zeros_like(grid)
    padded = ops.pad(grid, ((0, 0), (abs(df), abs(df)), (abs(dt), abs(dt))))
    f0, t0 = abs(df) + df, abs(dt) + dt
    return padded[:, f0 : f0 + rows, t0 : t0 + cols]
