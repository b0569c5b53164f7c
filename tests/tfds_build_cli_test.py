"""TFDS's own CLI builds our datasets, as TFDS documents it:
`tfds build matpac_datasets/spoken_digit --manual_dir=... --data_dir=...` on the real FSDD."""

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.single_backend, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tfds_build_prepares_the_spoken_digit_builder(fsdd_recordings, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
    result = subprocess.run(
        [
            tfds_cli,
            "build",
            "matpac_datasets/spoken_digit",
            f"--manual_dir={fsdd_recordings.parent}",
            f"--data_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    builder = tfds.builder_from_directory(str(tmp_path / "matpac_spoken_digit" / "1.0.0"))
    splits = builder.info.splits
    assert (splits["train"].num_examples, splits["test"].num_examples) == (2700, 300)
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="test").take(1))))
    assert example["audio"].ndim == 1 and example["audio"].shape[0] > 0
