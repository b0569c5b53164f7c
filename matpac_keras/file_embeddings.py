"""Clip embeddings of audio files, as `matpac-embed` and `matpac-tag` compute them.

`embed_files` reads every file's header first (a missing, unreadable or truncated file fails, or
with `skip_errors` is recorded, before any embedding starts), then encodes the clips of at most
one chunk in batches of equal length (`EmbeddingExtractor.embed_clips`) and streams the longer
ones block by block (`EmbeddingExtractor.embed_stream`), so memory does not grow with a file's
length (except for `frames`, whose output does).
"""

import math

import numpy as np
from absl import logging

from matpac_keras.audio import SAMPLE_RATE, AudioError, audio_info, load_audio, stream_audio
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.frontend import num_frames


class ErrorSkipper:
    """Raises a file's AudioError, or with `skip_errors` logs and records it."""

    def __init__(self, skip_errors: bool):
        self.skip_errors = skip_errors
        self.skipped: dict[int, tuple[str, str]] = {}

    def __call__(self, index: int, path: str, error: Exception) -> None:
        if not self.skip_errors:
            raise error
        logging.warning("skipping %s", error)
        self.skipped[index] = (path, str(error))


def embed_files(
    extractor: EmbeddingExtractor,
    paths: list[str],
    skip_errors: bool,
    frames: bool = False,
    progress=None,
):
    """Per-file ClipEmbeddings {index: result} of `paths`, and the skipped {index: (path, why)}.

    Every header is read first (missing, unreadable or truncated files fail, or are skipped,
    before any embedding). Clips of at most one chunk are decoded whole and encoded in batches
    of equal length (`embed_clips`); longer ones are streamed (`embed_stream`).
    """
    skip = ErrorSkipper(skip_errors)
    lengths = {}
    for index, path in enumerate(paths):
        try:
            rate, count, _ = audio_info(path)
            lengths[index] = math.ceil(count * SAMPLE_RATE / rate)
        except AudioError as error:
            skip(index, path, error)
            if progress is not None:
                progress(1)
    results, short = {}, []

    def flush():
        for (index, _), result in zip(
            short, extractor.embed_clips([w for _, w in short]), strict=True
        ):
            results[index] = result
        if progress is not None:
            progress(len(short))
        short.clear()

    for index, samples in lengths.items():
        path = paths[index]
        try:
            if num_frames(samples) <= extractor.backbone.max_frames:
                short.append((index, load_audio(path)))
                if len(short) >= extractor.batch_size:
                    flush()
                continue
            results[index] = extractor.embed_stream(stream_audio(path), frames=frames)
        except AudioError as error:
            skip(index, path, error)
        if progress is not None:
            progress(1)
    if short:
        flush()
    return results, skip.skipped


def skipped_arrays(skipped: dict[int, tuple[str, str]]) -> dict[str, np.ndarray]:
    """The `.npz` entries of skipped files, in input order: `skipped` (paths), `errors` (why)."""
    reasons = [skipped[i] for i in sorted(skipped)]
    return {
        "skipped": np.array([p for p, _ in reasons], dtype=str),
        "errors": np.array([e for _, e in reasons], dtype=str),
    }
