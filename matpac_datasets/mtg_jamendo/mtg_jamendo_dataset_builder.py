"""MTG-Jamendo auto-tagging, split-0: whole tracks (16 kHz mono) with genre, instrument,
mood/theme or top-50 tags, labels in the order of the authors' MATPAC++ probe heads.

What is stored: every track whole, never cropped or padded. MARBLE (a43992899/MARBLE-Benchmark,
whose split-0 protocol these tasks follow) embeds the whole low-quality track: its
`benchmark/tasks/MTG/MTG*_base_config.yaml` cut each track into non-overlapping 30 s windows
(`sliding_window_size_in_sec: 30`, overlap 0, `crop_to_length_in_sec: null`), train the probe
on every window with the track's tags, and average the windows' predictions per track for
validation and test (`test_collate_fn`, `scatter_mean`). The authors' released MTG heads
(aurianworld/matpac `inference_matpac/matpac/model.py`, `probe_forward`) are applied to the
time mean of the whole input's embedding, as `matpac-evaluate` embeds whole clips. A fixed
excerpt would match neither, while from whole tracks any crop can still be taken when
embedding. The price is disk: the split files' DURATION column summed, at 16 kHz int16
(32 kB/s), is about 430 GB for `genre`, 190 GB for `instrument`, 125 GB for `moodtheme` and
425 GB for `top50tags` (each config is its own TFDS dataset).

Memory: the split files' rows are read first (a few MB); examples are then made lazily, one
`Clip` at a time, and `audio_builder_lib` decodes a bounded few tracks ahead of the writer
(2 x its decoding threads), never a split.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib
from matpac_keras import class_mappings

SPLIT_DIR = "data/splits/split-0"  # in the clone of github.com/MTG/mtg-jamendo-dataset
SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # ours -> the TSV names'
COLUMNS = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")  # then one or more TAGS
REPOSITORY = "mtg-jamendo-dataset"
AUDIO_DIRS = ("audio", "audio-low")  # audio folders looked for in manual_dir, in this order
LOW_QUALITY = ".low.mp3"  # the low-quality download names `15/215.mp3` `15/215.low.mp3`


@dataclasses.dataclass(eq=False)
class MtgJamendoConfig(tfds.core.BuilderConfig):
    """One tag set of split-0, read from `autotagging_<name>-<split>.tsv`.

    Attributes:
      head: the `matpac_keras.class_mappings` task whose label file gives the vocabulary and
        its order (the authors' head output order).
    """

    head: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return class_mappings.task_labels(self.head)


@dataclasses.dataclass(frozen=True)
class Track:
    """One row of a split file."""

    track_id: str  # e.g. track_0000215
    path: str  # as in the PATH column, e.g. 15/215.mp3
    tags: tuple[str, ...]  # e.g. ("genre---metal",)


def split_file(root: epath.PathLike, config: str, split: str) -> epath.Path:
    """`<root>/data/splits/split-0/autotagging_<config>-<train|validation|test>.tsv`."""
    return epath.Path(root) / SPLIT_DIR / f"autotagging_{config}-{SPLITS[split]}.tsv"


def read_split(path: epath.PathLike, labels: Sequence[str]) -> list[Track]:
    """The rows of a split file (tab-separated, LF or CRLF line ends).

    Raises:
      FileNotFoundError: no such file (the message names it).
      ValueError: naming the file and line: a header other than TRACK_ID, ARTIST_ID, ALBUM_ID,
        PATH, DURATION, TAGS; a row without a tag; a tag not in `labels`; a PATH listed twice.
    """
    path = epath.Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{os.fspath(path)}: split file not found (manual_dir must hold a clone of "
            "github.com/MTG/mtg-jamendo-dataset: see MANUAL_DOWNLOAD_INSTRUCTIONS)"
        )
    lines = path.read_text().splitlines()
    header = lines[0].rstrip("\r").split("\t") if lines else []
    if tuple(header[: len(COLUMNS)]) != COLUMNS or len(header) < len(COLUMNS) + 1:
        raise ValueError(f"{os.fspath(path)}:1: expected the columns {COLUMNS} + TAGS: {header}")
    known, first_line, tracks = set(labels), {}, []
    for number, line in enumerate(lines[1:], start=2):
        fields = [field.strip() for field in line.split("\t")]
        if not any(fields):
            continue
        where = f"{os.fspath(path)}:{number}"
        tags = tuple(tag for tag in fields[len(COLUMNS) :] if tag)
        if not tags:
            raise ValueError(f"{where}: no tag (expected {len(COLUMNS)} columns then tags)")
        unknown = [tag for tag in tags if tag not in known]
        if unknown:
            raise ValueError(
                f"{where}: tag(s) {unknown} not among the {len(labels)} labels of this config"
            )
        track_path = fields[COLUMNS.index("PATH")]
        if track_path in first_line:
            listed = first_line[track_path]
            raise ValueError(f"{where}: {track_path} already listed on line {listed}")
        first_line[track_path] = number
        tracks.append(Track(fields[0], track_path, tags))
    return tracks


def audio_dir(manual_dir: epath.PathLike) -> epath.Path:
    """The folder of the `NN/` audio folders: `manual_dir/audio`, `manual_dir/audio-low`, or
    else manual_dir itself."""
    manual_dir = epath.Path(manual_dir)
    for name in AUDIO_DIRS:
        if (manual_dir / name).is_dir():
            return manual_dir / name
    return manual_dir


def audio_file(folder: epath.Path, track_path: str) -> epath.Path:
    """`folder/15/215.mp3`, or `folder/15/215.low.mp3` when only that exists."""
    full = folder / track_path
    if full.exists() or not track_path.endswith(".mp3"):
        return full
    low = folder / (track_path[: -len(".mp3")] + LOW_QUALITY)
    return low if low.exists() else full


def multi_hot(tags: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """Booleans [len(index)], True at each tag's index."""
    labels = np.zeros(len(index), np.bool_)
    labels[[index[tag] for tag in tags]] = True
    return labels


def _config(name: str, head: str, sizes: str) -> MtgJamendoConfig:
    count = len(class_mappings.task_labels(head))
    return MtgJamendoConfig(
        name=name,
        head=head,
        description=f"autotagging_{name}, split-0: {count} tags, {sizes} tracks "
        f"(train / valid / test), labels in the order of the authors' {head} head.",
    )


class Builder(lib.AudioBuilder):
    """MTG-Jamendo split-0 with multi-hot tags, one config per tag set."""

    name = "matpac_mtg_jamendo"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: whole tracks, 16 kHz mono int16, split-0."}
    BUILDER_CONFIGS = [
        _config("genre", "mtg_genre", "32,572 / 11,043 / 11,479"),
        _config("instrument", "mtg_instrument", "14,395 / 5,466 / 5,115"),
        _config("moodtheme", "mtg_mood", "9,949 / 3,802 / 4,231"),
        _config("top50tags", "mtg_top50", "32,136 / 10,888 / 11,356"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Clone https://github.com/MTG/mtg-jamendo-dataset (for its split files
    `data/splits/split-0/autotagging_<genre|instrument|moodtheme|top50tags>-<train|validation|
    test>.tsv`) and download the `raw_30s` audio with its script, full or low quality
    (`python3 scripts/download/download.py --dataset raw_30s --type audio-low <folder> --unpack
    --remove`; `--dataset autotagging_moodtheme` is enough for `moodtheme`). The tracks are the
    TSVs' PATH column, `NN/<id>.mp3` (e.g. `15/215.mp3`), or the low-quality download's
    `NN/<id>.low.mp3`. Accepted layouts of manual_dir:
      1. `mtg-jamendo-dataset/` (the clone) beside `audio/` or `audio-low/` (holding `NN/`);
      2. the clone itself as manual_dir, with `audio/` or `audio-low/` inside it;
      3. either of those with the `NN/` folders directly in manual_dir instead of in `audio/`.
    A missing split file is an error naming it; listed tracks without an audio file are
    skipped and counted as `missing`. Tracks are stored whole (several minutes each): about
    430 GB (genre), 190 GB (instrument), 125 GB (moodtheme) or 425 GB (top50tags) of data_dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self._audio_info(
            {
                "labels": tfds.features.Tensor(
                    shape=(len(config.labels),),
                    dtype=np.bool_,
                    doc=f"multi-hot tags in the authors' {config.head} head order "
                    "(matpac_keras.class_mappings)",
                ),
                "track_id": tfds.features.Text(doc="TRACK_ID, e.g. track_0000215"),
                "filename": tfds.features.Text(doc="PATH in the split file, e.g. 15/215.mp3"),
                "split": tfds.features.Text(),
            },
            homepage="https://mtg.github.io/mtg-jamendo-dataset/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = epath.Path(dl_manager.manual_dir)
        root = lib.find_root(manual_dir, SPLIT_DIR, [REPOSITORY])
        labels = self.builder_config.labels
        # All three files are read and checked before any audio is decoded.
        tracks = {
            split: read_split(split_file(root, self.builder_config.name, split), labels)
            for split in SPLITS
        }
        folder = audio_dir(manual_dir)
        return {
            split: self._generate_examples(folder, tracks[split], labels, split) for split in SPLITS
        }

    def _generate_examples(
        self, folder: epath.Path, tracks: list[Track], labels: Sequence[str], split: str
    ) -> Iterable[tuple[str, dict]]:  # or, built with Beam options, a beam.PTransform
        index = {label: i for i, label in enumerate(labels)}
        clips = (
            lib.Clip(
                key=track.path,
                path=audio_file(folder, track.path),
                features={
                    "labels": multi_hot(track.tags, index),
                    "track_id": track.track_id,
                    "filename": track.path,
                    "split": split,
                },
            )
            for track in tracks
        )
        return self._split_examples(clips, split)  # a Beam PTransform with Beam options
