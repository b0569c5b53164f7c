"""Clip embeddings from a MATPAC backbone, "precise" and "fast" (SPEC section 6).

A clip's normalised log-mel is padded (with zeros, i.e. after normalisation) and cut into chunks
of the backbone's `max_frames`; each chunk's tokens become per-time-step features where the
frequency tokens of one step are concatenated (feature index f * D + d); the clip embedding is the
mean over all time steps, padded ones included, as in the official code.

- "precise" pads to a multiple of the patch size: the last chunk may be shorter.
- "fast" pads to a multiple of `max_frames`: every chunk is full and all go in one batch.

One chunk code (`padded_frames`, `chunk_lengths`, `_encode_group`, `_TimeMean`; in a TensorFlow
graph `graph_embeddings`), several ways in:

- `embed_waveforms` / `embed_logmel` / `embed_clips`: whole clips in memory; the chunks at one
  position of all clips are encoded together, in batches of `batch_size`.
- `bucketed_embeddings`: clips of many lengths (e.g. a dataset's), in few distinct shapes: the
  log-mels of `exact_logmels`, padded as precise mode pads, grouped by padded length.
- `embed_stream`: one clip as an iterable of waveform blocks (`audio.stream_audio`), in bounded
  memory whatever its length. Samples are kept only until their frames are computed: the
  log-mel frames s .. s + n - 1 (no centring, hop 160, n_fft 400) need exactly the samples
  [160 s, 160 (s + n - 1) + 400), so `batch_size` full chunks at a time are computed from the
  samples they need, encoded as one batch, and added to a running time sum (and kept only when
  `frames=True`). Its embeddings equal the in-memory ones within float32 rounding (1e-5).
- `graph_embeddings`: the SavedModel's (`export.py`) in-graph version, for clips whose length is
  known only when the graph runs.

`matpac-embed`, `matpac-export`, HEAR, the evaluation's features and the classifier's
`clip_logits` all embed through `EmbeddingExtractor`; none cuts chunks itself.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.frontend import HOP_LENGTH, N_FFT, LogMelSpectrogram, num_frames

MODES = ("precise", "fast")
FRAME_ORDERS = ("temporal", "official")


def check_chunk_frames(frames, backbone: MatpacBackbone, name: str = "chunk_frames") -> None:
    """Raises ValueError, naming `name`, unless `frames` is an integer multiple of the
    backbone's patch size up to its `max_frames` (a chunk or crop it can encode)."""
    if isinstance(frames, bool) or not isinstance(frames, int | np.integer):
        raise ValueError(f"{name} must be an integer; got {frames!r}")
    if not 0 < frames <= backbone.max_frames or frames % backbone.patch_size:
        raise ValueError(
            f"{name} must be a multiple of {backbone.patch_size} up to the backbone's "
            f"max_frames {backbone.max_frames}; got {frames}"
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


def padded_frames(frames, multiple: int):
    """`frames` rounded up to a multiple of `multiple`: a Python int or an integer tensor."""
    return (frames + multiple - 1) // multiple * multiple


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


@dataclass
class ClipEmbeddings:
    """Embeddings of a batch of equal-length clips (numpy, float32).

    embedding: [B, F*D] mean over time of the last layer.   frames: [B, T, F*D].
    layers: [B, L, F*D] and layer_frames: [B, L, T, F*D] (only with `layers=True`).
    Per-clip results (`embed_clips`, `embed_stream`) have no batch axis. `frames` and
    `layer_frames` are None from `embed_stream` unless asked for.
    """

    embedding: np.ndarray
    frames: np.ndarray | None
    layers: np.ndarray | None = None
    layer_frames: np.ndarray | None = None


class _TimeMean:
    """Encoded chunks of B clips, in time order -> their ClipEmbeddings.

    Keeps a float64 sum over time steps (and the chunks themselves only if `keep_frames`).
    """

    def __init__(self, layers: bool, keep_frames: bool, official_order: bool):
        self.layers, self.keep_frames, self.official_order = layers, keep_frames, official_order
        self.total, self.steps, self.chunks = None, 0, []

    def add(self, encoded: np.ndarray) -> None:
        """`encoded`: [B, k, L, t, F*D], k consecutive chunks of t steps each."""
        total = encoded.sum(axis=(1, 3), dtype=np.float64)
        self.total = total if self.total is None else self.total + total
        self.steps += encoded.shape[1] * encoded.shape[3]
        if self.keep_frames:
            self.chunks.extend(encoded[:, i] for i in range(encoded.shape[1]))

    def result(self) -> ClipEmbeddings:
        pooled = (self.total / self.steps).astype(np.float32)  # [B, L, F*D]
        frames = None
        if self.keep_frames:
            if self.official_order:  # [B, L, t, chunks, FD]: time-major interleave
                frames = np.stack(self.chunks, axis=3)
                frames = frames.reshape(*frames.shape[:2], -1, frames.shape[-1])
            else:
                frames = np.concatenate(self.chunks, axis=2)
        last_frames = None if frames is None else frames[:, -1]
        if not self.layers:
            return ClipEmbeddings(pooled[:, -1], last_frames)
        return ClipEmbeddings(pooled[:, -1], last_frames, pooled, frames)


class EmbeddingExtractor:
    """Turns waveforms or log-mels into clip embeddings with a backbone.

    Args:
        backbone: MatpacBackbone. The (student) encoder.
        mode: "precise" (default, the paper's) or "fast".
        layers: bool. Also return every layer's features. Defaults to False.
        frame_order: "temporal" (default) or "official": the official "fast" code returns
            frames interleaved across chunks (frame j = chunk j mod n, step j div n).
        batch_size: int. Chunks encoded at once. Defaults to 16.
        chunk_frames: int or None. Frames per chunk: a multiple of the patch size up to the
            backbone's `max_frames` (the default). Fine-tuning's crops are the "fast" scheme
            with chunks of its `crop_frames`.
    """

    def __init__(
        self,
        backbone: MatpacBackbone,
        mode: str = "precise",
        layers: bool = False,
        frame_order: str = "temporal",
        batch_size: int = 16,
        chunk_frames: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if frame_order not in FRAME_ORDERS:
            raise ValueError(f"frame_order must be one of {FRAME_ORDERS}; got {frame_order!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        chunk_frames = backbone.max_frames if chunk_frames is None else chunk_frames
        check_chunk_frames(chunk_frames, backbone)
        self.chunk_frames = chunk_frames
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

    def chunk_lengths(self, frames: int) -> list[int]:
        """Frames of each chunk of a clip of `frames` log-mel frames, once padded for the mode
        (all `max_frames` but the last, which in "precise" mode holds the rest)."""
        chunk, padded = self.chunk_frames, self.padded_frames(frames)
        return [min(chunk, padded - start) for start in range(0, padded, chunk)]

    def padded_frames(self, frames):
        """Frames of a clip of `frames` log-mel frames once zero-padded for the mode: to a
        multiple of the patch size ("precise") or of the chunk ("fast"). `frames` may be a
        Python int or an integer tensor (the SavedModel's graph)."""
        multiple = self.chunk_frames if self.mode == "fast" else self.backbone.patch_size
        return padded_frames(frames, multiple)

    def graph_embeddings(self, logmel):
        """TensorFlow only (the SavedModel's graph, `export.py`): clip embeddings per layer
        [B, L, F*D] (L = 1 unless `layers`) of log-mels [B, mels, frames] of any (run-time)
        length, as `embed_logmel` computes them: zero-padded for the mode, every chunk but the
        last full and encoded one after the other with `tf.map_fn` (memory bounded by one
        chunk of the batch), the last one (shorter in "precise") on its own, the mean over all
        time steps, padded ones included."""
        import tensorflow as tf

        bb, chunk = self.backbone, self.chunk_frames
        width = bb.num_freq_patches * bb.embed_dim
        n_layers = bb.depth if self.layers else 1
        batch, frames = tf.shape(logmel)[0], tf.shape(logmel)[2]
        padded = self.padded_frames(frames)
        logmel = tf.pad(logmel, [[0, 0], [0, 0], [0, padded - frames]])
        n_full = (padded - 1) // chunk  # every chunk but the last, which holds 1 to `chunk`
        split = n_full * chunk

        def encode(spectrogram):  # [B, mels, t * patch] -> [B, L, t, F*D], float32
            return tf.cast(self.features(spectrogram), "float32")

        def full_chunks():
            chunks = tf.reshape(logmel[:, :, :split], [batch, bb.num_mels, n_full, chunk])
            encoded = tf.map_fn(
                encode,
                tf.transpose(chunks, [2, 0, 1, 3]),
                fn_output_signature=tf.TensorSpec([None, n_layers, chunk // bb.patch_size, width]),
            )  # [n_full, B, L, t, F*D]
            encoded = tf.transpose(encoded, [1, 2, 0, 3, 4])
            return tf.reshape(encoded, [batch, n_layers, n_full * (chunk // bb.patch_size), width])

        def no_full_chunks():
            return tf.zeros([batch, n_layers, 0, width])

        leading = tf.cond(n_full > 0, full_chunks, no_full_chunks)
        steps = tf.concat([leading, encode(logmel[:, :, split:])], axis=2)
        return tf.reduce_mean(steps, axis=2)

    def embed_logmel(self, logmel: np.ndarray) -> ClipEmbeddings:
        """Embeddings of equal-length normalised log-mels [B, mels, frames]."""
        logmel = np.asarray(logmel, dtype="float32")
        if logmel.ndim != 3 or logmel.shape[1] != self.backbone.num_mels:
            raise ValueError(
                f"log-mel must be [batch, {self.backbone.num_mels}, frames]; got {logmel.shape}"
            )
        total = _TimeMean(self.layers, True, self._official_order)
        start = 0
        for length in self.chunk_lengths(logmel.shape[2]):
            chunk = _pad_frames(logmel[:, :, start : start + length], length)
            total.add(self._encode_group(chunk[:, None]))
            start += length
        return total.result()

    def embed_stream(self, blocks: Iterable[np.ndarray], frames: bool = False) -> ClipEmbeddings:
        """Embeddings of one 16 kHz clip given as consecutive 1-D blocks of any sizes, in
        memory bounded by `batch_size` chunks (plus the frames, when `frames=True`).

        Returns per-clip arrays (no batch axis), as `embed_clips`; `frames` and
        `layer_frames` are None unless `frames`. Raises ValueError for a clip shorter than one
        STFT frame (400 samples); an exception from `blocks` propagates.
        """
        chunk, mels = self.chunk_frames, self.backbone.num_mels
        group = chunk * self.batch_size  # frames of one batch of full chunks
        group_samples = HOP_LENGTH * (group - 1) + N_FFT
        total = _TimeMean(self.layers, frames, self._official_order)
        pending, held, done = [], 0, 0  # blocks not yet framed, their samples, frames encoded
        for block in blocks:
            block = np.asarray(block, dtype="float32")
            if block.ndim != 1:
                raise ValueError(f"audio blocks must be 1-D; got shape {block.shape}")
            pending.append(block)
            held += block.shape[0]
            if held < group_samples:
                continue
            samples = np.concatenate(pending)
            used = 0
            while samples.shape[0] - used >= group_samples:
                logmel = self._frontend(samples[used : used + group_samples])  # [mels, group]
                chunks = logmel.reshape(mels, self.batch_size, chunk).transpose(1, 0, 2)
                total.add(self._encode_group(chunks[None]))
                used += HOP_LENGTH * group
                done += group
            pending, held = [samples[used:]], samples.shape[0] - used
        rest = np.concatenate(pending) if pending else np.zeros(0, "float32")
        left = num_frames(rest.shape[0])
        if done + left == 0:
            raise ValueError(f"a clip of {rest.shape[0]} samples is shorter than one frame")
        if left:
            logmel = self._frontend(rest)  # [mels, left]
            # `done` is a multiple of the chunk, so the rest pads and chunks as a clip would.
            lengths = self.chunk_lengths(left)
            full = sum(1 for n in lengths if n == chunk)
            logmel = _pad_frames(logmel[None], sum(lengths))[0]
            if full:
                chunks = logmel[:, : full * chunk].reshape(mels, full, chunk).transpose(1, 0, 2)
                total.add(self._encode_group(chunks[None]))
            if full < len(lengths):
                total.add(self._encode_group(logmel[None, None, :, full * chunk :]))
        out = total.result()
        return ClipEmbeddings(*(None if a is None else a[0] for a in vars(out).values()))

    @property
    def _official_order(self) -> bool:
        return self.mode == "fast" and self.frame_order == "official"

    def _frontend(self, samples: np.ndarray) -> np.ndarray:
        """Normalised log-mel [mels, frames] of one 1-D waveform (at least 400 samples)."""
        return ops.convert_to_numpy(self.frontend(samples[None]))[0]

    def _encode_group(self, chunks: np.ndarray) -> np.ndarray:
        """[B, k, mels, t] chunks (k of each of B clips) -> features [B, k, L, t / patch, F*D],
        encoded `batch_size` chunks at a time."""
        batch, k = chunks.shape[:2]
        flat = chunks.reshape(batch * k, *chunks.shape[2:])
        outputs = [
            keras.ops.convert_to_numpy(
                self.features.predict_on_batch(flat[i : i + self.batch_size])
            )
            for i in range(0, len(flat), self.batch_size)
        ]
        encoded = np.concatenate(outputs, axis=0)
        return encoded.reshape(batch, k, *encoded.shape[1:])

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


def exact_logmels(
    frontend: Callable[[np.ndarray], np.ndarray],
    waveforms: list[np.ndarray],
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Each clip's normalised log-mel [mels, num_frames(len)], with few distinct shapes.

    Computing clips of many lengths one by one costs a retrace (TensorFlow) or an op-by-op
    recompilation (JAX: over a second per clip) for every new length. Here clips are
    zero-padded to a multiple of 16 hops, computed in batches, and each log-mel is cut back to
    the clip's own frames: a frame only reads samples inside the clip, so they are unchanged.
    `frontend` maps waveforms [B, samples] to log-mels [B, mels, frames] (numpy).
    """
    bucket = 16 * HOP_LENGTH
    logmels: list = [None] * len(waveforms)
    by_samples: dict[int, list[int]] = {}
    for i, wave in enumerate(waveforms):
        if len(wave) < N_FFT:
            raise ValueError(f"clip {i} has {len(wave)} samples, fewer than one frame")
        by_samples.setdefault(padded_frames(len(wave), bucket), []).append(i)
    for length, indices in by_samples.items():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            batch = np.stack([np.pad(waveforms[i], (0, length - len(waveforms[i]))) for i in rows])
            for i, logmel in zip(rows, frontend(batch.astype("float32")), strict=True):
                logmels[i] = logmel[:, : num_frames(len(waveforms[i]))]
    return logmels


def bucketed_embeddings(
    extractor: "EmbeddingExtractor", waveforms: list[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Clip embeddings [N, F*D] equal to `extractor.embed_clips`, with few distinct shapes.

    `embed_clips` batches clips of identical length only (FSDD's lengths nearly all differ).
    Here the log-mels come from `exact_logmels`, each is padded with zeros as the extractor's
    mode pads, and clips of equal padded length are encoded together.
    """
    logmels = [
        _pad_frames(m[None], extractor.padded_frames(m.shape[1]))[0]
        for m in exact_logmels(extractor.logmel, waveforms, batch_size)
    ]
    dim = extractor.backbone.num_freq_patches * extractor.backbone.embed_dim
    out = np.zeros((len(waveforms), dim), "float32")
    by_frames: dict[int, list[int]] = {}
    for i, logmel in enumerate(logmels):
        by_frames.setdefault(logmel.shape[1], []).append(i)
    for indices in by_frames.values():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            out[rows] = extractor.embed_logmel(np.stack([logmels[i] for i in rows])).embedding
    return out


def _pad_frames(logmel: np.ndarray, length: int) -> np.ndarray:
    """[B, mels, t] zero-padded (after normalisation) along time to `length` frames."""
    return np.pad(logmel, ((0, 0), (0, 0), (0, length - logmel.shape[2])))
