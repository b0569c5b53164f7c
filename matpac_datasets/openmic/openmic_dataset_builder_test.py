"""Tests of the OpenMIC-2018 builder on dummy_data/ (OGG clips, partial labels)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib
from matpac_datasets import builder_testing
from matpac_datasets.openmic import openmic_dataset_builder as openmic

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class OpenmicTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = openmic.Builder
    SPLITS = {"train": 2, "test": 1}

    def test_split_lists(self):
        lists = {
            s: lib.read_lines(openmic._SPLITS_DIR / f) for s, f in openmic._SPLIT_FILES.items()
        }
        self.assertEqual({s: len(v) for s, v in lists.items()}, {"train": 14915, "test": 5085})
        self.assertEqual(len(set(lists["train"]) | set(lists["test"])), 20000)

    def test_labels_mask_and_audio(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        root = self.dummy_data / "openmic-2018"
        expected = {}  # key: {instrument: relevance}, read independently from the CSV
        for row in lib.read_csv(root / "openmic-2018-aggregated-labels.csv"):
            expected.setdefault(row["sample_key"], {})[row["instrument"]] = float(row["relevance"])
        seen = 0
        for split in self.SPLITS:
            for key, ex in builder_testing.examples(builder, split, key="sample_key").items():
                seen += 1
                annotated = {openmic.INSTRUMENTS[i] for i in np.flatnonzero(ex["label_mask"])}
                self.assertEqual(annotated, set(expected[key]))
                positive = {openmic.INSTRUMENTS[i] for i in np.flatnonzero(ex["labels"])}
                self.assertEqual(positive, {k for k, v in expected[key].items() if v >= 0.5})
                for name, value in expected[key].items():
                    self.assertAlmostEqual(ex["relevance"][openmic.INSTRUMENTS.index(name)], value)
                self.assertEqual(ex["relevance"][~ex["label_mask"]].sum(), 0.0)
                path = root / "audio" / key[:3] / f"{key}.ogg"
                builder_testing.assert_audio_matches(ex["audio"], path, atol=0.02)
        self.assertEqual(seen, 3)
        # Dummy labels cover: piano 1.0 (positive), voice 0.17 (annotated negative),
        # trumpet 0.5 (positive at the threshold), drums 0.0 (annotated negative).
        positives = sum(int(ex["labels"].sum()) for ex in self._all_examples(builder))
        masked = sum(int(ex["label_mask"].sum()) for ex in self._all_examples(builder))
        self.assertEqual((positives, masked), (3, 5))

    def _all_examples(self, builder):
        for split in self.SPLITS:
            yield from builder_testing.examples(builder, split, key="sample_key").values()
