"""UrbanSound8K: 8,732 urban sound excerpts (<= 4 s), 10 classes, 10 folds (16 kHz mono)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib

# `classID` 0-9 of metadata/UrbanSound8K.csv, in order.
CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
NUM_FOLDS = 10
_CSV = "metadata/UrbanSound8K.csv"


class Builder(lib.AudioBuilder):
    """UrbanSound8K with one split per official fold (`fold1` ... `fold10`)."""

    name = "matpac_urbansound8k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: full-length 16 kHz mono int16 audio."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download UrbanSound8K.tar.gz (https://urbansounddataset.weebly.com/urbansound8k.html),
    extract it and pass the `UrbanSound8K/` folder (or its parent) as manual_dir: it holds
    `metadata/UrbanSound8K.csv` and `audio/fold<k>/<fsID>-<classID>-<occurrenceID>-<sliceID>.wav`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "label": tfds.features.ClassLabel(names=CLASSES),
                "filename": tfds.features.Text(),
                "fold": tfds.features.Scalar(dtype=np.int32),
                "salience": tfds.features.Scalar(dtype=np.int32, doc="1 foreground, 2 background"),
            },
            supervised_keys=("audio", "label"),
            homepage="https://urbansounddataset.weebly.com/urbansound8k.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, _CSV, ["UrbanSound8K"])
        columns = ["slice_file_name", "fold", "classID", "class", "salience"]
        folds = lib.read_fold_table(root / _CSV, columns, "classID", "class", CLASSES, NUM_FOLDS)
        return {
            f"fold{k}": self._generate_examples(root, rows, split=f"fold{k}")
            for k, rows in folds.items()
        }

    def _generate_examples(self, root, rows, split):
        clips = [
            lib.Clip(
                key=row["slice_file_name"],
                path=root / "audio" / f"fold{row['fold']}" / row["slice_file_name"],
                features={
                    "label": int(row["classID"]),
                    "filename": row["slice_file_name"],
                    "fold": int(row["fold"]),
                    "salience": int(row["salience"]),
                },
            )
            for row in rows
        ]
        yield from self._audio_examples(clips, split)
