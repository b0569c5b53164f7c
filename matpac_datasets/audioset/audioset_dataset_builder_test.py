"""Tests of the AudioSet builder on dummy_data/ (segment CSVs, id-named clips, short clips)."""

import pytest
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.audioset import audioset_dataset_builder as audioset

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class AudiosetTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = audioset.Builder
    SPLITS = {"balanced_train": 3, "unbalanced_train": 2, "eval": 3}

    def test_matching_labels_and_counts(self):
        # Strict mode: absent clips are normal for AudioSet and short clips a policy, not errors.
        builder = builder_testing.prepare(
            self.DATASET_CLASS, self.dummy_data, self.tmp_dir, skip_bad_files=False
        )
        train = builder_testing.examples(builder, "balanced_train", key="ytid")
        self.assertEqual(set(train), {"--PJHxphWEs", "-0Bb2bxG4eU", "-0hY1dfB4k8"})
        self.assertEqual(
            [m.decode() for m in train["--PJHxphWEs"]["labels"]], ["/m/09x0r", "/t/dd00088"]
        )
        self.assertEqual(train["--PJHxphWEs"]["start_seconds"], 30.0)
        self.assertEqual(
            train["-0Bb2bxG4eU"]["filename"], b"audio/balanced/Y-0Bb2bxG4eU_0.000.flac"
        )
        for ex in train.values():
            builder_testing.assert_audio_matches(
                ex["audio"], self.dummy_data / ex["filename"].decode(), atol=0.02
            )
        self.assertEqual(
            builder.info.metadata["skipped"],
            {"balanced_train": {"too_short": 1, "missing": 1}, "unbalanced_train": {}, "eval": {}},
        )
        self.assertEqual(builder.info.metadata["unlisted_files"], 1)
        short = [s for s in builder.skipped if s.reason == "too_short"]
        self.assertEqual([s.key for s in short], ["-0SdAVK79lg"])

    def test_beam_build_equals_the_plain_build(self):
        # `tfds build ... --beam_pipeline_options=runner=DirectRunner`: clips decoded on Beam's
        # workers, the same examples and skipped counts (missing and too-short clips).
        plain = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, f"{self.tmp_dir}/a")
        beamed = builder_testing.prepare(
            self.DATASET_CLASS, self.dummy_data, f"{self.tmp_dir}/b", ["--runner=DirectRunner"]
        )
        builder_testing.assert_same_builds(plain, beamed)
        self.assertEqual((len(plain.skipped), beamed.skipped), (2, []))  # decoded by Beam
        self.assertEqual(beamed.info.metadata["skipped"]["balanced_train"]["too_short"], 1)
        reloaded = self.DATASET_CLASS(data_dir=f"{self.tmp_dir}/b")
        self.assertEqual(reloaded.info.metadata["skipped"], plain.info.metadata["skipped"])

    def test_ytid_candidates(self):
        self.assertIn("-0Bb2bxG4eU", audioset.ytid_candidates("Y-0Bb2bxG4eU_0.000"))
        self.assertIn("--PJHxphWEs", audioset.ytid_candidates("--PJHxphWEs_30000_40000"))
        self.assertEqual(audioset.ytid_candidates("abc")[0], "abc")
