"""Tests of the UrbanSound8K builder on dummy_data/ (10 folds, mixed formats, a 10 ms clip)."""

import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.urbansound8k import urbansound8k_dataset_builder

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


class UrbanSound8kTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = urbansound8k_dataset_builder.Builder
    SPLITS = {f"fold{k}": 2 if k == 1 else 1 for k in range(1, 11)}

    def test_labels_and_mixed_formats(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        audio_dir = self.dummy_data / "UrbanSound8K" / "audio"
        subtypes = set()
        for k in range(1, 11):
            for name, ex in builder_testing.examples(builder, f"fold{k}").items():
                self.assertEqual((ex["fold"], ex["label"]), (k, int(name.split("-")[1])))
                path = audio_dir / f"fold{k}" / name
                info = sf.info(path)
                subtypes.add((info.subtype, info.channels, info.samplerate))
                builder_testing.assert_audio_matches(ex["audio"], path)
        # 24-bit stereo, 8-bit, float and 16-bit sources were all converted.
        self.assertGreaterEqual(len({s for s, _, _ in subtypes}), 4)
        # The 10 ms gun shot (160 samples at 16 kHz) is kept: official clips are never dropped.
        shot = builder_testing.examples(builder, "fold1")["7061-6-0-0.wav"]
        self.assertEqual(len(shot["audio"]), 160)
