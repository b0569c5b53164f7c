"""Layer-wise learning-rate decay for fine-tuning: per-variable learning-rate multipliers.

Depth 0 is the patch embedding and cls token, depth i the i-th transformer block, depth L + 1
the final norm and the head; a variable at depth d learns at `decay ** (L + 1 - d)` times the
base rate (BEiT / MAE fine-tuning). Scaling gradients would not do: Adam normalises them away.
So `LayerwiseAdamW` scales the learning rate inside `update_step`, a public Keras optimizer hook
that all three backends call once per variable.
"""

import keras
from keras import ops

from matpac_keras.evaluation.classifier import MatpacClassifier


def layer_depths(model: MatpacClassifier) -> dict[str, int]:
    """Depth of each trainable variable of a classifier, by variable path."""
    backbone = model.backbone
    top = len(backbone.encoder.blocks) + 1
    depths = {v.path: top for v in model.trainable_variables}
    depths[backbone.cls_token.path] = 0
    for v in backbone.patch_embedding.trainable_variables:
        depths[v.path] = 0
    for i, block in enumerate(backbone.encoder.blocks):
        for v in block.trainable_variables:
            depths[v.path] = i + 1
    return depths


def lr_multipliers(model: MatpacClassifier, decay: float) -> dict[str, float]:
    """`decay ** (L + 1 - depth)` per variable path; all 1 for decay 1."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer decay must be in (0, 1]; got {decay}")
    depths = layer_depths(model)
    top = max(depths.values())
    return {path: float(decay ** (top - depth)) for path, depth in depths.items()}


@keras.saving.register_keras_serializable(package="matpac_keras")
class LayerwiseAdamW(keras.optimizers.Adam):
    """Adam with decoupled weight decay and a learning-rate multiplier per variable path.

    Each step, for a variable with multiplier m and learning rate lr:
    `w <- w - lr * m * weight_decay * w` (2-D kernels only: no decay for biases, norms and the
    cls token), then Adam's update with learning rate `lr * m`.

    Args:
        learning_rate: float or schedule. Defaults to 1e-3.
        weight_decay: float. Decoupled weight decay. Defaults to 0.05.
        lr_multipliers: dict {variable path: multiplier}; missing paths use 1.
        **kwargs: other `keras.optimizers.Adam` arguments (beta_1, beta_2, epsilon, ...).
    """

    def __init__(
        self,
        learning_rate=1e-3,
        weight_decay: float = 0.05,
        lr_multipliers: dict[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.decoupled_weight_decay = weight_decay
        self.lr_multipliers = dict(lr_multipliers or {})

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # By index: under TensorFlow, update_step sees the tf.Variable, which has no path.
        self._scales = [self.lr_multipliers.get(v.path, 1.0) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        learning_rate = ops.cast(learning_rate, variable.dtype) * scale
        if self.decoupled_weight_decay and len(variable.shape) == 2:
            decay = ops.cast(self.decoupled_weight_decay, variable.dtype)
            self.assign_sub(variable, variable * decay * learning_rate)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.decoupled_weight_decay
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config
