"""Issue 25, item 7's messages: each case the sweep saw as a traceback or a wall of warnings is
now one line naming its cause (or silent).

- `python -m matpac_keras.beam ... -- --runner=NoSuchRunner`: Beam's ValueError traceback.
- `matpac-evaluate` on a manual_dir without the test split's clips: TFDS's
  `AssertionError: ... No examples were yielded`.
- `matpac-evaluate`'s probe runs: TensorFlow's "triggered tf.function retracing" warnings.
"""

import logging
import os
import pathlib
import subprocess
import sys
import wave

import keras
import numpy as np
import pytest

from matpac_keras.errors import InputError

pytestmark = pytest.mark.single_backend

REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_wav(path: pathlib.Path, seconds: float = 0.5, seed: int = 0) -> pathlib.Path:
    samples = np.random.default_rng(seed).integers(-3000, 3000, int(16000 * seconds))
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.astype("<i2").tobytes())
    return path


def test_beam_with_an_unknown_runner_is_one_line_before_any_work(tmp_path):
    clip = _write_wav(tmp_path / "a.wav")
    output = tmp_path / "embeddings"
    result = subprocess.run(
        [sys.executable, "-m", "matpac_keras.beam", "--model", str(tmp_path / "none.keras")]
        + ["--output", str(output), str(clip), "--", "--runner=NoSuchRunner"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: --runner=NoSuchRunner: Unexpected pipeline runner: NoSuchRunner."
    )
    assert not output.exists()  # refused before the model (missing here) or the outputs


def test_a_manual_dir_without_test_clips_names_the_folder_and_split(tmp_path):
    from matpac_keras.evaluation import tasks, tfds_source

    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for i, name in enumerate(["1_ann_5", "2_ann_6", "3_bob_7"]):  # repetitions 5+: train only
        _write_wav(recordings / f"{name}.wav", seed=i)
    with pytest.raises(InputError) as raised:
        tfds_source.prepared_builder(
            tasks.get_task("spoken_digit"), os.fspath(tmp_path / "tfds"), os.fspath(recordings)
        )
    assert str(raised.value) == (
        f'manual_dir {recordings}: spoken_digit: Failed to finalize writing of split "test": No '
        "examples were yielded. (no clips of that split in the folder; see the builder's "
        "MANUAL_DOWNLOAD_INSTRUCTIONS)"
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's tf.function")
def test_probe_runs_print_no_retracing_warnings(caplog):
    from matpac_keras.evaluation.probe import PRESETS, ProbeData, predict, train_probe

    rng = np.random.default_rng(0)
    train = ProbeData(rng.normal(size=(10, 4)), rng.integers(0, 3, 10))  # batches of 4, 4, 2
    valid = ProbeData(rng.normal(size=(6, 4)), rng.integers(0, 3, 6))
    config = PRESETS["paper"].__class__(batch_size=4, max_epochs=2)
    with caplog.at_level(logging.WARNING):
        for seed in range(6):  # a new probe per run, as the protocol's runs
            model, _ = train_probe(train, valid, 3, config, seed)
            predict(model, valid.x)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
