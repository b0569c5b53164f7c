"""Analytic FLOPs of the MATPAC encoder on one window (`shared/reference_bench/README.md`).

Matrix products and the patch convolution count 2 FLOPs per multiply-add; softmax, norms, GELU,
additions and the positions are not counted (they are O(tokens x D), against O(tokens x D^2)
for the products). For a window of `frames` log-mel frames, n = F * frames / p patch tokens
(F = num_mels / p frequency patches) and L = n + 1 tokens with the cls token:

    patch embedding   2 n p^2 D
    one block         (8 + 4 r) L D^2 + 4 L^2 D
                      (qkv 6 L D^2, output projection 2 L D^2, MLP 4 r L D^2, scores and
                      weighted values 4 L^2 D)

`tests/flops_test.py` checks the count against XLA's own count of the compiled model.
"""


def block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """FLOPs of one transformer block (timm `Block`) on `tokens` tokens of width `dim`."""
    return (8 + 4 * mlp_ratio) * tokens * dim * dim + 4 * tokens * tokens * dim


def encoder_flops(backbone, frames: int) -> float:
    """FLOPs of `backbone` (a MatpacBackbone, or any object with its config attributes) encoding
    one window of `frames` log-mel frames (a multiple of its patch size): the patch embedding and
    every block."""
    patch, dim = backbone.patch_size, backbone.embed_dim
    if frames <= 0 or frames % patch:
        raise ValueError(f"frames must be a positive multiple of {patch}; got {frames}")
    tokens = (backbone.num_mels // patch) * (frames // patch)
    patches = 2 * tokens * patch * patch * dim
    return patches + backbone.depth * block_flops(tokens + 1, dim, backbone.mlp_ratio)
