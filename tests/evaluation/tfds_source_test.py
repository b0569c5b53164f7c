"""Reading a task's TFDS split in batches: bounded by clip count and by total samples."""

import pathlib

import numpy as np
import pytest

from matpac_keras.evaluation import tfds_source
from matpac_keras.evaluation.tasks import get_task

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_batches_are_bounded_by_samples_and_keep_every_clip_in_order(tmp_path):
    task = get_task("spoken_digit")
    manual = ROOT / "matpac_datasets" / "spoken_digit" / "dummy_data"
    builder = tfds_source.prepared_builder(task, str(tmp_path), str(manual))
    whole = list(tfds_source.clip_batches(builder, "train", task))
    assert len(whole) == 1  # the dummy split is one batch of 256
    clips = whole[0].waveforms
    limit = 2 * max(len(c) for c in clips)
    bounded = list(tfds_source.clip_batches(builder, "train", task, max_samples=limit))
    assert len(bounded) > 1
    for batch in bounded:  # each stops at the clip that reaches the limit
        sizes = [len(c) for c in batch.waveforms]
        assert sum(sizes[:-1]) < limit
    got = [c for batch in bounded for c in batch.waveforms]
    assert len(got) == len(clips)
    for a, b in zip(got, clips, strict=True):
        np.testing.assert_array_equal(a, b)
    labels = np.concatenate([batch.labels for batch in bounded])
    np.testing.assert_array_equal(labels, whole[0].labels)
