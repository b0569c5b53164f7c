"""MagnaTagATune: 29 s MP3 clips, top-50 tags, Dieleman directory split (16 kHz mono)."""

from __future__ import annotations

import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib

_SPLITS_DIR = epath.Path(__file__).parent / "splits"
_SPLIT_FILES = {
    "train": "train_list_pub.cP.txt",
    "valid": "valid_list_pub.cP.txt",
    "test": "test_list_pub.cP.txt",
}
TAGS = tuple(lib.read_lines(_SPLITS_DIR / "top50_tags.txt"))  # frequency order
_ANNOTATIONS = "annotations_final.csv"


def csv_column(tag: str) -> str:
    """top50_tags.txt name -> annotations_final.csv column: `noVocals` -> `no vocals`."""
    return re.sub(r"[A-Z]", lambda m: " " + m.group(0).lower(), tag)


def directory_split(mp3_path: str) -> str:
    """Dieleman's rule on the clip's folder: 0-b train, c valid, d-f test."""
    folder = mp3_path.split("/")[0]
    return "train" if folder in "0123456789ab" else "valid" if folder == "c" else "test"


class Builder(lib.AudioBuilder):
    """MagnaTagATune with 50-tag multi-hot labels."""

    name = "matpac_magnatagatune"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 16 kHz mono int16 audio, top-50 tags."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="filtered",
            description="15,244/1,529/4,332 clips: the standard split without untagged or short "
            "clips (jongpillee/music_dataset_split, minzwon/sota-music-tagging-models).",
        ),
        tfds.core.BuilderConfig(
            name="unfiltered",
            description="All annotated clips by folder: 0-b train, c valid, d-f test (MARBLE).",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download mp3.zip.001-003 and annotations_final.csv
    (https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset), join and extract the zip
    (`cat mp3.zip* > mp3.zip && unzip mp3.zip -d mp3`) and pass the folder holding
    `annotations_final.csv` and `mp3/<0-9a-f>/<clip>.mp3` as manual_dir (the MP3 folders may
    also sit directly beside the CSV).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "labels": tfds.features.Tensor(
                    shape=(len(TAGS),), dtype=np.bool_, doc="top-50 tags, top50_tags.txt order"
                ),
                "clip_id": tfds.features.Scalar(dtype=np.int32),
                "filename": tfds.features.Text(doc="mp3_path, e.g. f/<artist>-...-30-59.mp3"),
                "split": tfds.features.Text(),
            },
            homepage="https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, _ANNOTATIONS, ["magnatagatune"])
        audio_dir = root / "mp3" if (root / "mp3").exists() else root
        rows = lib.read_csv(root / _ANNOTATIONS, delimiter="\t")
        columns = [csv_column(tag) for tag in TAGS]
        lib.require_columns(root / _ANNOTATIONS, rows, ["clip_id", "mp3_path", *columns])
        by_path = {row["mp3_path"]: row for row in rows}
        if self.builder_config.name == "filtered":
            paths = {
                split: [e.replace(".npy", ".mp3") for e in lib.read_lines(_SPLITS_DIR / name)]
                for split, name in _SPLIT_FILES.items()
            }
        else:
            paths = {split: [] for split in _SPLIT_FILES}
            for row in rows:
                paths[directory_split(row["mp3_path"])].append(row["mp3_path"])
        return {
            split: self._generate_examples(audio_dir, paths[split], by_path, columns, split)
            for split in _SPLIT_FILES
        }

    def _generate_examples(self, audio_dir, mp3_paths, by_path, columns, split):
        clips = []
        for mp3_path in mp3_paths:
            row = by_path.get(mp3_path)
            if row is None:  # not in this annotations_final.csv: counted as missing
                clips.append(lib.Clip(key=mp3_path, path=None, features={}))
                continue
            features = {
                "labels": np.array([row[c] == "1" for c in columns]),
                "clip_id": int(row["clip_id"]),
                "filename": mp3_path,
                "split": split,
            }
            clips.append(lib.Clip(key=mp3_path, path=audio_dir / mp3_path, features=features))
        yield from self._audio_examples(clips, split)
