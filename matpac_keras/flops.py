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

A pretraining step (`training_step_flops`): with V = int(n (1 - mask_ratio)) visible and
M = n - V masked tokens, K views, predictor width P and depth d_p, head sizes (h, b, C):

    student, per view   encoder on V + 1 tokens, predictor (input projection 2 (V + 1) D P,
                        d_p blocks on n + 1 tokens of width P, output heads 2 M P D each),
                        student head on M tokens
    head on t tokens    2 t (D h + h h + h b + b C)
    teacher, per crop   encoder on L_t tokens and head on L_t - 1: L_t = M + 1 with one view
                        (the official [cls; masked]), n + 1 with K > 1 (the whole crop, shared)
    step                3 (patch embedding + K x student) + teacher

The factor 3 is the usual forward + backward estimate (the backward pass costs twice the
forward) for what gets gradients; the teachers only run forward. The EMA, optimizer, centre
and losses are O(parameters) or O(tokens x classes) and not counted.
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


def head_flops(tokens: int, dim: int, hidden: int, bottleneck: int, classes: int) -> float:
    """FLOPs of a `ClassificationHead` on `tokens` tokens of width `dim`."""
    return (
        2 * tokens * (dim * hidden + hidden * hidden + hidden * bottleneck + bottleneck * classes)
    )


def training_step_flops(pretrainer, frames: int) -> float:
    """FLOPs of one training step of `pretrainer` (a MatpacPretrainer, or any object with its
    config attributes and a `backbone`) on one crop of `frames` log-mel frames, all its
    `num_masked_views` views included (see the module docstring)."""
    backbone = pretrainer.backbone
    patch, dim, ratio = backbone.patch_size, backbone.embed_dim, backbone.mlp_ratio
    if frames <= 0 or frames % patch:
        raise ValueError(f"frames must be a positive multiple of {patch}; got {frames}")
    tokens = (backbone.num_mels // patch) * (frames // patch)
    visible = int(tokens * (1 - pretrainer.mask_ratio))  # masking.num_visible
    masked = tokens - visible
    width = pretrainer.predictor_dim
    head_sizes = (pretrainer.head_hidden_dim, pretrainer.head_bottleneck_dim)
    head_sizes = (*head_sizes, pretrainer.num_classes)
    predictor = (
        2 * (visible + 1) * dim * width
        + pretrainer.predictor_depth * block_flops(tokens + 1, width, ratio)
        + pretrainer.num_prediction_heads * 2 * masked * width * dim
    )
    student = (
        backbone.depth * block_flops(visible + 1, dim, ratio)
        + predictor
        + head_flops(masked, dim, *head_sizes)
    )
    teacher_tokens = masked if pretrainer.num_masked_views == 1 else tokens
    teacher = backbone.depth * block_flops(teacher_tokens + 1, dim, ratio) + head_flops(
        teacher_tokens, dim, *head_sizes
    )
    patches = 2 * tokens * patch * patch * dim
    return 3 * (patches + pretrainer.num_masked_views * student) + teacher
