"""What a pretraining source holds, counted before training: usable clips and dropped ones.

`open_source` turns `data.source` into a pipeline source (a folder's file list, a prepared TFDS
builder, or a `tf.data.Dataset` passed in Python) and `take_inventory` counts it cheaply:

- a folder (searched recursively for audio files by extension, `exclude` patterns left out):
  every file's header is read (soundfile, no decoding); a file whose header cannot be read or
  that holds no frames is `bad_audio`, one shorter than a crop once resampled to 16 kHz
  (`round(frames * 16000 / rate)` samples) is `too_short`; the others are the usable clips, and
  only they are fed to the pipeline (which still drops, and counts, a file that fails to decode
  past its header);
- a prepared TFDS directory: the split's `num_examples` (clips the builder wrote: it left out
  missing, corrupt and, for pretraining sets, shorter than 6.08 s clips, counted in its
  metadata); a clip shorter than the crop is dropped when an epoch reads it and counted then;
- a `tf.data.Dataset`: its cardinality when known (else `data.num_examples` must be set).

A directory prepared before the builders' package was renamed `datasets` -> `matpac_datasets`
names its audio feature `datasets.audio_builder_lib.PcmAudio`; that name is registered as an
alias of `matpac_datasets.audio_builder_lib.PcmAudio`, so both open.
"""

import concurrent.futures
import dataclasses
import fnmatch
import os
import pathlib

import tensorflow as tf
import tensorflow_datasets as tfds

from matpac_keras.audio import SAMPLE_RATE, AudioError, audio_info
from matpac_keras.data import sources
from matpac_keras.data.dropped import BAD_AUDIO, TOO_SHORT, DroppedClips
from matpac_keras.errors import InputError
from matpac_keras.frontend import samples_for_frames

LEGACY_FEATURE_NAMES = ("datasets.audio_builder_lib.PcmAudio",)  # before the package rename
_HEADER_WORKERS = 8


@dataclasses.dataclass
class Inventory:
    """A source's clips: how many are usable and how many were dropped, by reason.

    Attributes:
        description: the source in words ("folder /data/x", "TFDS matpac_spoken_digit[train]").
        found: clips (files or examples) the source holds; None when unknown.
        usable: clips an epoch is expected to use; None when unknown.
        dropped: the record of dropped clips (the pipeline adds to it while reading).
        files: the usable files of a folder source (the pipeline's input), else None.
        skipped_when_prepared: a TFDS builder's own count of the clips it did not write.
    """

    description: str
    found: int | None
    usable: int | None
    dropped: DroppedClips
    files: list[str] | None = None
    skipped_when_prepared: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """One line: '40 clips in folder /x: 38 used, 2 dropped (bad_audio 1, too_short 1)'."""
        counts = {reason: n for reason, n in self.dropped.counts.items() if n}
        total = sum(counts.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in counts.items())
        found = "?" if self.found is None else self.found
        used = "?" if self.found is None else self.found - total
        line = f"{found} clips in {self.description}: {used} used, {total} dropped"
        line += f" ({reasons})" if reasons else ""
        if self.skipped_when_prepared:
            skipped = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped_when_prepared.items()))
            line += f"; left out when the dataset was prepared: {skipped}"
        return line


def register_legacy_feature_names() -> None:
    """Lets TFDS open directories prepared before the `datasets` -> `matpac_datasets` rename."""
    from matpac_datasets import audio_builder_lib

    registered = tfds.features.FeatureConnector._registered_features  # TFDS's name -> class map
    for name in LEGACY_FEATURE_NAMES:
        registered.setdefault(name, audio_builder_lib.PcmAudio)


def open_source(source, argument: str = "config.data.source"):
    """A pipeline source for `source`: a prepared TFDS directory (holding dataset_info.json)
    as a builder, a folder as its path; a builder, `tf.data.Dataset` or file list as is.

    Raises:
        InputError: the path does not exist, or the TFDS directory cannot be opened.
    """
    if not isinstance(source, str | os.PathLike):
        return source
    path = pathlib.Path(source)
    if not path.exists():
        raise InputError(f"{argument} {os.fspath(source)!r} does not exist")
    if not (path / "dataset_info.json").exists():
        if not path.is_dir():
            raise InputError(
                f"{argument} {os.fspath(source)!r}: not a folder of audio files or a prepared "
                "TFDS dataset directory"
            )
        return os.fspath(path)
    register_legacy_feature_names()
    try:
        return tfds.builder_from_directory(os.fspath(path))
    except (ValueError, KeyError, OSError, tf.errors.OpError) as error:
        reason = " ".join(str(error).split())
        raise InputError(
            f"{argument} {os.fspath(source)!r}: cannot open the TFDS dataset: {reason}"
        ) from error


def expected_samples(frames: int, rate: int) -> int:
    """Samples of `frames` at `rate` once resampled to 16 kHz (`matpac_keras.audio.resample`)."""
    return frames if rate == SAMPLE_RATE else round(frames * SAMPLE_RATE / rate)


def _header(path: str) -> tuple[int, str | None]:
    """(16 kHz samples, None) of a file from its header, or (0, why it is unusable)."""
    try:
        rate, frames, _ = audio_info(path)
    except AudioError as error:
        return 0, str(error)
    if frames <= 0:
        return 0, f"{path}: empty audio (0 frames)"
    return expected_samples(frames, rate), None


def _excluded(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(os.path.basename(path), pattern) for pattern in patterns)


def take_inventory(
    source,
    crop_frames: int,
    split: str | None = None,
    exclude: tuple[str, ...] = (),
    dropped: DroppedClips | None = None,
) -> Inventory:
    """Counts the usable clips of an opened source (see the module docstring).

    Args:
        source: what `open_source` returns.
        crop_frames: int. Log-mel frames of one crop: shorter clips are not usable.
        split: str or None. The split of a TFDS builder.
        exclude: fnmatch patterns of file names (the name only, e.g. "*_[0-4].wav") to leave
            out of a folder source. Defaults to none.
        dropped: DroppedClips or None. Where dropped clips are recorded; None: a new one.
    """
    dropped = DroppedClips() if dropped is None else dropped
    needed = samples_for_frames(crop_frames)
    if sources.is_file_source(source):
        files = sources.audio_files(source)
        description = f"folder {os.fspath(source)}" if isinstance(source, str) else "file list"
        files = [f for f in files if not _excluded(f, exclude)]
        if not files:
            raise InputError(
                f"config.data.source {source}: every audio file matches config.data.exclude"
            )
        with concurrent.futures.ThreadPoolExecutor(_HEADER_WORKERS) as pool:
            headers = list(pool.map(_header, files))
        usable = []
        for path, (samples, problem) in zip(files, headers, strict=True):
            if problem is not None:
                dropped.record(BAD_AUDIO, path, problem)
            elif samples < needed:
                seconds = samples / SAMPLE_RATE
                detail = f"{samples} samples ({seconds:.3f} s) < {needed} samples for one crop"
                dropped.record(TOO_SHORT, path, detail)
            else:
                usable.append(path)
        return Inventory(description, len(files), len(usable), dropped, files=usable)
    if isinstance(source, tfds.core.DatasetBuilder):
        description = f"TFDS {source.name}[{split}] ({source.data_dir})"
        try:
            count = source.info.splits[split].num_examples
        except (KeyError, ValueError) as error:
            known = sorted(source.info.splits)
            raise InputError(
                f"config.data.split {split!r}: not a split of {source.name} (it has {known})"
            ) from error
        skipped = source.info.metadata.get("skipped", {}) if source.info.metadata else {}
        when_prepared = {}
        for name in split.split("+"):
            for reason, n in skipped.get(name.split("[")[0], {}).items():
                when_prepared[reason] = when_prepared.get(reason, 0) + n
        return Inventory(description, count, count, dropped, skipped_when_prepared=when_prepared)
    cardinality = int(source.cardinality())
    count = cardinality if cardinality >= 0 else None
    return Inventory("a tf.data.Dataset", count, count, dropped)
