"""AudioSet clips a user holds, matched to the official segment CSVs (pre-training, 16 kHz)."""

from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from matpac_datasets import audio_builder_lib as lib

SEGMENT_FILES = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
_YTID_LENGTH = 11


def read_segments(path) -> dict[str, tuple[float, list[str]]]:
    """Segment CSV -> {YTID: (start_seconds, [label MIDs])}; '#' lines are comments."""
    with path.open() as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), skipinitialspace=True)
        return {r[0]: (float(r[1]), r[3].split(",")) for r in rows if r}


def ytid_candidates(stem: str) -> list[str]:
    """YTIDs a file stem may name: `<id>`, `<id>_<start>...`, `Y<id>...` (11-character ids)."""
    out = [stem, stem[:_YTID_LENGTH]]
    if stem.startswith("Y"):
        out.append(stem[1 : 1 + _YTID_LENGTH])
    return out


class Builder(lib.AudioBuilder):
    """One split per segment CSV present in the manual dir; clips under 6.08 s are dropped."""

    name = "matpac_audioset"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 16 kHz mono int16, clips >= 6.08 s."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    AudioSet audio cannot be downloaded by TFDS. Put the official segment CSVs
    (balanced_train_segments.csv, unbalanced_train_segments.csv, eval_segments.csv; any subset,
    from https://research.google.com/audioset/download.html) at the top of manual_dir, and your
    clips anywhere below it, named by YouTube id: `<YTID>.<ext>`, `<YTID>_<start>.<ext>` or
    `Y<YTID>....<ext>`. Listed clips without a file are counted as missing (never an error).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "ytid": tfds.features.Text(),
                "start_seconds": tfds.features.Scalar(dtype=np.float32),
                "labels": tfds.features.Sequence(tfds.features.Text(), doc="label MIDs"),
                "filename": tfds.features.Text(doc="path relative to the manual dir"),
                "split": tfds.features.Text(),
            },
            homepage="https://research.google.com/audioset/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = dl_manager.manual_dir
        segments = {
            split: read_segments(root / name)
            for split, name in SEGMENT_FILES.items()
            if (root / name).exists()
        }
        if not segments:
            raise FileNotFoundError(f"manual_dir {root}: none of {list(SEGMENT_FILES.values())}")
        listed = {ytid for table in segments.values() for ytid in table}
        files, unlisted = {}, 0
        for path in lib.list_audio_files(root):
            ytid = next((c for c in ytid_candidates(path.stem) if c in listed), None)
            if ytid is None:
                unlisted += 1
            else:
                files.setdefault(ytid, path)
        logging.info(
            "%s: %d audio files matched, %d not in any CSV", self.name, len(files), unlisted
        )
        self.info.metadata["unlisted_files"] = unlisted
        return {
            split: self._generate_examples(root, table, files, split)
            for split, table in segments.items()
        }

    def _generate_examples(self, root, table, files, split):
        clips = (  # lazily: unbalanced_train lists about 2 million segments
            lib.Clip(
                key=ytid,
                path=files.get(ytid),
                features={
                    "ytid": ytid,
                    "start_seconds": start,
                    "labels": labels,
                    "filename": files[ytid].relative_to(root).as_posix() if ytid in files else "",
                    "split": split,
                },
            )
            for ytid, (start, labels) in table.items()
        )
        return self._split_examples(  # a Beam PTransform when built with Beam options
            clips, split, min_seconds=lib.PRETRAIN_MIN_SECONDS, missing_is_error=False
        )
