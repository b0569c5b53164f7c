"""The analytic FLOP count of the encoder against XLA's count of the compiled model (JAX), and
the training step's count against a hand count.

XLA's `cost_analysis()` counts every operation: the products our formula counts, plus the
element-wise ones it leaves out (norms, GELU, softmax, additions), which cost O(L D) per block
against (8 + 4 r) L D^2 for the products, i.e. a share of about c / (24 D). At D = 128 that is
1.8 % (48 frames) to 2.1 % (608 frames) here: a bound of 5 % leaves more than twice that, while
a missing term fails it (without the attention products, 4 L^2 D, the count at 608 frames is
25 % short; without the patch embedding, 8 %).
"""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.flops import block_flops, encoder_flops, head_flops, training_step_flops
from tests.pretrainer_tiny import tiny_pretrainer

on_jax = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="counts XLA's FLOPs: JAX backend only"
)


@on_jax
@pytest.mark.parametrize("frames", [48, 608])
def test_formula_matches_xla_cost_analysis(frames):
    import jax

    backbone = MatpacBackbone(embed_dim=128, depth=2, num_heads=4, max_frames=608)
    trainable = [v.value for v in backbone.trainable_variables]
    fixed = [v.value for v in backbone.non_trainable_variables]

    def encode(trainable, fixed, spectrogram):
        return backbone.stateless_call(trainable, fixed, spectrogram)[0]

    spectrogram = np.zeros((1, 80, frames), "float32")
    cost = jax.jit(encode).lower(trainable, fixed, spectrogram).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    ours = encoder_flops(backbone, frames)
    assert 0 <= cost["flops"] / ours - 1 < 0.05, (cost["flops"], ours)


def test_formula_by_hand_and_reference_bench():
    """The paper's model: one 6.08 s window is 190 patches, 191 tokens; a 10 s clip in precise
    mode (998 frames, padded to 1008: windows of 608 and 400) is reference_bench's 55.90 GFLOP."""
    backbone = MatpacBackbone.from_variant("base")
    patches = 2 * 190 * 256 * 768
    blocks = 12 * (24 * 191 * 768**2 + 4 * 191**2 * 768)
    assert encoder_flops(backbone, 608) == patches + blocks
    ten_seconds = encoder_flops(backbone, 608) + encoder_flops(backbone, 400)
    assert ten_seconds / 1e9 == pytest.approx(55.90, abs=0.005)
    assert block_flops(10, 8, 4.0) == 24 * 10 * 64 + 4 * 100 * 8
    with pytest.raises(ValueError, match="multiple of 16; got 50"):
        encoder_flops(backbone, 50)


@pytest.mark.parametrize("views", [1, 4])
def test_training_step_flops_by_hand(views):
    """The tiny pretrainer (D 32, 1 block, predictor 32 x 1, heads 32 / 16 / 32 classes) on a
    5 x 4 grid: 20 tokens, 6 visible, 14 masked, counted term by term."""
    model = tiny_pretrainer(num_masked_views=views)
    block = lambda tokens: 24 * tokens * 32 * 32 + 4 * tokens**2 * 32  # noqa: E731 (r = 4)
    head = lambda tokens: 2 * tokens * (32 * 32 + 32 * 32 + 32 * 16 + 16 * 32)  # noqa: E731
    patches = 2 * 20 * 16 * 16 * 32
    predictor = 2 * 7 * 32 * 32 + block(21) + 2 * 14 * 32 * 32
    student = block(7) + predictor + head(14)
    teacher = block(15) + head(14) if views == 1 else block(21) + head(20)
    assert training_step_flops(model, 64) == 3 * (patches + views * student) + teacher
    assert head_flops(14, 32, 32, 16, 32) == head(14)
    with pytest.raises(ValueError, match="multiple of 16; got 60"):
        training_step_flops(model, 60)
