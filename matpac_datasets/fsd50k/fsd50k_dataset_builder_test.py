"""Tests of the FSD50K builder on dummy_data/ (vocabulary order, dev/val/eval splits)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib
from matpac_datasets import builder_testing
from matpac_datasets.fsd50k import fsd50k_dataset_builder

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class Fsd50kTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = fsd50k_dataset_builder.Builder
    SPLITS = {"train": 2, "valid": 1, "test": 1}

    def test_labels_in_vocabulary_order(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        gt = self.dummy_data / "FSD50K.ground_truth"
        vocab = lib.read_csv(gt / "vocabulary.csv", fieldnames=["index", "label", "mid"])
        names = [r["label"] for r in vocab]
        expected = {}
        for csv_name, folder in [
            ("dev.csv", "FSD50K.dev_audio"),
            ("eval.csv", "FSD50K.eval_audio"),
        ]:
            for row in lib.read_csv(gt / csv_name):
                expected[f"{folder}/{row['fname']}.wav"] = set(row["labels"].split(","))
        for split in self.SPLITS:
            for name, ex in builder_testing.examples(builder, split).items():
                self.assertEqual({names[i] for i in np.flatnonzero(ex["labels"])}, expected[name])
                builder_testing.assert_audio_matches(ex["audio"], self.dummy_data / name)
        # Index 199 and 0 are both set on the first dev clip: the order is vocabulary.csv's.
        first = builder_testing.examples(builder, "train")["FSD50K.dev_audio/64760.wav"]
        self.assertEqual(np.flatnonzero(first["labels"]).tolist(), [0, 1, 199])
        self.assertEqual(builder.info.metadata["vocabulary"][1], [1, "Guitar", "/m/0342h"])
        # The vocabulary survives a reload from the prepared directory.
        reloaded = self.DATASET_CLASS(data_dir=self.tmp_dir)
        self.assertEqual(len(reloaded.info.metadata["vocabulary"]), 200)
