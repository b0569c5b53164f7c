"""Random unstructured masking of patch tokens (SPEC section 4, step 1)."""

from keras import ops


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept visible: `int(num_tokens * (1 - mask_ratio))`, as the official code."""
    return int(num_tokens * (1 - mask_ratio))


def gather_tokens(tokens, ids):
    """tokens [B, L, D], ids [B, M] -> [B, M, D] with out[b, i] = tokens[b, ids[b, i]]."""
    ids = ops.cast(ids, "int32")[:, :, None]
    return ops.take_along_axis(tokens, ops.repeat(ids, ops.shape(tokens)[-1], axis=-1), axis=1)
