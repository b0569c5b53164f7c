"""`MatpacClassifier`: a MATPAC backbone with a linear head, trainable end to end.

Normalised log-mel [B, mels, frames] -> (SpecAugment-style masking while training) ->
backbone -> per-time-step features with the frequency tokens concatenated (index f * D + d, as
the clip embeddings) -> mean over time -> dropout -> Dense -> logits [B, classes].
Inputs take at most the backbone's `max_frames`; `clip_logits` scores clips of any length,
either like the clip embeddings or like the training crops.
"""

import keras
import numpy as np
from keras import ops

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor, bucketed_embeddings, exact_logmels


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacClassifier(keras.Model):
    """Backbone + time-mean pooling + linear head.

    Args:
        backbone: MatpacBackbone. The encoder (pre-trained or not); trained with the head.
        num_classes: int. Output logits.
        dropout: float. Dropout on the pooled features. Defaults to 0.
        erase_factor: float in [0, 1]. Probability of masking one random rectangle of the
            log-mel (time x mel span, each a sqrt(scale) fraction) with 0 (the normalised mean)
            while training, via `keras.layers.RandomErasing`. 0 (default) disables it.
        erase_scale: (min, max) area fraction of the masked rectangle. Defaults to (0.02, 0.25).
        num_erasures: int. Independent masks applied in turn. Defaults to 2.

    Example:
    >>> model = MatpacClassifier(MatpacBackbone.from_variant("tiny"), num_classes=10)
    >>> logits = model(keras.ops.zeros((2, 80, 96)))  # [2, 10]
    """

    def __init__(
        self,
        backbone: MatpacBackbone,
        num_classes: int,
        dropout: float = 0.0,
        erase_factor: float = 0.0,
        erase_scale: tuple[float, float] = (0.02, 0.25),
        num_erasures: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {num_classes}")
        if not 0 <= erase_factor <= 1:
            raise ValueError(f"erase_factor must be in [0, 1]; got {erase_factor}")
        # === Layers ===
        self.backbone = backbone
        self.erasers = [
            keras.layers.RandomErasing(
                factor=(erase_factor, erase_factor),
                scale=tuple(erase_scale),
                fill_value=0.0,
                value_range=(-1.0, 1.0),
                data_format="channels_last",
                dtype=self.dtype_policy,
                name=f"erasing_{i}",
            )
            for i in range(num_erasures if erase_factor > 0 else 0)
        ]
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")
        self.head = keras.layers.Dense(num_classes, dtype=self.dtype_policy, name="head")
        # === Config ===
        self.num_classes = num_classes
        self.dropout_rate = dropout
        self.erase_factor = erase_factor
        self.erase_scale = tuple(erase_scale)
        self.num_erasures = num_erasures

    def build(self, input_shape=None):
        if not self.backbone.built:
            self.backbone.build(None)
        dim = self.backbone.num_freq_patches * self.backbone.embed_dim
        self.head.build((None, dim))
        self.built = True

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        self.build(None)

    def pooled_features(self, spectrogram, training=None):
        """[B, F * D]: time mean of the frequency-concatenated final-layer tokens."""
        if self.erasers and training:
            x = spectrogram[..., None]
            for eraser in self.erasers:
                x = eraser(x, training=training)
            spectrogram = x[..., 0]
        tokens = self.backbone(spectrogram, training=training)[:, 1:]
        bb = self.backbone
        batch = ops.shape(tokens)[0]
        grid = ops.reshape(tokens, (batch, bb.num_freq_patches, -1, bb.embed_dim))
        steps = ops.reshape(ops.transpose(grid, (0, 2, 1, 3)), (batch, -1, self.head_dim))
        return ops.mean(steps, axis=1)

    @property
    def head_dim(self) -> int:
        return self.backbone.num_freq_patches * self.backbone.embed_dim

    def call(self, spectrogram, training=None):
        features = self.pooled_features(spectrogram, training=training)
        return self.head(self.dropout(features, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def clip_logits(
        self, waveforms: list[np.ndarray], crop_frames: int | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Logits [N, classes] of clips of any length (16 kHz), dropout and masking off.

        `crop_frames` None: the head on the precise clip embedding of the backbone (log-mel
        padded to a multiple of the patch size, chunks of `max_frames`). Else as in training:
        the log-mel padded with zeros to a multiple of `crop_frames` and cut into crops of that
        length; the mean of their pooled features goes through the head (the crops have equal
        lengths, so this is the mean over all time steps). A clip shorter than `crop_frames`
        is then seen exactly as its validation batch during fine-tuning.
        """
        extractor = EmbeddingExtractor(self.backbone, batch_size=batch_size)
        if crop_frames is None:
            return ops.convert_to_numpy(self.head(bucketed_embeddings(extractor, waveforms)))
        pooled = np.zeros((len(waveforms), self.head_dim), "float32")
        crops, owners = [], []
        for i, logmel in enumerate(exact_logmels(extractor.logmel, waveforms)):
            logmel = np.pad(logmel, ((0, 0), (0, -logmel.shape[1] % crop_frames)))
            for start in range(0, logmel.shape[1], crop_frames):
                crops.append(logmel[:, start : start + crop_frames])
                owners.append(i)
        owners = np.asarray(owners)
        for start in range(0, len(crops), batch_size):
            batch = np.stack(crops[start : start + batch_size])
            features = ops.convert_to_numpy(self.pooled_features(batch, training=False))
            np.add.at(pooled, owners[start : start + batch_size], features)
        pooled /= np.bincount(owners, minlength=len(waveforms))[:, None]
        return ops.convert_to_numpy(self.head(pooled))

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout_rate,
            "erase_factor": self.erase_factor,
            "erase_scale": self.erase_scale,
            "num_erasures": self.num_erasures,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
