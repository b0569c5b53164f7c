"""Clip embeddings from a MATPAC backbone, "precise" and "fast" (SPEC section 6).

A clip's normalised log-mel is padded (with zeros, i.e. after normalisation) and cut into chunks
of the backbone's `max_frames`; each chunk's tokens become per-time-step features where the
frequency tokens of one step are concatenated (feature index f * D + d); the clip embedding is the
mean over all time steps, padded ones included, as in the official code.

- "precise" pads to a multiple of the patch size: the last chunk may be shorter.
- "fast" pads to a multiple of `max_frames`: every chunk is full and all go in one batch.

All full-length chunks of all clips are encoded together, in batches of `batch_size`.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.frontend import LogMelSpectrogram

MODES = ("precise", "fast")
FRAME_ORDERS = ("temporal", "official")


@keras.saving.register_keras_serializable(package="matpac_keras")
class TokenFeatures(keras.Model):
    """Wraps a backbone: log-mel chunk -> per-time-step features [B, layers, T, F * D].

    `layers` holds every block's output (the last after the final norm) when `all_layers`,
    else only the final output. A Model, so `predict_on_batch` compiles it on every backend.
    """

    def __init__(self, backbone: MatpacBackbone, all_layers: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.all_layers = all_layers

    def call(self, spectrogram):
        final, per_layer = self.backbone(spectrogram, return_layers=True)
        tokens = ops.stack(per_layer if self.all_layers else [final], axis=1)[:, :, 1:]
        bb = self.backbone
        shape = ops.shape(tokens)
        grid = ops.reshape(tokens, (shape[0], shape[1], bb.num_freq_patches, -1, bb.embed_dim))
        grid = ops.transpose(grid, (0, 1, 3, 2, 4))
        return ops.reshape(grid, (shape[0], shape[1], -1, bb.num_freq_patches * bb.embed_dim))

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "all_layers": self.all_layers,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@dataclass
class ClipEmbeddings:
    """Embeddings of a batch of equal-length clips (numpy, float32).

    embedding: [B, F*D] mean over time of the last layer.   frames: [B, T, F*D].
    layers: [B, L, F*D] and layer_frames: [B, L, T, F*D] (only with `layers=True`).
    """

    embedding: np.ndarray
    frames: np.ndarray
    layers: np.ndarray | None = None
    layer_frames: np.ndarray | None = None


class EmbeddingExtractor:
    """Turns waveforms or log-mels into clip embeddings with a backbone.

    Args:
        backbone: MatpacBackbone. The (student) encoder.
        mode: "precise" (default, the paper's) or "fast".
        layers: bool. Also return every layer's features. Defaults to False.
        frame_order: "temporal" (default) or "official": the official "fast" code returns
            frames interleaved across chunks (frame j = chunk j mod n, step j div n).
        batch_size: int. Chunks encoded at once. Defaults to 16.
    """

    def __init__(
        self,
        backbone: MatpacBackbone,
        mode: str = "precise",
        layers: bool = False,
        frame_order: str = "temporal",
        batch_size: int = 16,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if frame_order not in FRAME_ORDERS:
            raise ValueError(f"frame_order must be one of {FRAME_ORDERS}; got {frame_order!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        self.backbone = backbone
        self.mode = mode
        self.layers = layers
        self.frame_order = frame_order
        self.batch_size = batch_size
        self.frontend = LogMelSpectrogram()
        self.features = TokenFeatures(backbone, all_layers=layers)

    def logmel(self, waveforms: np.ndarray) -> np.ndarray:
        """Normalised log-mel [B, mels, frames] of 16 kHz waveforms [B, samples]."""
        waveforms = np.asarray(waveforms, dtype="float32")
        if waveforms.ndim != 2:
            raise ValueError(f"waveforms must be [batch, samples]; got shape {waveforms.shape}")
        if waveforms.shape[1] < 400:
            raise ValueError(f"clips of {waveforms.shape[1]} samples are shorter than one frame")
        return ops.convert_to_numpy(self.frontend(waveforms))

    def embed_waveforms(self, waveforms: np.ndarray) -> ClipEmbeddings:
        """Embeddings of equal-length 16 kHz waveforms [B, samples]."""
        return self.embed_logmel(self.logmel(waveforms))

    def embed_logmel(self, logmel: np.ndarray) -> ClipEmbeddings:
        """Embeddings of equal-length normalised log-mels [B, mels, frames]."""
        logmel = np.asarray(logmel, dtype="float32")
        if logmel.ndim != 3 or logmel.shape[1] != self.backbone.num_mels:
            raise ValueError(
                f"log-mel must be [batch, {self.backbone.num_mels}, frames]; got {logmel.shape}"
            )
        chunk = self.backbone.max_frames
        multiple = chunk if self.mode == "fast" else self.backbone.patch_size
        padded = math.ceil(logmel.shape[2] / multiple) * multiple
        logmel = np.pad(logmel, ((0, 0), (0, 0), (0, padded - logmel.shape[2])))
        starts = range(0, padded, chunk)
        per_chunk = [self._encode(logmel[:, :, s : s + chunk]) for s in starts]  # [B, L, t, FD]
        if self.mode == "fast" and self.frame_order == "official":
            frames = np.stack(per_chunk, axis=3)  # [B, L, t, chunks, FD]: time-major interleave
            frames = frames.reshape(*frames.shape[:2], -1, frames.shape[-1])
        else:
            frames = np.concatenate(per_chunk, axis=2)
        pooled = frames.mean(axis=2)
        if not self.layers:
            return ClipEmbeddings(pooled[:, -1], frames[:, -1])
        return ClipEmbeddings(pooled[:, -1], frames[:, -1], pooled, frames)

    def _encode(self, chunks: np.ndarray) -> np.ndarray:
        outputs = [
            keras.ops.convert_to_numpy(
                self.features.predict_on_batch(chunks[i : i + self.batch_size])
            )
            for i in range(0, len(chunks), self.batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def embed_clips(self, waveforms: list[np.ndarray], progress=None) -> list[ClipEmbeddings]:
        """Embeddings of clips of any lengths (1-D 16 kHz arrays), one ClipEmbeddings each.

        Clips of equal length are encoded together, `batch_size` at a time; `progress`, if
        given, is called with the number of clips finished after each batch.
        """
        by_length: dict[int, list[int]] = {}
        for index, waveform in enumerate(waveforms):
            by_length.setdefault(len(waveform), []).append(index)
        results: list = [None] * len(waveforms)
        for indices in by_length.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                out = self.embed_waveforms(np.stack([waveforms[i] for i in batch]))
                for row, index in enumerate(batch):
                    results[index] = ClipEmbeddings(
                        *(None if a is None else a[row] for a in vars(out).values())
                    )
                if progress is not None:
                    progress(len(batch))
        return results
