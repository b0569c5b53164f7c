"""Free Spoken Digit Dataset: 3,000 recordings of digits by 6 speakers (16 kHz mono)."""

from __future__ import annotations

import re

import numpy as np
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")  # {digit}_{speaker}_{index}
TEST_INDICES = range(0, 5)  # official split: repetitions 0-4 test, 5-49 train


class Builder(lib.AudioBuilder):
    """FSDD from a manual folder, with the official index-based train/test split."""

    name = "matpac_spoken_digit"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 8 kHz recordings resampled to 16 kHz int16."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Clone https://github.com/Jakobovski/free-spoken-digit-dataset and pass its `recordings/`
    folder (or the repository root) as manual_dir: `{digit}_{speaker}_{index}.wav` files.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
                "speaker": tfds.features.Text(),
                "index": tfds.features.Scalar(dtype=np.int32, doc="repetition 0-49"),
                "filename": tfds.features.Text(),
                "split": tfds.features.Text(),
            },
            supervised_keys=("audio", "label"),
            homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = dl_manager.manual_dir
        root = manual_dir / "recordings" if (manual_dir / "recordings").exists() else manual_dir
        clips = {"train": [], "test": []}
        for path in sorted(root.glob("*.wav")):
            match = _NAME.match(path.stem)
            if match is None:
                raise ValueError(f"{path}: not a {{digit}}_{{speaker}}_{{index}}.wav file name")
            digit, speaker, index = int(match[1]), match[2], int(match[3])
            split = "test" if index in TEST_INDICES else "train"
            features = {
                "label": digit,
                "speaker": speaker,
                "index": index,
                "filename": path.name,
                "split": split,
            }
            clips[split].append(lib.Clip(key=path.stem, path=path, features=features))
        if not clips["train"] and not clips["test"]:
            raise FileNotFoundError(f"{root}: no {{digit}}_{{speaker}}_{{index}}.wav files")
        return {split: self._generate_examples(c, split) for split, c in clips.items()}

    def _generate_examples(self, clips, split):
        yield from self._audio_examples(clips, split)
