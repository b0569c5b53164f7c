"""Shared code of the TFDS audio builders in `matpac_datasets/` (TensorFlow-only).

Every builder stores full-length 16 kHz mono int16 audio decoded, downmixed and resampled by
`matpac_keras.audio.load_audio`. A file that is listed but absent, that cannot be decoded, or that
is shorter than a builder's minimum length is never written: it is skipped with a logged, counted
reason (`builder.skipped`, and `info.metadata["skipped"]` once prepared), or, for a builder created
with `skip_bad_files=False`, the first missing or undecodable file raises an error naming it.

Symbolic links: a file whose real path (every link resolved) is inside the manual dir (or the
folder a builder reads, e.g. `AudioFolderConfig.folder`) is read, whether or not it is reached
through links; one whose real path is outside it is skipped and counted as `external_symlink`,
unless the builder is created with `follow_external_symlinks=True`. So a manual dir of links
into the user's own tree cannot make a builder read, and store, files from anywhere else.

Apache Beam: a builder whose `_generate_examples` returns `self._split_examples(...)` (AudioSet,
FSD50K, MTG-Jamendo) decodes its clips on Beam's workers when it is prepared with Beam options
(`tfds build ... --beam_pipeline_options=runner=DirectRunner,direct_num_workers=8`, or
`DownloadConfig(beam_options=..., beam_runner=...)`), and in this process otherwise; the examples
are the same. Under Beam the skipped clips are counted with Beam counters (namespace
`<builder>[<split>]`, one per reason) into the same `info.metadata["skipped"]`; their messages
are in the workers' logs, not in `builder.skipped`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from matpac_keras import audio

SAMPLE_RATE = audio.SAMPLE_RATE
# MATPAC pre-trains on 608-frame (6.08 s) crops: shorter clips are dropped from pre-training sets.
PRETRAIN_MIN_SECONDS = 6.08
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aif", ".aiff")

# Reasons for skipping a clip, as counted in `info.metadata["skipped"][split]`.
MISSING = "missing"  # listed in the metadata, but the audio file is absent
BAD_AUDIO = "bad_audio"  # matpac_keras.audio.AudioError: corrupt, empty, NaN, unreadable
TOO_SHORT = "too_short"  # decodes fine but is shorter than the builder's minimum length
EXTERNAL_SYMLINK = "external_symlink"  # a link that leaves the manual dir (not followed)

SYMLINK_POLICY = """
    Symbolic links: files reached through links are read when their real path is inside the
    manual dir; links leading outside it are skipped and counted as `external_symlink`, unless
    the builder is created with `follow_external_symlinks=True` (e.g. `tfds.load(...,
    builder_kwargs={"follow_external_symlinks": True})`).
"""

_LOGGED_PER_REASON = 10  # individual warnings per split and reason; the rest only in the summary
_DECODE_WORKERS = min(8, os.cpu_count() or 1)
# Float sources can exceed [-1, 1]; int16 storage clips them. Resampling overshoot of full-scale
# PCM stays below this, so only real out-of-range sources are reported.
_CLIP_WARNING_PEAK = 1.05


class PcmAudio(tfds.features.Audio):
    """`tfds.features.Audio` that applies its `encoding` to numpy input.

    TFDS 4.9's Audio passes arrays through unencoded, which breaks `encoding="bytes"`; raw int16
    bytes take 2 bytes a sample where the default int64 protobuf varints take up to 10.
    """

    def encode_example(self, audio_or_path_or_fobj):
        if isinstance(audio_or_path_or_fobj, np.ndarray):
            return tfds.features.Tensor.encode_example(self, audio_or_path_or_fobj)
        return super().encode_example(audio_or_path_or_fobj)


def audio_feature() -> PcmAudio:
    """The waveform feature of every builder: 16 kHz mono int16, stored as raw bytes."""
    return PcmAudio(
        shape=(None,),
        dtype=np.int16,
        sample_rate=SAMPLE_RATE,
        encoding=tfds.features.Encoding.BYTES,
        doc="Full-length waveform, 16 kHz mono int16 (divide by 32768 for [-1, 1) floats).",
    )


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float waveform in [-1, 1) -> int16 (x * 32768, rounded, clipped): inverse of soundfile."""
    return np.clip(np.rint(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def find_root(manual_dir: epath.PathLike, marker: str, subdirs: Sequence[str]) -> epath.Path:
    """Returns the first of `manual_dir`, `manual_dir/<subdir>`... that contains `marker`.

    Lets users point the manual dir either at an extracted archive's top folder or at its parent.
    """
    manual_dir = epath.Path(manual_dir)
    candidates = [manual_dir] + [manual_dir / sub for sub in subdirs]
    for root in candidates:
        if (root / marker).exists():
            return root
    tried = ", ".join(os.fspath(root / marker) for root in candidates)
    raise FileNotFoundError(f"manual_dir {os.fspath(manual_dir)}: found none of {tried}")


def list_audio_files(root: epath.PathLike) -> list[epath.Path]:
    """Audio files (by extension, any case) anywhere under `root`, sorted."""
    found = []
    for folder, _, filenames in epath.Path(root).walk():
        found += [folder / f for f in filenames if epath.Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return sorted(found)


def read_lines(path: epath.PathLike) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    return [line.strip() for line in epath.Path(path).read_text().splitlines() if line.strip()]


def read_csv(
    path: epath.PathLike, delimiter: str = ",", fieldnames: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (header row unless `fieldnames` is given)."""
    with epath.Path(path).open() as f:
        return list(csv.DictReader(f, fieldnames=fieldnames, delimiter=delimiter))


def require_columns(
    path: epath.PathLike, rows: Sequence[Mapping[str, str]], columns: Iterable[str]
):
    """Raises a ValueError naming the file if its rows lack any of `columns`."""
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{os.fspath(path)}: missing column(s) {missing}")


def read_fold_table(
    path: epath.PathLike,
    columns: Sequence[str],
    index_column: str,
    name_column: str,
    classes: Sequence[str],
    num_folds: int,
) -> dict[int, list[dict[str, str]]]:
    """The rows of a fold-annotated metadata CSV (ESC-50's, UrbanSound8K's), by fold 1..n.

    Raises a ValueError naming the file if a column is missing, a row's class index does not
    name its class in `classes`, or its fold is not 1..`num_folds`.
    """
    rows = read_csv(path)
    require_columns(path, rows, columns)
    folds = {k: [] for k in range(1, num_folds + 1)}
    for row in rows:
        index, fold = int(row[index_column]), int(row["fold"])
        if not 0 <= index < len(classes) or classes[index] != row[name_column]:
            raise ValueError(f"{os.fspath(path)}: unexpected class in row {row}")
        if fold not in folds:
            raise ValueError(f"{os.fspath(path)}: fold {fold} not in 1..{num_folds}: row {row}")
        folds[fold].append(row)
    return folds


@dataclasses.dataclass(frozen=True)
class Clip:
    """One example to write: its key, its audio file, and its non-audio features."""

    key: str  # unique, relative (never an absolute path: keys fix the example order)
    path: epath.Path | None  # None: listed in a split but absent from the user's metadata
    features: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A clip that was not written, and why."""

    split: str
    key: str
    reason: str  # MISSING, BAD_AUDIO, TOO_SHORT or EXTERNAL_SYMLINK
    message: str


class AudioBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """GeneratorBasedBuilder for manually downloaded audio, stored as 16 kHz mono int16.

    Args:
      skip_bad_files: bool. If True, missing and undecodable files are skipped, logged and counted;
        if False, the first one raises (FileNotFoundError or matpac_keras.audio.AudioError).
        Clips under a builder's minimum length are always skipped. Defaults to True.
      follow_external_symlinks: bool. Read files whose real path (links resolved) is outside
        the manual dir. If False, they are skipped and counted as `external_symlink` (in both
        `skip_bad_files` modes); links that stay inside it are always followed. Defaults to
        False.
      **kwargs: passed to `tfds.core.GeneratorBasedBuilder` (data_dir, config, version, ...).

    Example:
      `tfds.builder("matpac_esc50", skip_bad_files=False)` or
      `tfds.load("matpac_esc50", builder_kwargs={"skip_bad_files": False})`.
    """

    def __init_subclass__(cls, **kwargs: Any):
        """Every builder's MANUAL_DOWNLOAD_INSTRUCTIONS end with the symbolic link policy."""
        super().__init_subclass__(**kwargs)
        instructions = cls.__dict__.get("MANUAL_DOWNLOAD_INSTRUCTIONS")
        if instructions and SYMLINK_POLICY.strip() not in instructions:
            cls.MANUAL_DOWNLOAD_INSTRUCTIONS = instructions.rstrip() + "\n" + SYMLINK_POLICY

    def __init__(
        self, *, skip_bad_files: bool = True, follow_external_symlinks: bool = False, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self._original_state["skip_bad_files"] = skip_bad_files  # kept when pickled
        self._original_state["follow_external_symlinks"] = follow_external_symlinks
        self.skip_bad_files = skip_bad_files
        self.follow_external_symlinks = follow_external_symlinks
        self.skipped: list[SkippedFile] = []
        self._source_root: str | None = None
        self._beam = False  # prepared with Beam options (see `_split_examples`)
        self._beam_splits: dict[str, str] = {}  # Beam counter namespace -> split

    def _download_and_prepare(self, dl_manager, *args: Any, **kwargs: Any):
        try:
            self.set_source_root(dl_manager.manual_dir)
        except (AssertionError, ValueError, AttributeError):  # no manual dir given
            self._source_root = None
        config = kwargs.get("download_config", args[0] if args else None)
        beam_runner = getattr(config, "beam_runner", None)
        self._beam = beam_runner is not None or getattr(config, "beam_options", None) is not None
        self._beam_splits = {}
        return super()._download_and_prepare(dl_manager, *args, **kwargs)

    def set_source_root(self, root: epath.PathLike) -> None:
        """The folder whose files may be read when links lead elsewhere (default: manual dir)."""
        self._source_root = os.path.realpath(os.fspath(root))

    def _audio_info(self, features: Mapping[str, Any], **kwargs: Any) -> tfds.core.DatasetInfo:
        """DatasetInfo with the 16 kHz `audio` feature plus `features`, README and CITATIONS."""
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"audio": audio_feature(), **features}),
            metadata=tfds.core.MetadataDict(),
            **kwargs,
        )

    def _split_examples(
        self,
        clips: Iterable[Clip],
        split: str,
        *,
        min_seconds: float = 0.0,
        missing_is_error: bool = True,
    ):
        """What `_generate_examples` returns for a split: the `_audio_examples` generator, or,
        when the builder is prepared with Beam options, a Beam PTransform that creates the
        clips and decodes them on the workers into the same (key, example) pairs (TFDS then
        writes them with Beam). Arguments as for `_audio_examples`."""
        if not self._beam:
            return self._audio_examples(
                clips, split, min_seconds=min_seconds, missing_is_error=missing_is_error
            )
        import apache_beam as beam

        namespace = f"{self.name}[{split}]"
        self._beam_splits[namespace] = split
        decode = BeamDecode(
            namespace,
            _min_samples(min_seconds),
            None if self.follow_external_symlinks else self._source_root,
            self.skip_bad_files,
            missing_is_error,
        )
        return beam.Create(list(clips)) | "Decode" >> beam.FlatMap(decode)

    def _process_pipeline_result(self, pipeline_result) -> None:
        """Under Beam: the skipped counts of every split (`BeamDecode`'s counters) into
        `info.metadata["skipped"]`, as the in-process path records them."""
        from apache_beam.metrics.metric import MetricsFilter

        skipped = self.info.metadata.setdefault("skipped", {})
        for split in self._beam_splits.values():
            skipped[split] = {}
        for counter in pipeline_result.metrics().query(MetricsFilter())["counters"]:
            split = self._beam_splits.get(counter.key.metric.namespace)
            if split is None:
                continue
            value = counter.committed if counter.committed is not None else counter.attempted
            if value:
                reason = counter.key.metric.name
                skipped[split][reason] = skipped[split].get(reason, 0) + int(value)
        for split, counts in skipped.items():
            level = logging.WARNING if counts else logging.INFO
            logging.log(level, "%s[%s]: skipped %s", self.name, split, counts)

    def _audio_examples(
        self,
        clips: Iterable[Clip],
        split: str,
        *,
        min_seconds: float = 0.0,
        missing_is_error: bool = True,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Decodes `clips` (in parallel threads, in order) and yields (key, example).

        Args:
          clips: the split's examples.
          split: the split name, for counting and logging.
          min_seconds: clips shorter than this (at 16 kHz) are skipped as TOO_SHORT.
          missing_is_error: whether an absent file raises when `skip_bad_files` is False
            (False for sets where absent clips are normal, e.g. AudioSet).
        """
        min_samples = _min_samples(min_seconds)
        counts: collections.Counter[str] = collections.Counter()
        written = 0
        boundary = None if self.follow_external_symlinks else self._source_root
        for clip, result in _decode_in_order(clips, min_samples, boundary):
            if isinstance(result, np.ndarray):
                written += 1
                yield clip.key, {**clip.features, "audio": result}
                continue
            reason, error = result
            fatal = reason == BAD_AUDIO or (reason == MISSING and missing_is_error)
            if fatal and not self.skip_bad_files:
                raise error
            counts[reason] += 1
            self.skipped.append(SkippedFile(split, clip.key, reason, str(error)))
            if counts[reason] <= _LOGGED_PER_REASON:
                logging.warning(
                    "%s[%s]: skipped %s (%s): %s", self.name, split, clip.key, reason, error
                )
        self.info.metadata.setdefault("skipped", {})[split] = dict(counts)
        level = logging.WARNING if counts else logging.INFO
        logging.log(
            level, "%s[%s]: wrote %d clips, skipped %s", self.name, split, written, dict(counts)
        )


def _min_samples(min_seconds: float) -> int:
    """Samples at 16 kHz of the shortest clip kept (at least 1)."""
    return max(1, math.ceil(round(min_seconds * SAMPLE_RATE, 6)))


class BeamDecode:
    """A clip -> its (key, example), decoded on a Beam worker (`AudioBuilder._split_examples`).

    An unusable clip is counted (Beam counter `namespace`/reason) and logged, or, if it is
    fatal (undecodable; missing where `missing_is_error`) and not `skip_bad_files`, raised.
    """

    def __init__(
        self,
        namespace: str,
        min_samples: int,
        boundary: str | None,
        skip_bad_files: bool,
        missing_is_error: bool,
    ):
        self.namespace = namespace
        self.min_samples = min_samples
        self.boundary = boundary
        self.skip_bad_files = skip_bad_files
        self.missing_is_error = missing_is_error

    def __call__(self, clip: Clip) -> Iterator[tuple[str, dict[str, Any]]]:
        import apache_beam as beam

        result = _decode(clip, self.min_samples, self.boundary)
        if isinstance(result, np.ndarray):
            yield clip.key, {**clip.features, "audio": result}
            return
        reason, error = result
        fatal = reason == BAD_AUDIO or (reason == MISSING and self.missing_is_error)
        if fatal and not self.skip_bad_files:
            raise error
        beam.metrics.Metrics.counter(self.namespace, reason).inc()
        logging.warning("%s: skipped %s (%s): %s", self.namespace, clip.key, reason, error)


def _outside(path: epath.Path, boundary: str) -> str | None:
    """The real path of `path` if it is outside the folder `boundary` (a real path), else None."""
    real = os.path.realpath(os.fspath(path))
    return None if os.path.commonpath([real, boundary]) == boundary else real


def _decode(
    clip: Clip, min_samples: int, boundary: str | None = None
) -> np.ndarray | tuple[str, Exception]:
    """int16 16 kHz waveform of `clip`, or (reason, error) when it cannot be used. With a
    `boundary` (a real path), a file whose real path is outside it is not read."""
    path = clip.path
    if path is None:
        return MISSING, FileNotFoundError(f"{clip.key}: listed, but no audio file is known for it")
    if not path.exists():
        return MISSING, FileNotFoundError(f"{os.fspath(path)}: listed but not found")
    if boundary is not None and (real := _outside(path, boundary)) is not None:
        return EXTERNAL_SYMLINK, ValueError(
            f"{os.fspath(path)}: a symbolic link to {real}, outside {boundary}: not followed "
            "(create the builder with follow_external_symlinks=True to read it)"
        )
    try:
        wave = audio.load_audio(os.fspath(path), sample_rate=SAMPLE_RATE, min_samples=1)
    except audio.AudioError as error:
        return BAD_AUDIO, error
    if len(wave) < min_samples:
        seconds, minimum = len(wave) / SAMPLE_RATE, min_samples / SAMPLE_RATE
        return TOO_SHORT, ValueError(f"{os.fspath(path)}: {seconds:.3f} s < {minimum:.2f} s")
    if np.abs(wave).max() > _CLIP_WARNING_PEAK:
        logging.warning("%s: peak %.2f > 1, clipped to int16", path, np.abs(wave).max())
    return to_int16(wave)


def _decode_in_order(
    clips: Iterable[Clip], min_samples: int, boundary: str | None = None
) -> Iterator[tuple[Clip, np.ndarray | tuple[str, Exception]]]:
    """Decodes a few clips ahead in a thread pool, overlapping decoding with TFDS's writing."""
    window = 2 * _DECODE_WORKERS
    with concurrent.futures.ThreadPoolExecutor(_DECODE_WORKERS) as pool:
        pending: collections.deque = collections.deque()
        for clip in clips:
            pending.append((clip, pool.submit(_decode, clip, min_samples, boundary)))
            if len(pending) >= window:
                done_clip, future = pending.popleft()
                yield done_clip, future.result()
        while pending:
            done_clip, future = pending.popleft()
            yield done_clip, future.result()
