"""Tests of the GTZAN builder on dummy_data/ (the filtered lists, a .au file, a corrupt file)."""

from unittest import mock

import pytest
import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib
from matpac_datasets import builder_testing
from matpac_datasets.gtzan import gtzan_dataset_builder as gtzan
from matpac_keras import audio

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class GtzanTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = gtzan.Builder
    SPLITS = {"train": 1, "valid": 1, "test": 2}

    def test_split_lists(self):
        lists = {s: lib.read_lines(gtzan._SPLITS_DIR / f) for s, f in gtzan._SPLIT_FILES.items()}
        self.assertEqual(
            {s: len(v) for s, v in lists.items()}, {"train": 443, "valid": 197, "test": 290}
        )
        self.assertEqual(len(set().union(*lists.values())), 930)  # disjoint

    def test_labels_audio_and_skipped_files(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        root = self.dummy_data / "genres"
        for split in self.SPLITS:
            for name, ex in builder_testing.examples(builder, split).items():
                self.assertEqual(
                    builder.info.features["label"].int2str(ex["label"]), name.split("/")[0]
                )
                path = root / name
                path = path if path.exists() else path.with_suffix(".au")
                builder_testing.assert_audio_matches(ex["audio"], path)
        # The corrupt (Kaggle) jazz.00054.wav, a train entry, is skipped and counted; the 925
        # listed clips absent from dummy_data/ are counted as missing.
        skipped = builder.info.metadata["skipped"]
        self.assertEqual(skipped["train"], {"bad_audio": 1, "missing": 441})
        self.assertEqual(skipped["valid"], {"missing": 196})
        self.assertEqual(skipped["test"], {"missing": 288})
        bad = [s.key for s in builder.skipped if s.reason == "bad_audio"]
        self.assertEqual(bad, ["jazz/jazz.00054.wav"])

    def test_strict_mode_raises_on_missing_file(self):
        with pytest.raises(FileNotFoundError, match="blues.00030.wav"):
            builder_testing.prepare(
                self.DATASET_CLASS, self.dummy_data, self.tmp_dir, skip_bad_files=False
            )

    def test_strict_mode_raises_on_corrupt_file(self):
        lists = epath.Path(self.tmp_dir) / "lists"
        lists.mkdir()
        present = {
            p.relative_to(self.dummy_data / "genres").with_suffix(".wav").as_posix()
            for p in (self.dummy_data / "genres").glob("*/*.*")
        }
        for filename in gtzan._SPLIT_FILES.values():
            entries = [e for e in lib.read_lines(gtzan._SPLITS_DIR / filename) if e in present]
            (lists / filename).write_text("\n".join(entries))
        with mock.patch.object(gtzan, "_SPLITS_DIR", lists):
            with pytest.raises(audio.AudioError, match="jazz.00054.wav"):
                builder_testing.prepare(
                    self.DATASET_CLASS, self.dummy_data, self.tmp_dir, skip_bad_files=False
                )
