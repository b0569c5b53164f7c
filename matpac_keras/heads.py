"""The DINO-style classification head of MATPAC (SPEC section 3)."""

import keras
from keras import ops

from matpac_keras.layers import gelu, l2_normalize, torch_linear_default


@keras.saving.register_keras_serializable(package="matpac_keras")
class WeightNormDense(keras.layers.Layer):
    """Bias-free Dense with weight normalisation: kernel = g * v / ||v|| per output unit.

    `g` ([units]) and `v` ([in, units], Keras layout) are separate weights, as in PyTorch's
    `weight_norm`, so an EMA can average them separately. `g` starts at 1, and `v` as the
    official head's (DINO's) weight-normed `nn.Linear` is left by PyTorch's default
    initialisation: uniform in +-1/sqrt(inputs) (the model's Xavier re-initialisation does not
    reach `v`).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.v = self.add_weight(
            shape=(input_shape[-1], self.units), initializer=torch_linear_default(), name="v"
        )
        self.g = self.add_weight(shape=(self.units,), initializer="ones", name="g")

    def call(self, x):
        kernel = self.v * (self.g / ops.sqrt(ops.sum(ops.square(self.v), axis=0)))
        return ops.matmul(x, ops.cast(kernel, x.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="matpac_keras")
class ClassificationHead(keras.layers.Layer):
    """MLP (GELU) -> bottleneck -> l2-normalise -> weight-normalised Dense to `num_classes` logits.

    Args:
        hidden_dim: int. Width of the two hidden layers. Defaults to 2048.
        bottleneck_dim: int. Width before the normalisation. Defaults to 256.
        num_classes: int. K, the number of pseudo-classes. Defaults to 2048.
    """

    def __init__(
        self, hidden_dim: int = 2048, bottleneck_dim: int = 256, num_classes: int = 2048, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.bottleneck_dim = bottleneck_dim
        self.num_classes = num_classes
        dense = dict(kernel_initializer="glorot_uniform", dtype=self.dtype_policy)
        self.mlp = [
            keras.layers.Dense(hidden_dim, name="dense_0", **dense),
            keras.layers.Dense(hidden_dim, name="dense_1", **dense),
            keras.layers.Dense(bottleneck_dim, name="dense_2", **dense),
        ]
        self.last_layer = WeightNormDense(num_classes, dtype=self.dtype_policy, name="last_layer")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.mlp:
            layer.build(shape)
            shape = (*shape[:-1], layer.units)
        self.last_layer.build(shape)

    def call(self, x):
        x = gelu(self.mlp[0](x))
        x = gelu(self.mlp[1](x))
        return self.last_layer(l2_normalize(self.mlp[2](x)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "bottleneck_dim": self.bottleneck_dim,
            "num_classes": self.num_classes,
        }
