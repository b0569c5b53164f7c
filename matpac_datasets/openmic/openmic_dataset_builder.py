"""OpenMIC-2018: 20,000 ten-second clips, 20 instruments, partial labels (split01)."""

from __future__ import annotations

import collections

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib

# class-map.json order of the official release (= MATPAC's openmic mapping).
INSTRUMENTS = (
    "accordion", "banjo", "bass", "cello", "clarinet", "cymbals", "drums", "flute", "guitar",
    "mallet_percussion", "mandolin", "organ", "piano", "saxophone", "synthesizer", "trombone",
    "trumpet", "ukulele", "violin", "voice",
)  # fmt: skip
POSITIVE_RELEVANCE = 0.5  # official baseline: an instrument is present if relevance >= 0.5
_LABELS_CSV = "openmic-2018-aggregated-labels.csv"
_SPLITS_DIR = epath.Path(__file__).parent / "splits"
_SPLIT_FILES = {"train": "split01_train.csv", "test": "split01_test.csv"}


class Builder(lib.AudioBuilder):
    """OpenMIC-2018 with 20-way labels and a mask of the instruments annotated per clip."""

    name = "matpac_openmic"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: split01, 16 kHz mono int16, labels + mask."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download openmic-2018-v1.0.0.tgz (https://zenodo.org/record/1432913), extract it and pass
    the `openmic-2018/` folder (or its parent) as manual_dir: it holds
    `openmic-2018-aggregated-labels.csv` and `audio/<first 3 digits>/<sample_key>.ogg`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        vector = {"shape": (len(INSTRUMENTS),)}
        return self._audio_info(
            {
                "labels": tfds.features.Tensor(
                    **vector, dtype=np.bool_, doc="relevance >= 0.5 (False where not annotated)"
                ),
                "label_mask": tfds.features.Tensor(
                    **vector, dtype=np.bool_, doc="True for the instruments annotated in the clip"
                ),
                "relevance": tfds.features.Tensor(
                    **vector, dtype=np.float32, doc="aggregated relevance in [0, 1], 0 if masked"
                ),
                "sample_key": tfds.features.Text(),
                "split": tfds.features.Text(),
            },
            homepage="https://github.com/cosmir/openmic-2018",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, _LABELS_CSV, ["openmic-2018"])
        rows = lib.read_csv(root / _LABELS_CSV)
        lib.require_columns(root / _LABELS_CSV, rows, ["sample_key", "instrument", "relevance"])
        annotations = collections.defaultdict(dict)
        for row in rows:
            if row["instrument"] not in INSTRUMENTS:
                raise ValueError(f"{root / _LABELS_CSV}: unknown instrument in row {row}")
            annotations[row["sample_key"]][row["instrument"]] = float(row["relevance"])
        return {
            split: self._generate_examples(root, _SPLITS_DIR / filename, annotations, split)
            for split, filename in _SPLIT_FILES.items()
        }

    def _generate_examples(self, root, split_file, annotations, split):
        clips = []
        for key in lib.read_lines(split_file):
            relevance = np.zeros(len(INSTRUMENTS), np.float32)
            mask = np.zeros(len(INSTRUMENTS), np.bool_)
            for instrument, value in annotations.get(key, {}).items():
                relevance[INSTRUMENTS.index(instrument)] = value
                mask[INSTRUMENTS.index(instrument)] = True
            features = {
                "labels": mask & (relevance >= POSITIVE_RELEVANCE),
                "label_mask": mask,
                "relevance": relevance,
                "sample_key": key,
                "split": split,
            }
            path = root / "audio" / key[:3] / f"{key}.ogg"
            clips.append(lib.Clip(key=key, path=path, features=features))
        yield from self._audio_examples(clips, split)
