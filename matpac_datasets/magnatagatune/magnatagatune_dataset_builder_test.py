"""Tests of the MagnaTagATune builder on dummy_data/ (MP3 clips, both split configs)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib
from matpac_datasets import builder_testing
from matpac_datasets.magnatagatune import magnatagatune_dataset_builder as mtt

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class MagnatagatuneFilteredTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = mtt.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["filtered"]
    SPLITS = {"train": 2, "valid": 1, "test": 1}

    def test_split_lists_and_tags(self):
        lists = {s: lib.read_lines(mtt._SPLITS_DIR / f) for s, f in mtt._SPLIT_FILES.items()}
        self.assertEqual(
            {s: len(v) for s, v in lists.items()}, {"train": 15244, "valid": 1529, "test": 4332}
        )
        for split, entries in lists.items():  # the lists follow the directory rule
            self.assertEqual({mtt.directory_split(e) for e in entries}, {split})
        self.assertEqual(len(mtt.TAGS), 50)
        self.assertEqual(
            [mtt.csv_column(t) for t in ("noVocals", "newAge", "guitar")],
            ["no vocals", "new age", "guitar"],
        )

    def test_multi_hot_labels(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        rows = {
            r["mp3_path"]: r for r in lib.read_csv(self.dummy_data / "annotations_final.csv", "\t")
        }
        seen = 0
        for split in self.SPLITS:
            for name, ex in builder_testing.examples(builder, split).items():
                seen += 1
                row = rows[name]
                on = {mtt.csv_column(mtt.TAGS[i]) for i in np.flatnonzero(ex["labels"])}
                self.assertEqual(on, {c for c, v in row.items() if v == "1" and c != "clip_id"})
                self.assertEqual(ex["clip_id"], int(row["clip_id"]))
                # MP3 decoding is lossy and adds encoder delay: check the length only.
                self.assertAlmostEqual(len(ex["audio"]) / 16000, 1.0, delta=0.1)
        self.assertEqual(seen, 4)
        # The other 21,101 listed clips are not in this CSV: counted as missing, not written.
        skipped = builder.info.metadata["skipped"]
        self.assertEqual(sum(c["missing"] for c in skipped.values()), 15244 + 1529 + 4332 - 4)


class MagnatagatuneUnfilteredTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = mtt.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["unfiltered"]
    SPLITS = {"train": 2, "valid": 1, "test": 2}  # + the clip in e/ that no list holds
