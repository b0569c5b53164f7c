"""Tests of the ESC-50 builder on dummy_data/ (5 folds, mixed sample rates)."""

import pytest
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.esc50 import esc50_dataset_builder

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class Esc50Test(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = esc50_dataset_builder.Builder
    SPLITS = {"fold1": 2, "fold2": 1, "fold3": 1, "fold4": 1, "fold5": 1}

    def test_labels_folds_and_audio(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        audio_dir = self.dummy_data / "ESC-50-master" / "audio"
        for k in range(1, 6):
            for name, ex in builder_testing.examples(builder, f"fold{k}").items():
                fold, _, _, target = name[: -len(".wav")].split("-")
                self.assertEqual((ex["fold"], ex["label"]), (k, int(target)))
                self.assertEqual(int(fold), k)
                builder_testing.assert_audio_matches(ex["audio"], audio_dir / name)
        names = builder.info.features["label"].names
        self.assertEqual((len(names), names[0], names[49]), (50, "dog", "hand_saw"))
        self.assertEqual(builder.info.features["audio"].sample_rate, 16000)
        self.assertEqual(builder.info.metadata["skipped"], {f"fold{k}": {} for k in range(1, 6)})
