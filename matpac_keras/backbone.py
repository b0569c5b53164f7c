"""The MATPAC encoder: patch embedding, fixed positions, cls token and transformer trunk.

`MatpacBackbone` is a `keras_hub.models.Backbone`: `save_to_preset(dir)` writes a keras-hub
preset directory (config.json, model.weights.h5, metadata.json) and
`keras_hub.models.Backbone.from_preset(dir)` (or `MatpacBackbone.from_preset`) reads it back, once
`matpac_keras` is imported (which registers the class with Keras).
"""

import hashlib
import json

import keras
import keras_hub
import numpy as np
from keras import ops

from matpac_keras.config_ranges import BACKBONE
from matpac_keras.errors import InputError
from matpac_keras.layers import PatchEmbedding, TransformerStack, sincos_2d

# One table of model sizes (ViT naming). "base" is the paper's model.
BACKBONE_VARIANTS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}

MOST_POSITIONS = 2**28  # values of the position grid, (mels / p) * (max_frames / p) * D: 1 GiB


def check_backbone_config(**config) -> None:
    """Raises InputError (a ValueError) naming the field unless a backbone's sizes are in their
    ranges (`config_ranges.BACKBONE`: integers, but `mlp_ratio`, a finite number), `embed_dim`
    is a multiple of 4 (the sin-cos positions) and of `num_heads`, `num_mels` a multiple of
    `patch_size`, `max_frames` at least one patch, and the position grid at most
    `MOST_POSITIONS` values."""
    for name, allowed in BACKBONE.items():
        if name in config and (why := allowed.error(config[name])) is not None:
            raise InputError(f"{name}={config[name]!r}: {why}")
    dim, heads = config.get("embed_dim", 768), config.get("num_heads", 12)
    patch, mels = config.get("patch_size", 16), config.get("num_mels", 80)
    frames = config.get("max_frames", 608)
    if dim % 4 or dim % heads:
        raise InputError(f"embed_dim={dim} must be a multiple of 4 and of num_heads={heads}")
    if mels % patch or frames < patch:
        raise InputError(
            f"num_mels={mels} must be a multiple of patch_size={patch} and "
            f"max_frames={frames} at least one patch"
        )
    positions = (mels // patch) * (frames // patch) * dim
    if positions > MOST_POSITIONS:
        raise InputError(
            f"max_frames={frames}: a position grid of {positions:,} values (more than "
            f"{MOST_POSITIONS:,}); the sizes are not those of a usable model"
        )


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacBackbone(keras_hub.models.Backbone):
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
        stored_positions: bool. Take the positions from a table kept with the weights
            (non-trainable `position_table` [1 + F * T, D], initialised to the sin-cos grid;
            row 0 is added to the cls token), as the authors' code adds whatever `pos_embed` a
            checkpoint holds: `matpac-convert` sets it for a checkpoint whose table is not the
            sin-cos grid. Defaults to False: the fixed sin-cos grid, computed, not stored.

    Sizes out of their ranges (`config_ranges.BACKBONE`) or inconsistent ones
    (`check_backbone_config`) raise InputError before anything is allocated.

    The backbone is built on construction (its weights do not depend on the input length), and
    its input signature is `[batch, num_mels, frames]` with `frames` free, so that
    `export(path, format=...)` traces it for any length.

    Example:
    >>> backbone = MatpacBackbone.from_variant("base")
    >>> tokens = backbone(keras.ops.zeros((2, 80, 608)))  # [2, 191, 768]
    >>> backbone.save_to_preset("matpac_base")
    >>> keras_hub.models.Backbone.from_preset("matpac_base")  # a MatpacBackbone
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
        stored_positions: bool = False,
        **kwargs,
    ):
        check_backbone_config(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            num_mels=num_mels,
            max_frames=max_frames,
        )
        super().__init__(**kwargs)
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
        self.stored_positions = bool(stored_positions)
        self.positions = sincos_2d(embed_dim, self.num_freq_patches, self.max_time_patches)
        self.build()

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

    @property
    def input_shape_spec(self) -> tuple:
        """The input shape this backbone takes: `(None, num_mels, None)`."""
        return (None, self.num_mels, None)

    def build(self, input_shape=None):
        if self.built:
            return
        self.patch_embedding.build((None, self.num_mels, self.max_frames))
        self.cls_token = self.add_weight(
            shape=(1, 1, self.embed_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="cls_token",
        )
        if self.stored_positions:
            table = self.positions.reshape(-1, self.embed_dim)
            self.position_table = self.add_weight(
                shape=(1 + table.shape[0], self.embed_dim),
                initializer=keras.initializers.Constant(
                    np.concatenate([np.zeros((1, self.embed_dim), "float32"), table])
                ),
                trainable=False,
                name="position_table",
            )
        self.encoder.build((None, None, self.embed_dim))
        self.built = True

    def get_build_config(self):
        return {"input_shape": list(self.input_shape_spec)}

    def build_from_config(self, config):
        self.build()

    def check_spectrogram_shape(self, shape) -> None:
        """Raises ValueError for inputs this backbone cannot encode (when shapes are static)."""
        try:
            rank = len(shape)
        except (TypeError, ValueError):  # unknown rank while tracing: the ops check it
            return
        if rank != 3:
            raise ValueError(f"expected log-mel [batch, {self.num_mels}, frames]; got {shape}")
        if shape[1] is not None and shape[1] != self.num_mels:
            raise ValueError(f"expected {self.num_mels} mel bins; got shape {tuple(shape)}")
        frames = shape[2]  # None, or a symbolic dimension while exporting: checked at run time
        if (
            isinstance(frames, int)
            and not self.patch_size <= frames < self.max_frames + self.patch_size
        ):
            raise ValueError(
                f"input of {frames} frames: this backbone takes {self.patch_size} to "
                f"{self.max_frames} frames; cut longer audio into chunks (see embedding.py)"
            )

    def embed_patches(self, spectrogram):
        """Patch tokens plus positions, frequency-major, without cls: [B, F * T, D]."""
        self.check_spectrogram_shape(spectrogram.shape)
        grid = self.patch_embedding(spectrogram)
        n_time = ops.shape(grid)[2]
        if self.stored_positions:
            shape = (self.num_freq_patches, self.max_time_patches, self.embed_dim)
            positions = ops.reshape(self.position_table[1:], shape)
        else:
            positions = ops.convert_to_tensor(self.positions)
        positions = ops.cast(positions[:, :n_time], grid.dtype)
        return ops.reshape(grid + positions[None], (ops.shape(grid)[0], -1, self.embed_dim))

    def prepend_cls(self, tokens):
        """[B, L, D] -> [B, 1 + L, D] with the cls token (plus its stored position, if any;
        the sin-cos grid's is all zeros)."""
        cls = self.cls_token
        if self.stored_positions:
            cls = cls + self.position_table[None, :1]
        cls = ops.cast(cls, tokens.dtype)
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

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kw):
        """`keras.Model.export`, with the input signature `[batch, num_mels, frames]` (float32,
        batch and frames free) unless one is given: no call is needed before exporting.

        Formats: "tf_saved_model", "onnx", "openvino", "litert", under
        `KERAS_BACKEND=tensorflow` (each run in its runtime by the tests). The weights do not
        depend on the backend: load a preset or `.keras` of any backend under TensorFlow to
        export it.

        Raises:
            ValueError: another backend (Keras's JAX and PyTorch exporters cannot trace the
                free number of frames: they fail on the position slice or trace 1-frame
                inputs).
        """
        return export_spectrogram_model(
            self, self, filepath, format, verbose, input_signature, super().export, **kw
        )

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
            "stored_positions": self.stored_positions,
        }


def export_spectrogram_model(
    model, backbone, filepath, format, verbose, input_signature, keras_export, **kwargs
):
    """`keras_export` (a bound `keras.Model.export`) of a model whose input is `backbone`'s
    log-mel `[batch, num_mels, frames]`: that signature by default, TensorFlow backend only
    (see `MatpacBackbone.export`)."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"export(format={format!r}) of a {type(model).__name__} runs under "
            f"KERAS_BACKEND=tensorflow (this process runs {keras.backend.backend()!r}); the "
            "weights are backend-independent: load the preset or .keras file under "
            "TensorFlow and export it there"
        )
    if input_signature is None:
        input_signature = [keras.InputSpec(shape=backbone.input_shape_spec, dtype="float32")]
    # TensorFlow's tracking of the model traces a default signature from the shapes `build`
    # was called with: after `build(None)` that is an input of unknown rank, which no call
    # can take.
    model._build_shapes_dict = {"spectrogram": backbone.input_shape_spec}
    return keras_export(
        filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
    )


def backbone_fingerprint(backbone: MatpacBackbone, **extra) -> str:
    """A hex digest of `backbone`'s config (its name left out), its weights' content and
    `extra` (JSON-serialisable settings): equal digests compute the same function. The cache
    key of exported encoders (`encoder_runtime`) and the model of a sharded embedding job
    (`file_embeddings.job_options`)."""
    digest = hashlib.blake2b(digest_size=16)
    config = {**backbone.get_config(), **extra}
    config.pop("name", None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in backbone.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()
