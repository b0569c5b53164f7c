"""The MATPAC predictor ("decoder"): predicts the teacher's latents of the masked tokens."""

import keras
from keras import ops

from matpac_keras.layers import TransformerStack, sincos_2d
from matpac_keras.masking import gather_tokens


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacPredictor(keras.layers.Layer):
    """Encoded visible tokens [B, 1 + V, D] -> predictions [B, heads, M, D] of the M masked ones.

    Projects to `predictor_dim`, appends mask tokens, un-shuffles to grid order, adds fixed
    positions, runs the trunk, re-shuffles, keeps the masked positions (in shuffle order) and
    projects back to D with one output head (MATPAC) or `num_prediction_heads` (MATPAC++).

    Args:
        encoder_dim: int. D, the encoder width (input and output).
        predictor_dim: int. Trunk width. Defaults to 512.
        depth: int. Transformer blocks. Defaults to 8.
        num_heads: int. Attention heads. Defaults to 16.
        mlp_ratio: float. Defaults to 4.
        num_prediction_heads: int. 1 for MATPAC, 5 for MATPAC++ (multiple choice learning).
        num_freq_patches: int. Frequency rows of the token grid. Defaults to 5.
        max_time_patches: int. Time columns of the position grid. Defaults to 38.
    """

    def __init__(
        self,
        encoder_dim: int,
        predictor_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_prediction_heads: int = 1,
        num_freq_patches: int = 5,
        max_time_patches: int = 38,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder_dim = encoder_dim
        self.predictor_dim = predictor_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.num_prediction_heads = num_prediction_heads
        self.num_freq_patches = num_freq_patches
        self.max_time_patches = max_time_patches
        dense = dict(kernel_initializer="glorot_uniform", dtype=self.dtype_policy)
        self.input_projection = keras.layers.Dense(predictor_dim, name="input_projection", **dense)
        self.trunk = TransformerStack(
            depth, num_heads, mlp_ratio, dtype=self.dtype_policy, name="trunk"
        )
        self.output_heads = [
            keras.layers.Dense(encoder_dim, name=f"output_head_{i}", **dense)
            for i in range(num_prediction_heads)
        ]
        self.positions = sincos_2d(predictor_dim, num_freq_patches, max_time_patches)

    def build(self, input_shape):
        self.input_projection.build((None, None, self.encoder_dim))
        self.mask_token = self.add_weight(
            shape=(1, 1, self.predictor_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="mask_token",
        )
        self.trunk.build((None, None, self.predictor_dim))
        for head in self.output_heads:
            head.build((None, None, self.predictor_dim))

    def call(self, encoded_visible, ids_shuffle):
        batch = ops.shape(encoded_visible)[0]
        num_tokens = ops.shape(ids_shuffle)[1]
        x = self.input_projection(encoded_visible)
        num_visible = ops.shape(x)[1] - 1
        mask_tokens = ops.broadcast_to(
            ops.cast(self.mask_token, x.dtype),
            (batch, num_tokens - num_visible, self.predictor_dim),
        )
        shuffled = ops.concatenate([x[:, 1:], mask_tokens], axis=1)
        grid_order = gather_tokens(shuffled, ops.argsort(ids_shuffle, axis=-1))
        n_time = num_tokens // self.num_freq_patches
        positions = ops.convert_to_tensor(self.positions)[:, :n_time]
        positions = ops.reshape(ops.cast(positions, x.dtype), (1, -1, self.predictor_dim))
        x = self.trunk(ops.concatenate([x[:, :1], grid_order + positions], axis=1))
        masked = gather_tokens(x[:, 1:], ids_shuffle)[:, num_visible:]
        return ops.stack([head(masked) for head in self.output_heads], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder_dim": self.encoder_dim,
            "predictor_dim": self.predictor_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "num_prediction_heads": self.num_prediction_heads,
            "num_freq_patches": self.num_freq_patches,
            "max_time_patches": self.max_time_patches,
        }
