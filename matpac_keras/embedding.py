"""Clip embeddings from a MATPAC backbone, "precise" and "fast" (SPEC section 6), of any
temporal support.

A clip's normalised log-mel is padded (with zeros, i.e. after normalisation) and cut into
windows ("chunks") of `chunk_frames` frames, the backbone's `max_frames` by default, one every
`hop_frames` (by default the window itself: consecutive chunks). Each window is encoded on its
own (a short one takes the first columns of the position grid, SPEC section 2); its tokens
become per-time-step features where the frequency tokens of one step are concatenated (feature
index f * D + d); the clip embedding aggregates the windows: `mean` (default) is the mean over
all time steps of all windows, padded ones included, as in the official code (each window
weighted by its steps: with the default hop, the mean over the clip's time steps), `max` the
element-wise maximum of the windows' own step means, `mean+max` both, concatenated (2 F D).

- "precise" pads to a multiple of the patch size: the last window holds the rest (it may be
  shorter, then zero-padded to a multiple of the patch size).
- "fast" pads so that the last window is full too: every window is full and all go in one batch.

Windows are chosen in log-mel frames: window k starts at k * hop_frames, and the last one is the
first that reaches the end of the (patch-padded) clip. `temporal_support` and `hop` give them in
seconds (100 frames a second), each rounded to the nearest whole number of patch columns (16
frames, 0.16 s; halves up): the encoder sees whole columns only, so a window of 50 frames would
hold 14 frames of padding in every window. 0.5 s is thus 48 frames (0.48 s), 1 s 96 frames, 2 s
208 frames; both must lie between one column and `max_frames` (the hop: up to the window).

One window code (`windows`, `padded_frames`, `_encode_group`, `_WindowPool`; in a TensorFlow
graph `graph_embeddings`), several ways in:

- `embed_waveforms` / `embed_logmel` / `embed_clips`: whole clips in memory; the windows of all
  clips of a batch are encoded together, in batches of `batch_size` windows.
- `bucketed_embeddings`: clips of many lengths (e.g. a dataset's), in few distinct shapes: the
  log-mels of `exact_logmels`, padded as precise mode pads, grouped by padded length.
- `embed_stream`: one clip as an iterable of waveform blocks (`audio.stream_audio`), in bounded
  memory whatever its length. Samples are kept only until their frames are computed: the
  log-mel frames s .. s + n - 1 (no centring, hop 160, n_fft 400) need exactly the samples
  [160 s, 160 (s + n - 1) + 400), so `batch_size` full windows at a time are computed from the
  samples they need (once audio beyond them has arrived: the last window is not known before),
  encoded as one batch, and pooled into running sums (the windows kept only when
  `frames=True`). Its embeddings equal the in-memory ones within float32 rounding (1e-5).
- `graph_embeddings`: the SavedModel's (`export.py`) in-graph version, for clips whose length is
  known only when the graph runs.

Per-time-step frames (`ClipEmbeddings.frames`) exist for non-overlapping windows only (hop =
window); with overlapping ones they are None.

`matpac-embed`, `matpac-export`, HEAR, the evaluation's features and the classifier's
`clip_logits` all embed through `EmbeddingExtractor`; none cuts windows itself. Its window code
is written without Keras in `numpy_embedding.py` (`NumpyEmbeddingExtractor`, which embeds with
an exported encoder and a NumPy front end, importing no Keras); this module adds Keras's front
end, the backbone as the default encoder (`TokenFeatures`) and `graph_embeddings`.
"""

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.frontend import LogMelSpectrogram

# The window arithmetic, pooling and batching, written without Keras (`numpy_embedding.py`);
# imported from here by most callers.
from matpac_keras.numpy_embedding import (  # noqa: F401
    AGGREGATES,
    FRAME_ORDERS,
    FRAMES_PER_SECOND,
    MODES,
    ClipEmbeddings,
    EncoderSpec,
    NumpyEmbeddingExtractor,
    aggregate_windows,
    bucketed_embeddings,
    check_chunk_frames,
    exact_logmels,
    padded_frames,
    seconds_to_frames,
    window_frames,
)


def time_step_features(tokens, num_freq_patches: int):
    """Patch tokens [..., F * T, D] (frequency-major, no cls token) -> per-time-step features
    [..., T, F * D], the F tokens of a step concatenated (feature index f * D + d)."""
    shape = ops.shape(tokens)
    lead, dim = tuple(shape[:-2]), shape[-1]
    grid = ops.reshape(tokens, (*lead, num_freq_patches, -1, dim))
    axes = list(range(len(lead)))
    grid = ops.transpose(grid, (*axes, len(lead) + 1, len(lead), len(lead) + 2))
    return ops.reshape(grid, (*lead, -1, num_freq_patches * dim))


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
        return time_step_features(tokens, self.backbone.num_freq_patches)

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


class EmbeddingExtractor(NumpyEmbeddingExtractor):
    """Turns waveforms or log-mels into clip embeddings with a backbone: Keras's front end
    (`LogMelSpectrogram`) and, unless `encoder` is given, the backbone (`TokenFeatures`).

    Args:
        backbone: MatpacBackbone. The (student) encoder.
        encoder: callable or None. Encodes windows instead of the backbone in Keras (e.g. the
            ONNX Runtime or OpenVINO encoders of `encoder_runtime`). Defaults to None (Keras).
        The others: as `NumpyEmbeddingExtractor` (mode, layers, frame_order, batch_size,
            chunk_frames, temporal_support, hop, aggregate).

    Example:
    >>> extractor = EmbeddingExtractor(backbone, temporal_support=2.0, hop=1.0)
    >>> extractor.chunk_frames, extractor.hop_frames  # 2.08 s windows every 0.96 s
    (208, 96)
    """

    def __init__(
        self,
        backbone: MatpacBackbone,
        mode: str = "precise",
        layers: bool = False,
        frame_order: str = "temporal",
        batch_size: int = 16,
        chunk_frames: int | None = None,
        temporal_support: float | None = None,
        hop: float | None = None,
        aggregate: str = "mean",
        encoder: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        super().__init__(
            backbone,
            mode,
            layers,
            frame_order,
            batch_size,
            chunk_frames,
            temporal_support,
            hop,
            aggregate,
            encoder,
        )
        self.frontend = LogMelSpectrogram()
        self.features = TokenFeatures(backbone, all_layers=layers)
        self._graph = None  # TensorFlow: `_free_shape_graph`, built on first use

    def _logmel_batch(self, waveforms: np.ndarray) -> np.ndarray:
        return ops.convert_to_numpy(self.frontend(waveforms))

    def _encode_batch(self, windows: np.ndarray) -> np.ndarray:
        if self.encoder is not None:
            return super()._encode_batch(windows)
        if keras.backend.backend() != "tensorflow":
            return ops.convert_to_numpy(self.features.predict_on_batch(windows))
        if self._graph is None:
            self._graph = self._free_shape_graph()
        return self._graph(np.asarray(windows, dtype="float32")).numpy()

    def _free_shape_graph(self):
        """TensorFlow: `features` as one graph of free batch and frames, used for every window
        shape. (`predict_on_batch` retraces: the first shape a process sees gets a graph of
        its own, later ones a shape-generic graph, whose float32 rounding differs by ~1e-7; a
        result would then depend on what the process encoded before, and a resumed sharded
        job would differ from an uninterrupted one.) JAX compiles each shape, and PyTorch runs
        each call, the same way whatever came before."""
        import tensorflow as tf

        spec = tf.TensorSpec([None, self.backbone.num_mels, None], "float32")
        return tf.function(lambda windows: self.features(windows, training=False), [spec])

    def graph_embeddings(self, logmel):
        """TensorFlow only (the SavedModel's graph, `export.py`): clip embeddings per layer
        [B, L, E] (L = 1 unless `layers`) of log-mels [B, mels, frames] of any (run-time)
        length, as `embed_logmel` computes them: zero-padded for the mode, every window but the
        last (all full) encoded one after the other with `tf.map_fn` (memory bounded by one
        window of the batch) and summed over its steps, the last one (shorter in "precise") on
        its own, then aggregated (the mean over all time steps, padded ones included; the
        maximum of the window means)."""
        import tensorflow as tf

        bb, window, hop = self.backbone, self.chunk_frames, self.hop_frames
        width = bb.num_freq_patches * bb.embed_dim
        n_layers = bb.depth if self.layers else 1
        batch, frames = tf.shape(logmel)[0], tf.shape(logmel)[2]
        padded = self.padded_frames(frames)
        logmel = tf.pad(logmel, [[0, 0], [0, 0], [0, padded - frames]])
        leading = self.leading_windows(frames)
        steps = window // bb.patch_size

        def encode(spectrogram):  # [B, mels, t * patch] -> [B, L, t, F*D], float32
            return tf.cast(self.features(spectrogram), "float32")

        def window_sum(start):  # one full window -> its sum over steps [B, L, F*D]
            spectrogram = tf.ensure_shape(
                logmel[:, :, start : start + window], [None, bb.num_mels, window]
            )
            return tf.reduce_sum(encode(spectrogram), axis=2)

        def leading_sums():
            return tf.map_fn(
                window_sum,
                tf.range(leading) * hop,
                fn_output_signature=tf.TensorSpec([None, n_layers, width]),
            )  # [leading, B, L, F*D]

        def no_leading_windows():
            return tf.zeros([0, batch, n_layers, width])

        sums = tf.cond(leading > 0, leading_sums, no_leading_windows)
        last = encode(logmel[:, :, leading * hop :])  # [B, L, t, F*D]
        total = tf.reduce_sum(sums, axis=0) + tf.reduce_sum(last, axis=2)
        count = tf.cast(leading * steps + tf.shape(last)[2], "float32")
        maximum = tf.reduce_mean(last, axis=2)
        if self.aggregate != "mean":
            maximum = tf.maximum(maximum, tf.reduce_max(sums / steps, axis=0))
        return aggregate_windows(total / count, maximum, self.aggregate, tf.concat)
