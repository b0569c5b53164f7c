"""FSD50K: 51,197 Freesound clips (0.3-30 s), 200 classes, multi-label (16 kHz mono)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib

NUM_CLASSES = 200
_GT = "FSD50K.ground_truth"


class Builder(lib.AudioBuilder):
    """FSD50K with multi-hot labels in the official vocabulary.csv order.

    The vocabulary ships with the data, so the class names are read at build time and kept
    in `info.metadata["vocabulary"]` as [index, label, mid] rows.
    """

    name = "matpac_fsd50k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 16 kHz mono int16 audio, 200-class labels."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download FSD50K from https://zenodo.org/record/4060432 (dev_audio, eval_audio, ground_truth;
    merge split zips with `zip -s 0 X.zip --out Xu.zip`, then unzip) and pass the folder holding
    `FSD50K.dev_audio/`, `FSD50K.eval_audio/` and `FSD50K.ground_truth/{dev,eval,vocabulary}.csv`
    as manual_dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "labels": tfds.features.Tensor(
                    shape=(NUM_CLASSES,), dtype=np.bool_, doc="vocabulary.csv index order"
                ),
                "filename": tfds.features.Text(doc="e.g. FSD50K.dev_audio/64760.wav"),
                "split": tfds.features.Text(),
            },
            homepage="https://zenodo.org/record/4060432",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, f"{_GT}/vocabulary.csv", ["FSD50K"])
        vocab_rows = lib.read_csv(
            root / _GT / "vocabulary.csv", fieldnames=["index", "label", "mid"]
        )
        if [int(r["index"]) for r in vocab_rows] != list(range(NUM_CLASSES)):
            raise ValueError(f"{root / _GT / 'vocabulary.csv'}: expected indices 0-199 in order")
        self.info.metadata["vocabulary"] = [
            [int(r["index"]), r["label"], r["mid"]] for r in vocab_rows
        ]
        index = {r["mid"]: int(r["index"]) for r in vocab_rows}
        dev = lib.read_csv(root / _GT / "dev.csv")
        evaluation = lib.read_csv(root / _GT / "eval.csv")
        lib.require_columns(root / _GT / "dev.csv", dev, ["fname", "mids", "split"])
        lib.require_columns(root / _GT / "eval.csv", evaluation, ["fname", "mids"])
        parts = {
            "train": ("FSD50K.dev_audio", [r for r in dev if r["split"] == "train"]),
            "valid": ("FSD50K.dev_audio", [r for r in dev if r["split"] == "val"]),
            "test": ("FSD50K.eval_audio", evaluation),
        }
        return {
            split: self._generate_examples(root, folder, rows, index, split)
            for split, (folder, rows) in parts.items()
        }

    def _generate_examples(self, root, folder, rows, index, split):
        clips = []
        for row in rows:
            labels = np.zeros(NUM_CLASSES, np.bool_)
            for mid in row["mids"].split(","):
                if mid not in index:
                    raise ValueError(f"{row['fname']}: label {mid} not in vocabulary.csv")
                labels[index[mid]] = True
            filename = f"{folder}/{row['fname']}.wav"
            features = {"labels": labels, "filename": filename, "split": split}
            clips.append(lib.Clip(key=filename, path=root / filename, features=features))
        return self._split_examples(clips, split)  # a Beam PTransform with Beam options
