"""The MATPAC encoder: patch embedding, fixed positions, cls token and transformer trunk."""

import keras
from keras import ops

from matpac_keras.layers import PatchEmbedding, TransformerStack, sincos_2d

# One table of model sizes (ViT naming). "base" is the paper's model.
BACKBONE_VARIANTS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}


class ShapeFreeModel(keras.Model):
    """A Model whose weights do not depend on the input shape: `build(None)` creates them all,
    and a `.keras` file rebuilds it that way before loading the weights."""

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        self.build(None)


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacBackbone(ShapeFreeModel):
    """Normalised log-mel [batch, num_mels, frames] -> tokens [batch, 1 + patches, embed_dim].

    Tokens are frequency-major (index = f * time_patches + t) and preceded by the cls token.
    Inputs shorter than `max_frames` use the first columns of the position grid.

    Args:
        embed_dim: int. Token width D. Defaults to 768 (ViT-Base).
        depth: int. Number of transformer blocks. Defaults to 12.
        num_heads: int. Attention heads. Defaults to 12.
        mlp_ratio: float. MLP hidden width over D. Defaults to 4.
        patch_size: int. Square patch side, in mel bins and frames. Defaults to 16.
        num_mels: int. Mel bins of the input. Defaults to 80.
        max_frames: int. Longest input in frames (the position grid). Defaults to 608 (6.08 s).

    Example:
    >>> backbone = MatpacBackbone.from_variant("base")
    >>> tokens = backbone(keras.ops.zeros((2, 80, 608)))  # [2, 191, 768]
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        num_mels: int = 80,
        max_frames: int = 608,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_mels % patch_size or max_frames < patch_size:
            raise ValueError(
                f"num_mels={num_mels} must be a multiple of patch_size={patch_size} and "
                f"max_frames={max_frames} at least one patch"
            )
        # === Layers ===
        self.patch_embedding = PatchEmbedding(
            embed_dim, patch_size, dtype=self.dtype_policy, name="patch_embedding"
        )
        self.encoder = TransformerStack(
            depth, num_heads, mlp_ratio, dtype=self.dtype_policy, name="encoder"
        )
        # === Config ===
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.patch_size = patch_size
        self.num_mels = num_mels
        self.max_frames = max_frames
        self.positions = sincos_2d(embed_dim, self.num_freq_patches, self.max_time_patches)

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> "MatpacBackbone":
        """A backbone of a named size from `BACKBONE_VARIANTS` ("tiny", "small", "base", ...)."""
        if variant not in BACKBONE_VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {sorted(BACKBONE_VARIANTS)}")
        return cls(**{**BACKBONE_VARIANTS[variant], **kwargs})

    @property
    def num_freq_patches(self) -> int:
        return self.num_mels // self.patch_size

    @property
    def max_time_patches(self) -> int:
        return self.max_frames // self.patch_size

    def build(self, input_shape=None):
        self.patch_embedding.build((None, self.num_mels, self.max_frames))
        self.cls_token = self.add_weight(
            shape=(1, 1, self.embed_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="cls_token",
        )
        self.encoder.build((None, None, self.embed_dim))
        self.built = True

    def check_spectrogram_shape(self, shape) -> None:
        """Raises ValueError for inputs this backbone cannot encode (when shapes are static)."""
        if len(shape) != 3:
            raise ValueError(f"expected log-mel [batch, {self.num_mels}, frames]; got {shape}")
        if shape[1] is not None and shape[1] != self.num_mels:
            raise ValueError(f"expected {self.num_mels} mel bins; got shape {tuple(shape)}")
        frames = shape[2]
        if frames is not None and not self.patch_size <= frames < self.max_frames + self.patch_size:
            raise ValueError(
                f"input of {frames} frames: this backbone takes {self.patch_size} to "
                f"{self.max_frames} frames; cut longer audio into chunks (see embedding.py)"
            )

    def embed_patches(self, spectrogram):
        """Patch tokens plus positions, frequency-major, without cls: [B, F * T, D]."""
        self.check_spectrogram_shape(spectrogram.shape)
        grid = self.patch_embedding(spectrogram)
        n_time = ops.shape(grid)[2]
        positions = ops.cast(ops.convert_to_tensor(self.positions)[:, :n_time], grid.dtype)
        return ops.reshape(grid + positions[None], (ops.shape(grid)[0], -1, self.embed_dim))

    def prepend_cls(self, tokens):
        """[B, L, D] -> [B, 1 + L, D] with the cls token (its position is all zeros)."""
        cls = ops.cast(self.cls_token, tokens.dtype)
        cls = ops.broadcast_to(cls, (ops.shape(tokens)[0], 1, self.embed_dim))
        return ops.concatenate([cls, tokens], axis=1)

    def call(self, spectrogram, return_layers: bool = False):
        return self.encoder(
            self.prepend_cls(self.embed_patches(spectrogram)), return_layers=return_layers
        )

    def compute_output_shape(self, input_shape):
        time = None if input_shape[2] is None else input_shape[2] // self.patch_size
        tokens = None if time is None else 1 + self.num_freq_patches * time
        return (input_shape[0], tokens, self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "patch_size": self.patch_size,
            "num_mels": self.num_mels,
            "max_frames": self.max_frames,
        }
