"""Layer-wise learning-rate decay: depths, multipliers, and `optimizers.AdamW` steps with
multipliers against a NumPy reference of PyTorch's AdamW."""

import keras
import numpy as np
import pytest

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.evaluation.layerwise import layer_depths, lr_multipliers
from matpac_keras.optimizers import AdamW


def test_depths_and_multipliers():
    model = MatpacAudioClassifier(
        MatpacBackbone(embed_dim=16, depth=3, num_heads=2, max_frames=32), 4
    )
    model.build(None)
    depths = layer_depths(model)
    assert set(depths) == {v.path for v in model.trainable_variables}
    bb = model.backbone
    assert depths[bb.cls_token.path] == 0
    assert depths[bb.patch_embedding.trainable_variables[0].path] == 0
    for i, block in enumerate(bb.encoder.blocks):
        assert {depths[v.path] for v in block.trainable_variables} == {i + 1}
    assert {depths[v.path] for v in model.output_dense.trainable_variables} == {4}
    assert {depths[v.path] for v in bb.encoder.norm.trainable_variables} == {4}
    scales = lr_multipliers(model, 0.5)
    assert scales[bb.cls_token.path] == 0.5**4
    assert scales[bb.encoder.blocks[2].trainable_variables[0].path] == 0.5
    assert scales[model.output_dense.trainable_variables[0].path] == 1.0
    with pytest.raises(ValueError, match="layer decay"):
        lr_multipliers(model, 0.0)


def _numpy_adamw(w, grads, lr, scale, wd, decay_weights, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.AdamW with learning rate lr * scale: decoupled decay, then Adam's step with
    epsilon added to the bias-corrected sqrt(v)."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if decay_weights:
            w = w - lr * scale * wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * scale / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
    return w


def test_steps_match_numpy_reference():
    rng = np.random.default_rng(0)
    kernel0 = rng.normal(size=(3, 2)).astype("float32")
    bias0 = rng.normal(size=(2,)).astype("float32")
    kernel = keras.Variable(kernel0, name="kernel")
    bias = keras.Variable(bias0, name="bias")
    grads = [(rng.normal(size=(3, 2)), rng.normal(size=(2,))) for _ in range(3)]
    optimizer = AdamW(
        0.01, beta_2=0.999, epsilon=1e-8, weight_decay=0.1, global_clipnorm=None,
        lr_multipliers={kernel.path: 0.25},
    )  # fmt: skip
    optimizer.exclude_from_weight_decay(var_list=[bias])  # as fine-tuning: kernels decay only
    for g_kernel, g_bias in grads:
        optimizer.apply([g_kernel.astype("float32"), g_bias.astype("float32")], [kernel, bias])
    expected_kernel = _numpy_adamw(kernel0, [g[0] for g in grads], 0.01, 0.25, 0.1, True)
    expected_bias = _numpy_adamw(bias0, [g[1] for g in grads], 0.01, 1.0, 0.1, False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), expected_kernel, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bias), expected_bias, rtol=1e-5)


def test_config_round_trip():
    optimizer = AdamW(3e-4, weight_decay=0.02, lr_multipliers={"a/b": 0.5}, beta_2=0.95)
    clone = AdamW.from_config(optimizer.get_config())
    assert clone.weight_decay == 0.02 and clone.lr_multipliers == {"a/b": 0.5}
    assert clone.beta_2 == 0.95 and AdamW().lr_multipliers is None
