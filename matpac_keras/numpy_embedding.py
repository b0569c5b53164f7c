"""Clip embeddings without Keras: the window arithmetic, pooling and batching of
`EmbeddingExtractor` (`embedding.py`, whose docstring describes them), here with a NumPy front
end (`logmel.logmel`) and an encoder given as a function.

`NumpyEmbeddingExtractor(spec, encoder)` embeds with an exported encoder
(`encoder_runtime.OnnxRuntimeEncoder` / `OpenVinoEncoder`, whose `spec` it takes) and imports
neither TensorFlow nor Keras: `matpac-embed --runtime=onnx|openvino` with a cached export runs
through it. `embedding.EmbeddingExtractor` is the same class with Keras's front end and, unless
given an encoder, the backbone itself. The model is described by a `spec`: anything with the
backbone's `num_mels`, `patch_size`, `max_frames`, `num_freq_patches`, `embed_dim` and `depth`
(a `MatpacBackbone`, or an `EncoderSpec`).
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from matpac_keras.logmel import HOP_LENGTH, N_FFT, SAMPLE_RATE, num_frames
from matpac_keras.logmel import logmel as numpy_logmel


@dataclass(frozen=True)
class EncoderSpec:
    """The sizes of a backbone that windowing and pooling need (a `MatpacBackbone` has them
    too): its mel bins, patch size, longest window (`max_frames`), frequency patches F, width
    D and depth."""

    num_mels: int
    patch_size: int
    max_frames: int
    num_freq_patches: int
    embed_dim: int
    depth: int


MODES = ("precise", "fast")
FRAME_ORDERS = ("temporal", "official")
AGGREGATES = ("mean", "max", "mean+max")
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 log-mel frames a second


def check_chunk_frames(frames, backbone, name: str = "chunk_frames") -> None:
    """Raises ValueError, naming `name`, unless `frames` is an integer multiple of the
    backbone's patch size up to its `max_frames` (a chunk or crop it can encode)."""
    if isinstance(frames, bool) or not isinstance(frames, int | np.integer):
        raise ValueError(f"{name} must be an integer; got {frames!r}")
    if not 0 < frames <= backbone.max_frames or frames % backbone.patch_size:
        raise ValueError(
            f"{name} must be a multiple of {backbone.patch_size} up to the backbone's "
            f"max_frames {backbone.max_frames}; got {frames}"
        )


def seconds_to_frames(seconds, patch_size: int, most_frames: int, name: str, most: str) -> int:
    """`seconds` of log-mel (100 frames a second) as frames, rounded to the nearest whole number
    of patch columns (halves up). Raises ValueError, naming `name`, unless `seconds` lies from one
    column to `most_frames` (described as `most` in the message)."""
    low, high = patch_size / FRAMES_PER_SECOND, most_frames / FRAMES_PER_SECOND
    valid = not isinstance(seconds, bool) and isinstance(seconds, int | float | np.number)
    if not valid or not math.isfinite(seconds) or not low - 1e-9 <= seconds <= high + 1e-9:
        raise ValueError(
            f"{name} must be from {low:g} s (one patch column of {patch_size} frames) up to "
            f"{most}, {high:g} s ({most_frames} frames); got {seconds!r}"
        )
    columns = math.floor(seconds * FRAMES_PER_SECOND / patch_size + 0.5)
    return patch_size * min(max(columns, 1), most_frames // patch_size)


def window_frames(backbone, temporal_support=None, hop=None, prefix: str = "") -> tuple[int, int]:
    """(window, hop) in frames of a `temporal_support` and a `hop` in seconds (None: the
    backbone's `max_frames`, and the window), each rounded to whole patch columns
    (`seconds_to_frames`). Errors name the arguments with `prefix` ("--" for flags)."""
    patch = backbone.patch_size
    window = backbone.max_frames
    if temporal_support is not None:
        most = "the model's max_frames"
        window = seconds_to_frames(
            temporal_support, patch, window, f"{prefix}temporal_support", most
        )
    if hop is None:
        return window, window
    return window, seconds_to_frames(hop, patch, window, f"{prefix}hop", "the temporal support")


def padded_frames(frames, multiple: int):
    """`frames` rounded up to a multiple of `multiple`: a Python int or an integer tensor."""
    return (frames + multiple - 1) // multiple * multiple


def aggregate_windows(mean, maximum, aggregate: str, concatenate=np.concatenate):
    """The clip embedding [..., F*D] (or [..., 2 F*D] for "mean+max") from the step mean and the
    maximum of the window means; `concatenate` along the last axis (NumPy's or a backend's)."""
    if aggregate == "mean":
        return mean
    if aggregate == "max":
        return maximum
    return concatenate([mean, maximum], axis=-1)


@dataclass
class ClipEmbeddings:
    """Embeddings of a batch of equal-length clips (numpy, float32).

    embedding: [B, E] the windows of the last layer aggregated (E = F*D, 2 F*D for
    "mean+max").   frames: [B, T, F*D].
    layers: [B, L, E] and layer_frames: [B, L, T, F*D] (only with `layers=True`).
    Per-clip results (`embed_clips`, `embed_stream`) have no batch axis. `frames` and
    `layer_frames` are None with overlapping windows, and from `embed_stream` unless asked for.
    """

    embedding: np.ndarray
    frames: np.ndarray | None
    layers: np.ndarray | None = None
    layer_frames: np.ndarray | None = None


class _WindowPool:
    """Encoded windows of B clips, in time order -> their ClipEmbeddings.

    Keeps a float64 sum over all time steps, the maximum of the windows' step means, and the
    windows themselves only if `keep_frames`.
    """

    def __init__(self, layers: bool, keep_frames: bool, official_order: bool, aggregate: str):
        self.layers, self.keep_frames, self.official_order = layers, keep_frames, official_order
        self.aggregate = aggregate
        self.total, self.maximum, self.steps, self.chunks = None, None, 0, []

    def add(self, encoded: np.ndarray) -> None:
        """`encoded`: [B, k, L, t, F*D], k consecutive windows of t steps each."""
        sums = encoded.sum(axis=3, dtype=np.float64)  # [B, k, L, F*D]
        total, maximum = sums.sum(axis=1), (sums / encoded.shape[3]).max(axis=1)
        if self.total is None:
            self.total, self.maximum = total, maximum
        else:
            self.total, self.maximum = self.total + total, np.maximum(self.maximum, maximum)
        self.steps += encoded.shape[1] * encoded.shape[3]
        if self.keep_frames:
            self.chunks.extend(encoded[:, i] for i in range(encoded.shape[1]))

    def result(self) -> ClipEmbeddings:
        pooled = aggregate_windows(self.total / self.steps, self.maximum, self.aggregate)
        pooled = pooled.astype(np.float32)  # [B, L, E]
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


class NumpyEmbeddingExtractor:
    """Turns waveforms or log-mels into clip embeddings with an encoder function (NumPy).

    Args:
        backbone: a MatpacBackbone or an `EncoderSpec`: the encoder's sizes.
        mode: "precise" (default, the paper's) or "fast".
        layers: bool. Also return every layer's features. Defaults to False.
        frame_order: "temporal" (default) or "official": the official "fast" code returns
            frames interleaved across chunks (frame j = chunk j mod n, step j div n).
        batch_size: int. Windows encoded at once. Defaults to 16.
        chunk_frames: int or None. Frames per window: a multiple of the patch size up to the
            backbone's `max_frames` (the default). Fine-tuning's crops are the "fast" scheme
            with chunks of its `crop_frames`.
        temporal_support: float or None. The window in seconds instead of `chunk_frames`
            (not both): from one patch column (0.16 s) to the backbone's `max_frames` (6.08 s
            for the paper's model), rounded to the nearest whole number of columns (0.5 s ->
            48 frames). Defaults to None: `chunk_frames`.
        hop: float or None. Seconds from one window's start to the next, rounded likewise,
            from one column up to the window. Defaults to None: the window (no overlap).
        aggregate: "mean" (default: the mean over the windows' time steps, which with the
            default hop is the clip's precise embedding), "max" (element-wise maximum of the
            windows' step means) or "mean+max" (both, concatenated: 2 F*D features).
        encoder: callable. Encodes windows: float32 [n, mels, t] -> [n, L, t / patch, F*D],
            the function of `TokenFeatures(backbone, all_layers=layers).predict_on_batch`
            (e.g. the ONNX Runtime or OpenVINO encoders of `encoder_runtime`).
            `EmbeddingExtractor` defaults it to None: the backbone in Keras.

    Example:
    >>> extractor = NumpyEmbeddingExtractor(
    ...     encoder.spec, encoder=encoder, temporal_support=2.0, hop=1.0
    ... )
    >>> extractor.chunk_frames, extractor.hop_frames  # 2.08 s windows every 0.96 s
    (208, 96)
    """

    def __init__(
        self,
        backbone,
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
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if frame_order not in FRAME_ORDERS:
            raise ValueError(f"frame_order must be one of {FRAME_ORDERS}; got {frame_order!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}; got {aggregate!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        if temporal_support is not None and chunk_frames is not None:
            raise ValueError("give chunk_frames or temporal_support, not both")
        window, hop_frames = window_frames(backbone, temporal_support, hop)
        chunk_frames = window if chunk_frames is None else chunk_frames
        check_chunk_frames(chunk_frames, backbone)
        if hop is None:
            hop_frames = chunk_frames
        elif hop_frames > chunk_frames:
            raise ValueError(f"hop must be at most the window of {chunk_frames} frames")
        self.chunk_frames = chunk_frames
        self.hop_frames = hop_frames
        self.aggregate = aggregate
        self.backbone = backbone
        self.mode = mode
        self.layers = layers
        self.frame_order = frame_order
        self.batch_size = batch_size
        self.encoder = encoder
        if encoder is None and type(self) is NumpyEmbeddingExtractor:
            raise ValueError("NumpyEmbeddingExtractor needs an encoder (EmbeddingExtractor: Keras)")

    @property
    def temporal_support(self) -> float:
        """The window in seconds (`chunk_frames` / 100)."""
        return self.chunk_frames / FRAMES_PER_SECOND

    @property
    def hop(self) -> float:
        """Seconds from one window's start to the next (`hop_frames` / 100)."""
        return self.hop_frames / FRAMES_PER_SECOND

    @property
    def overlapping(self) -> bool:
        """Whether windows overlap (hop shorter than the window): then there are no frames."""
        return self.hop_frames < self.chunk_frames

    @property
    def embedding_size(self) -> int:
        """Features of a clip embedding: F*D, twice that for "mean+max"."""
        width = self.backbone.num_freq_patches * self.backbone.embed_dim
        return 2 * width if self.aggregate == "mean+max" else width

    def logmel(self, waveforms: np.ndarray) -> np.ndarray:
        """Normalised log-mel [B, mels, frames] of 16 kHz waveforms [B, samples]."""
        waveforms = np.asarray(waveforms, dtype="float32")
        if waveforms.ndim != 2:
            raise ValueError(f"waveforms must be [batch, samples]; got shape {waveforms.shape}")
        if waveforms.shape[1] < 400:
            raise ValueError(f"clips of {waveforms.shape[1]} samples are shorter than one frame")
        return self._logmel_batch(waveforms)

    def _logmel_batch(self, waveforms: np.ndarray) -> np.ndarray:
        """The front end: float32 [B, samples] (at least one frame) -> [B, mels, frames]."""
        return numpy_logmel(waveforms)

    def embed_waveforms(self, waveforms: np.ndarray) -> ClipEmbeddings:
        """Embeddings of equal-length 16 kHz waveforms [B, samples]."""
        return self.embed_logmel(self.logmel(waveforms))

    def leading_windows(self, frames):
        """Windows before the last one of a clip of `frames` log-mel frames: those that end
        before the patch-padded clip does (all full). A Python int or an integer tensor."""
        excess = padded_frames(frames, self.backbone.patch_size) - self.chunk_frames
        count = (excess + self.hop_frames - 1) // self.hop_frames
        if isinstance(count, int | np.integer):
            return max(count, 0)
        from keras import ops  # a tensor: the SavedModel's graph

        return ops.maximum(count, 0)

    def padded_frames(self, frames):
        """Frames of a clip of `frames` log-mel frames once zero-padded for the mode: to a
        multiple of the patch size ("precise"), or up to the end of a full last window
        ("fast"; with the default hop, a multiple of the window). `frames` may be a Python int
        or an integer tensor (the SavedModel's graph)."""
        if self.mode == "fast":
            return self.leading_windows(frames) * self.hop_frames + self.chunk_frames
        return padded_frames(frames, self.backbone.patch_size)

    def windows(self, frames: int) -> list[tuple[int, int]]:
        """(start, frames) of each window of a clip of `frames` log-mel frames once padded for
        the mode: one every `hop_frames`, all of `chunk_frames` but the last, which ends the
        padded clip (in "precise" mode it may be shorter: it holds the rest)."""
        leading = self.leading_windows(frames)
        last = leading * self.hop_frames
        starts = [(k * self.hop_frames, self.chunk_frames) for k in range(leading)]
        return starts + [(last, self.padded_frames(frames) - last)]

    def chunk_lengths(self, frames: int) -> list[int]:
        """Frames of each window of a clip of `frames` log-mel frames (`windows`)."""
        return [length for _, length in self.windows(frames)]

    def embed_logmel(self, logmel: np.ndarray) -> ClipEmbeddings:
        """Embeddings of equal-length normalised log-mels [B, mels, frames]."""
        logmel = np.asarray(logmel, dtype="float32")
        if logmel.ndim != 3 or logmel.shape[1] != self.backbone.num_mels:
            raise ValueError(
                f"log-mel must be [batch, {self.backbone.num_mels}, frames]; got {logmel.shape}"
            )
        pool = self._pool(not self.overlapping)
        windows = self.windows(logmel.shape[2])
        self._encode_windows(
            _pad_frames(logmel, self.padded_frames(logmel.shape[2])), windows, pool
        )
        return pool.result()

    def embed_stream(self, blocks: Iterable[np.ndarray], frames: bool = False) -> ClipEmbeddings:
        """Embeddings of one 16 kHz clip given as consecutive 1-D blocks of any sizes, in
        memory bounded by `batch_size` windows (plus the frames, when `frames=True`).

        Returns per-clip arrays (no batch axis), as `embed_clips`; `frames` and
        `layer_frames` are None unless `frames`. Raises ValueError for a clip shorter than one
        STFT frame (400 samples), or `frames` with overlapping windows; an exception from
        `blocks` propagates.
        """
        if frames and self.overlapping:
            raise ValueError("frames need non-overlapping windows (hop = temporal support)")
        window, hop = self.chunk_frames, self.hop_frames
        span = (self.batch_size - 1) * hop + window  # frames of one batch of windows
        # The batch is encoded once a frame beyond it has arrived: its windows are then not
        # the clip's last one (which ends the padded clip, and may be shorter).
        needed = HOP_LENGTH * span + N_FFT
        pool = self._pool(frames)
        pending, held, done = [], 0, 0  # blocks not yet framed, their samples, frames done
        for block in blocks:
            block = np.asarray(block, dtype="float32")
            if block.ndim != 1:
                raise ValueError(f"audio blocks must be 1-D; got shape {block.shape}")
            pending.append(block)
            held += block.shape[0]
            if held < needed:
                continue
            samples = np.concatenate(pending)
            used = 0
            while samples.shape[0] - used >= needed:
                logmel = self._frontend(samples[used : used + HOP_LENGTH * (span - 1) + N_FFT])
                starts = range(0, self.batch_size * hop, hop)
                pool.add(self._encode_group(_stack_windows(logmel[None], starts, window)))
                used += HOP_LENGTH * hop * self.batch_size
                done += hop * self.batch_size
            pending, held = [samples[used:]], samples.shape[0] - used
        rest = np.concatenate(pending) if pending else np.zeros(0, "float32")
        left = num_frames(rest.shape[0])
        if done + left == 0:
            raise ValueError(f"a clip of {rest.shape[0]} samples is shorter than one frame")
        if left:
            # `done` is a multiple of the hop and of the patch size, and no window done was the
            # last: the rest pads and is windowed as a clip would be.
            logmel = _pad_frames(self._frontend(rest)[None], self.padded_frames(left))
            self._encode_windows(logmel, self.windows(left), pool)
        out = pool.result()
        return ClipEmbeddings(*(None if a is None else a[0] for a in vars(out).values()))

    @property
    def _official_order(self) -> bool:
        return self.mode == "fast" and self.frame_order == "official"

    def _pool(self, keep_frames: bool) -> _WindowPool:
        return _WindowPool(self.layers, keep_frames, self._official_order, self.aggregate)

    def _frontend(self, samples: np.ndarray) -> np.ndarray:
        """Normalised log-mel [mels, frames] of one 1-D waveform (at least 400 samples)."""
        return self._logmel_batch(samples[None])[0]

    def _encode_windows(
        self, logmel: np.ndarray, windows: list[tuple[int, int]], pool: _WindowPool
    ) -> None:
        """Encodes the `windows` (`windows`) of padded log-mels [B, mels, frames] into `pool`,
        in time order: the full ones about `batch_size` windows at a time, then a short last
        one alone."""
        full = [start for start, length in windows if length == self.chunk_frames]
        per_group = max(1, self.batch_size // logmel.shape[0])
        for i in range(0, len(full), per_group):
            stacked = _stack_windows(logmel, full[i : i + per_group], self.chunk_frames)
            pool.add(self._encode_group(stacked))
        start, length = windows[-1]
        if length < self.chunk_frames:
            pool.add(self._encode_group(logmel[:, None, :, start : start + length]))

    def _encode_group(self, chunks: np.ndarray) -> np.ndarray:
        """[B, k, mels, t] windows (k of each of B clips) -> features [B, k, L, t / patch,
        F*D], encoded `batch_size` windows at a time."""
        batch, k = chunks.shape[:2]
        flat = chunks.reshape(batch * k, *chunks.shape[2:])
        outputs = [
            self._encode_batch(flat[i : i + self.batch_size])
            for i in range(0, len(flat), self.batch_size)
        ]
        encoded = np.concatenate(outputs, axis=0)
        return encoded.reshape(batch, k, *encoded.shape[1:])

    def _encode_batch(self, windows: np.ndarray) -> np.ndarray:
        """Windows [n, mels, t] (n up to `batch_size`) -> features [n, L, t / patch, F*D]."""
        return np.asarray(self.encoder(np.ascontiguousarray(windows, dtype="float32")))

    def embed_clips(self, waveforms: list[np.ndarray], progress=None) -> list[ClipEmbeddings]:
        """Embeddings of clips of any lengths (1-D 16 kHz arrays), one ClipEmbeddings each.

        The windows of all the clips are encoded together: windows of equal length (the full
        ones, and the last ones that are as short) go in batches of `batch_size`, whatever
        clip they come from (ten 10 s clips in precise mode: one batch of their ten 608-frame
        windows, one of their ten 392-frame rests). `progress`, if given, is called with the
        number of clips finished, once all are.
        """
        pools, groups = [], {}  # groups: window length -> [(clip, window number, window)]
        for number, waveform in enumerate(waveforms):
            waveform = np.asarray(waveform, dtype="float32")
            if waveform.ndim != 1 or waveform.shape[0] < N_FFT:
                raise ValueError(
                    f"clip {number}: needs a 1-D waveform of at least {N_FFT} samples; "
                    f"got shape {waveform.shape}"
                )
            frames = num_frames(waveform.shape[0])
            logmel = _pad_frames(self._frontend(waveform)[None], self.padded_frames(frames))[0]
            windows = self.windows(frames)
            for k, (start, length) in enumerate(windows):
                groups.setdefault(length, []).append((number, k, logmel[:, start : start + length]))
            pools.append([None] * len(windows))
        for members in groups.values():
            for i in range(0, len(members), self.batch_size):
                batch = members[i : i + self.batch_size]
                encoded = self._encode_batch(np.stack([window for _, _, window in batch]))
                for (number, k, _), features in zip(batch, encoded, strict=True):
                    pools[number][k] = features
        results = []
        for encoded_windows in pools:
            pool = self._pool(not self.overlapping)
            for features in encoded_windows:  # time order
                pool.add(features[None, None])
            results.append(
                ClipEmbeddings(*(None if a is None else a[0] for a in vars(pool.result()).values()))
            )
        if progress is not None:
            progress(len(waveforms))
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
    extractor: "NumpyEmbeddingExtractor", waveforms: list[np.ndarray], batch_size: int = 64
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
    out = np.zeros((len(waveforms), extractor.embedding_size), "float32")
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


def _stack_windows(logmel: np.ndarray, starts, window: int) -> np.ndarray:
    """The windows of `window` frames at `starts` of log-mels [B, mels, frames]:
    [B, len(starts), mels, window]."""
    return np.stack([logmel[:, :, start : start + window] for start in starts], axis=1)
