"""Tests of the spoken-digit builder: dummy_data/, and the real 3,000 FSDD recordings."""

import os
import pathlib
import time

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.spoken_digit import spoken_digit_dataset_builder

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend

_REAL_FSDD = pathlib.Path(
    os.environ.get("MATPAC_FSDD", pathlib.Path(__file__).resolve().parents[3] / "shared/data/fsdd")
)


class SpokenDigitTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = spoken_digit_dataset_builder.Builder
    SPLITS = {"train": 3, "test": 2}

    def test_split_labels_and_audio(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        for split in self.SPLITS:
            for name, ex in builder_testing.examples(builder, split).items():
                digit, speaker, index = name[: -len(".wav")].split("_")
                self.assertEqual((ex["label"], ex["speaker"].decode()), (int(digit), speaker))
                self.assertEqual(split, "test" if int(index) < 5 else "train")
                path = self.dummy_data / "recordings" / name
                builder_testing.assert_audio_matches(ex["audio"], path)


def test_real_fsdd_build(tmp_path):
    """All 3,000 real recordings: 2,700 train / 300 test, 16 kHz lengths twice the 8 kHz ones."""
    recordings = _REAL_FSDD / "recordings"
    if not recordings.is_dir():
        pytest.skip(f"FSDD recordings not found at {recordings} (set MATPAC_FSDD)")
    start = time.perf_counter()
    builder = builder_testing.prepare(
        spoken_digit_dataset_builder.Builder, recordings, str(tmp_path), skip_bad_files=False
    )
    print(f"real FSDD build: {time.perf_counter() - start:.1f} s")
    assert builder.info.splits["train"].num_examples == 2700
    assert builder.info.splits["test"].num_examples == 300
    assert builder.info.metadata["skipped"] == {"train": {}, "test": {}}
    checked = 0
    for split in ("train", "test"):
        for name, ex in builder_testing.examples(builder, split).items():
            info = sf.info(recordings / name)
            assert info.samplerate == 8000
            assert abs(len(ex["audio"]) - 2 * info.frames) <= 1, name
            assert (int(name.split("_")[2][:-4]) < 5) == (split == "test")
            assert np.abs(ex["audio"]).max() > 0, name
            if checked < 20:  # samples against an independent resampler, for a few files
                builder_testing.assert_audio_matches(ex["audio"], recordings / name, atol=0.02)
                checked += 1
