"""Clip embeddings of audio files, as `matpac-embed`, `matpac-tag` and the Beam pipeline compute
them: streamed, in memory bounded by the batch, not by the number of files.

`FileEmbedder.embed(paths)` reads every file's header first (a missing, unreadable or truncated
file fails, or with `skip_errors` is recorded, before any embedding starts), then yields each
file's ClipEmbeddings in input order:

- files of at most `batch_size` windows (97 s for the paper's model at batch 16) are decoded
  by a pool of threads a few batches ahead (decoding overlaps encoding), and encoded
  `batch_size` files at a time with all their windows batched together
  (`EmbeddingExtractor.embed_clips`: ten 10 s clips are two encoder calls, not twenty);
- longer ones are streamed block by block (`EmbeddingExtractor.embed_stream`), so memory does
  not grow with a file's length (except for `frames`, whose output does).

A file whose embedding holds NaN or Inf (extreme samples, or a model with non-finite weights)
stops the job with a NonFiniteError naming it, or with `skip_errors` is recorded as skipped
with that reason: no non-finite number is ever returned.

At most `2 * batch_size` decoded files are held at once, whatever the number of files. The
grouping depends only on the inputs and `batch_size`, so a job computed again (a resumed
shard) gives identical numbers.
"""

import collections
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import logging

from matpac_keras.audio import SAMPLE_RATE, AudioError, audio_info, load_audio, stream_audio
from matpac_keras.errors import InputError
from matpac_keras.logmel import num_frames
from matpac_keras.numpy_embedding import ClipEmbeddings, NumpyEmbeddingExtractor


class NonFiniteError(InputError):
    """A result (embedding, probability, weight) holding NaN or Inf; the message names the
    file."""


def check_finite(path: str, what: str, *arrays) -> None:
    """Raises NonFiniteError naming `path` and `what` ("embedding", "probabilities"...) unless
    every array given (None ones skipped) is finite."""
    for array in arrays:
        if array is not None and not np.isfinite(array).all():
            raise NonFiniteError(
                f"{path}: its {what} holds NaN or infinite values (from extreme samples, "
                "e.g. a float file of 1e30, or from non-finite model weights); nothing of it "
                "is written"
            )


class ErrorSkipper:
    """Raises a file's AudioError (or NonFiniteError), or with `skip_errors` logs and records
    it."""

    def __init__(self, skip_errors: bool):
        self.skip_errors = skip_errors
        self.skipped: dict[int, tuple[str, str]] = {}

    def __call__(self, index: int, path: str, error: Exception) -> None:
        if not self.skip_errors:
            raise error
        logging.warning("skipping %s", error)
        self.skipped[index] = (path, str(error))


def most_whole_frames(extractor: NumpyEmbeddingExtractor) -> int:
    """The most log-mel frames of a clip that `extractor` encodes whole (`FileEmbedder`, the
    Beam pipeline): a clip of more windows than its `batch_size` is streamed (`embed_stream`).
    (The window count grows with the frames, so this is a search.)"""
    low, high = 0, extractor.chunk_frames + extractor.batch_size * extractor.hop_frames
    while low < high:  # the largest f with len(windows(f)) <= batch_size
        middle = (low + high + 1) // 2
        if len(extractor.windows(middle)) <= extractor.batch_size:
            low = middle
        else:
            high = middle - 1
    return low


class FileEmbedder:
    """Streams the clip embeddings of audio files (see the module docstring).

    Args:
        extractor: NumpyEmbeddingExtractor. Its `batch_size` is the files encoded at once.
        skip_errors: bool. Record unreadable files in `skipped` instead of raising their
            AudioError. Defaults to False.
        frames: bool. Keep per-time-step frames of streamed (long) files too. Defaults to False.
        decode_threads: int. Threads decoding files ahead of the encoder. Defaults to 2.
    """

    def __init__(
        self,
        extractor: NumpyEmbeddingExtractor,
        skip_errors: bool = False,
        frames: bool = False,
        decode_threads: int = 2,
    ):
        if decode_threads < 1:
            raise ValueError(f"decode_threads must be positive; got {decode_threads}")
        self.extractor = extractor
        self.skip = ErrorSkipper(skip_errors)
        self.frames = frames
        self.decode_threads = decode_threads

    @property
    def skipped(self) -> dict[int, tuple[str, str]]:
        """{index: (path, why)} of the files left out so far."""
        return self.skip.skipped

    def embed(
        self,
        paths: Sequence[str],
        indices: Sequence[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[int, str, ClipEmbeddings]]:
        """Yields (index, path, ClipEmbeddings) of `paths` in order, skipped files left out.

        Args:
            paths: audio files.
            indices: their numbers in the job (recorded with skipped files). Defaults to
                0 .. len(paths) - 1.
            progress: called with the number of files finished (embedded or skipped).
        """
        indices = range(len(paths)) if indices is None else indices
        extractor, batch = self.extractor, self.extractor.batch_size
        whole_frames = most_whole_frames(extractor)
        plan = []  # (index, path, streamed)
        for index, path in zip(indices, paths, strict=True):
            try:
                rate, count, _ = audio_info(path)
            except AudioError as error:
                self.skip(index, path, error)
                if progress is not None:
                    progress(1)
                continue
            frames = num_frames(max(math.ceil(count * SAMPLE_RATE / rate), 400))
            plan.append((index, path, frames > whole_frames))
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode") as pool:
            decoding = collections.deque()  # (index, path, future | None: streamed)
            ahead = iter(plan)

            def refill():
                while sum(f is not None for *_, f in decoding) < 2 * batch:
                    item = next(ahead, None)
                    if item is None:
                        return
                    index, path, streamed = item
                    future = None if streamed else pool.submit(load_audio, path)
                    decoding.append((index, path, future))

            group = []
            refill()
            while decoding:
                index, path, future = decoding.popleft()
                if future is None:
                    yield from self._encode(group, progress)
                    group = []
                    result = self._stream(index, path)
                    if progress is not None:
                        progress(1)
                    if result is not None:
                        yield index, path, result
                else:
                    try:
                        group.append((index, path, future.result()))
                    except AudioError as error:
                        self.skip(index, path, error)
                        if progress is not None:
                            progress(1)
                    if len(group) >= batch:
                        yield from self._encode(group, progress)
                        group = []
                refill()
            yield from self._encode(group, progress)

    def _encode(self, group, progress) -> Iterator[tuple[int, str, ClipEmbeddings]]:
        if not group:
            return
        results = self.extractor.embed_clips([waveform for *_, waveform in group])
        if progress is not None:
            progress(len(group))
        for (index, path, _), result in zip(group, results, strict=True):
            if not self.frames:  # not asked for: not held (as embed_stream does)
                result = dataclasses.replace(result, frames=None, layer_frames=None)
            if self._finite(index, path, result):
                yield index, path, result

    def _stream(self, index: int, path: str) -> ClipEmbeddings | None:
        try:
            result = self.extractor.embed_stream(stream_audio(path), frames=self.frames)
        except AudioError as error:
            self.skip(index, path, error)
            return None
        return result if self._finite(index, path, result) else None

    def _finite(self, index: int, path: str, result: ClipEmbeddings) -> bool:
        """Whether `result` is finite; if not, raises or (skip_errors) records the file."""
        try:
            check_finite(path, "embedding", result.embedding, result.layers, result.frames)
        except NonFiniteError as error:
            self.skip(index, path, error)
            return False
        return True


def embed_files(
    extractor: NumpyEmbeddingExtractor,
    paths: list[str],
    skip_errors: bool,
    frames: bool = False,
    progress=None,
):
    """Per-file ClipEmbeddings {index: result} of `paths`, and the skipped {index: (path, why)}
    (`FileEmbedder.embed`, collected)."""
    embedder = FileEmbedder(extractor, skip_errors, frames)
    results = {index: result for index, _, result in embedder.embed(paths, progress=progress)}
    return results, embedder.skipped


def skipped_arrays(skipped: dict[int, tuple[str, str]]) -> dict[str, np.ndarray]:
    """The `.npz` entries of skipped files, in input order: `skipped` (paths), `errors` (why)."""
    reasons = [skipped[i] for i in sorted(skipped)]
    return {
        "skipped": np.array([p for p, _ in reasons], dtype=str),
        "errors": np.array([e for _, e in reasons], dtype=str),
    }


def model_fingerprint(model: str, extractor: NumpyEmbeddingExtractor) -> str | None:
    """A digest of the model a job embeds with: of the `.keras` file's or preset folder's
    content when `model` is one (found alike whether the encoder is Keras's or a cached
    export), else of the extractor's backbone's config and weights (`backbone_fingerprint`)."""
    if os.path.exists(model):
        from matpac_keras.model_path import content_digest

        return content_digest(model)
    backbone = getattr(extractor, "backbone", None)
    if backbone is None:
        return None
    from matpac_keras.backbone import backbone_fingerprint

    return backbone_fingerprint(backbone)


def job_options(model: str, extractor: NumpyEmbeddingExtractor, frames: bool) -> dict:
    """What decides a job's embeddings, for a sharded output's manifest
    (`embedding_shards.manifest_for`): a restart with other options is refused. The model is
    recorded by its path and by its content (`model_fingerprint`), so a model file replaced at
    the same path is refused too; the encoder's runtime and precision are recorded beside it."""
    model_path = os.path.abspath(model) if os.path.exists(model) else model
    return {
        "model": model_path,
        "model_weights": model_fingerprint(model, extractor),
        "mode": extractor.mode,
        "layers": extractor.layers,
        "frames": bool(frames),
        "frame_order": extractor.frame_order,
        "chunk_frames": extractor.chunk_frames,
        "hop_frames": extractor.hop_frames,
        "aggregate": extractor.aggregate,
        "encoder": type(extractor.encoder).__name__ if extractor.encoder is not None else "keras",
        "precision": getattr(extractor.encoder, "precision", "float32"),
    }
