"""Transformer building blocks of MATPAC (SPEC sections 2 and 3), equal to timm's ViT pieces."""

import keras
import numpy as np
from keras import ops

LAYER_NORM_EPSILON = 1e-6
_SQRT_HALF = float(np.sqrt(0.5))


def torch_linear_default() -> keras.initializers.Initializer:
    """PyTorch's default initialisation of an nn.Linear weight, kept by the official code where
    its Xavier re-initialisation does not reach: uniform in +-1/sqrt(fan_in). A new instance
    per layer: an initializer made at import time would fix its seed before the run's seed is
    set (and give every layer the same draw)."""
    return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")


def gelu(x):
    """Exact GELU, `x / 2 * (1 + erf(x / sqrt(2)))`: PyTorch's formula (`nn.GELU()`).

    Written with `erf` rather than `keras.ops.gelu(approximate=False)`, which TensorFlow
    computes with `erfc`, an op ONNX has no mapping for (`export(format="onnx")` fails on it).
    """
    return 0.5 * x * (1.0 + ops.erf(x * _SQRT_HALF))


def l2_normalize(x, axis: int = -1):
    """`x / max(||x||, 1e-12)` (torch's F.normalize), in `x`'s dtype. Half-precision inputs are
    normalised in float32: their squares overflow float16 above a norm of about 256, and 1e-12
    is 0 in float16."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    wide = ops.cast(x, "float32") if dtype in ("float16", "bfloat16") else x
    norm = ops.sqrt(ops.sum(ops.square(wide), axis=axis, keepdims=True))
    return ops.cast(wide / ops.maximum(norm, 1e-12), dtype)


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """MAE 1-D sin-cos embedding: [len(positions), dim] = [sin(p * w), cos(p * w)]."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim: int, grid_height: int, grid_width: int) -> np.ndarray:
    """MAE 2-D sin-cos positions for a (frequency, time) grid, [grid_height, grid_width, dim].

    As in MAE, the first half of the channels encodes the *width* (time) coordinate and the
    second half the height (frequency) coordinate.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4; got {dim}")
    width_pos, height_pos = np.meshgrid(np.arange(grid_width), np.arange(grid_height))
    table = np.concatenate([sincos_1d(dim // 2, width_pos), sincos_1d(dim // 2, height_pos)], 1)
    return table.reshape(grid_height, grid_width, dim).astype("float32")


@keras.saving.register_keras_serializable(package="matpac_keras")
class PatchEmbedding(keras.layers.Layer):
    """Log-mel [B, mels, frames] -> patch grid [B, mels/p, frames/p, D] (p = patch size).

    Equal to a conv with kernel = stride = p, written as a reshape and one Dense, whose kernel row
    `kf * p + kt` holds the conv weight at (freq kf, time kt). Frames beyond the last whole patch
    are dropped, as a strided conv drops them.
    """

    def __init__(self, embed_dim: int, patch_size: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.projection = keras.layers.Dense(
            embed_dim,
            kernel_initializer="glorot_uniform",
            # the official conv's bias keeps PyTorch's default: +-1/sqrt(fan_in), fan_in = p * p
            bias_initializer=keras.initializers.RandomUniform(-1 / patch_size, 1 / patch_size),
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        self.projection.build((None, self.patch_size * self.patch_size))

    def call(self, spectrogram):
        p = self.patch_size
        shape = ops.shape(spectrogram)
        n_freq, n_time = shape[1] // p, shape[2] // p
        x = spectrogram[:, : n_freq * p, : n_time * p]
        x = ops.reshape(x, (-1, n_freq, p, n_time, p))
        x = ops.transpose(x, (0, 1, 3, 2, 4))
        x = ops.reshape(x, (-1, n_freq, n_time, p * p))
        return self.projection(x)

    def compute_output_shape(self, input_shape):
        p = self.patch_size
        n_time = None if input_shape[2] is None else input_shape[2] // p
        return (input_shape[0], input_shape[1] // p, n_time, self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="matpac_keras")
class SelfAttention(keras.layers.Layer):
    """timm `Attention`: one fused qkv Dense split as [q | k | v], heads contiguous, then proj."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={self.num_heads}")
        dense = dict(kernel_initializer="glorot_uniform", dtype=self.dtype_policy)
        self.qkv = keras.layers.Dense(3 * dim, name="qkv", **dense)
        self.proj = keras.layers.Dense(dim, name="proj", **dense)
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, x):
        dim = self.proj.units
        head_dim = dim // self.num_heads
        qkv = ops.reshape(self.qkv(x), (ops.shape(x)[0], -1, 3, self.num_heads, head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        out = ops.dot_product_attention(query, key, value, scale=head_dim**-0.5)
        return self.proj(ops.reshape(out, (ops.shape(x)[0], -1, dim)))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="matpac_keras")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm ViT block: `x + Attn(LN(x))`, then `x + MLP(LN(x))` with exact GELU."""

    def __init__(self, num_heads: int, mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio

    def build(self, input_shape):
        dim = input_shape[-1]
        hidden = int(dim * self.mlp_ratio)
        norm = dict(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy)
        dense = dict(kernel_initializer="glorot_uniform", dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(name="norm1", **norm)
        self.attn = SelfAttention(self.num_heads, dtype=self.dtype_policy, name="attn")
        self.norm2 = keras.layers.LayerNormalization(name="norm2", **norm)
        self.fc1 = keras.layers.Dense(hidden, name="fc1", **dense)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **dense)
        for layer in (self.norm1, self.attn, self.norm2, self.fc1):
            layer.build(input_shape)
        self.fc2.build((*input_shape[:-1], hidden))

    def call(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(gelu(self.fc1(self.norm2(x))))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="matpac_keras")
class TransformerStack(keras.layers.Layer):
    """`depth` transformer blocks and a final LayerNorm: the encoder and predictor trunk.

    `call(x, return_layers=True)` also returns every block's output, the last after the norm
    (the per-layer features of SPEC section 6).
    """

    def __init__(self, depth: int, num_heads: int, mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.blocks = [
            TransformerBlock(num_heads, mlp_ratio, dtype=self.dtype_policy, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy, name="norm"
        )

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)
        self.norm.build(input_shape)

    def call(self, x, return_layers: bool = False):
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.norm(x)
        if not return_layers:
            return x
        return x, outputs[:-1] + [x]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
        }
