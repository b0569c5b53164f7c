"""Tests of the NSynth builder on dummy_data/ (three splits, 16 kHz sources)."""

import json

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.nsynth import nsynth_dataset_builder

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class NsynthTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = nsynth_dataset_builder.Builder
    SPLITS = {"train": 2, "valid": 1, "test": 1}

    def test_labels_and_lossless_audio(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        for split in self.SPLITS:
            folder = self.dummy_data / f"nsynth-{split}"
            notes = json.loads((folder / "examples.json").read_text())
            for name, ex in builder_testing.examples(builder, split).items():
                note = notes[name[: -len(".wav")]]
                self.assertEqual(ex["label"], note["instrument_family"])
                label = builder.info.features["label"].int2str(ex["label"])
                self.assertEqual(label, note["instrument_family_str"])
                self.assertEqual((ex["pitch"], ex["velocity"]), (note["pitch"], note["velocity"]))
                # 16 kHz int16 sources are stored bit-exactly.
                source, rate = sf.read(folder / "audio" / name, dtype="int16")
                self.assertEqual(rate, 16000)
                np.testing.assert_array_equal(ex["audio"], source)
