"""Shared pytest fixtures: the authors' ground truth and the models converted from it."""

import os
import pathlib
import subprocess

import numpy as np
import pytest

# The fixture model's attention heads (SPEC fixtures README): not readable from tensor shapes.
FIXTURE_HEADS = dict(num_heads=4, predictor_num_heads=4)
FIXTURE_STEP = 5
FIXTURE_TAU_STEPS = 10


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The authors' ground-truth fixtures: ../shared/fixtures from the repo, or $MATPAC_FIXTURES.

    Missing fixtures skip the parity tests on a user's machine but fail them in CI.
    """
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    path = pathlib.Path(os.environ.get("MATPAC_FIXTURES", default))
    if not path.is_dir():
        message = f"fixtures directory not found: {path} (set MATPAC_FIXTURES)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fsdd_dir(fixtures_dir) -> pathlib.Path:
    """The Free Spoken Digit Dataset recordings (8 kHz wav), beside the fixtures in shared/."""
    return fixtures_dir.parent / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def fsdd_recordings() -> pathlib.Path:
    """The FSDD recordings (3,000 8 kHz wav): ../shared/data/fsdd/recordings from the repo, or
    $MATPAC_FSDD. Missing, they skip the tests that need them, except under CI=true (fail)."""
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
    path = pathlib.Path(os.environ.get("MATPAC_FSDD", default / "recordings"))
    if not path.is_dir() or not any(path.glob("*.wav")):
        message = f"FSDD recordings not found: {path} (set MATPAC_FSDD)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fixture_arrays(fixtures_dir):
    """Loads `<name>.npz` from the fixtures as a dict of arrays."""

    def load(name: str) -> dict:
        with np.load(fixtures_dir / f"{name}.npz") as arrays:
            return {key: arrays[key] for key in arrays.files}

    return load


@pytest.fixture(scope="session")
def train_full_state(fixtures_dir) -> dict:
    from matpac_keras.torch_checkpoint import load_torch_checkpoint

    return load_torch_checkpoint(fixtures_dir / "train_full.pt")


@pytest.fixture(scope="session")
def encoder_only_state(fixtures_dir) -> dict:
    from matpac_keras.torch_checkpoint import load_torch_checkpoint

    return load_torch_checkpoint(fixtures_dir / "encoder_only.pt")


@pytest.fixture()
def fixture_pretrainer(train_full_state):
    """The official training model of the fixtures (MATPAC, step 5 schedules), freshly loaded."""
    from matpac_keras.convert import model_from_state_dict

    return model_from_state_dict(
        train_full_state, teacher_temperature=(0.04, 0.07, FIXTURE_TAU_STEPS), **FIXTURE_HEADS
    )


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference| (the fixtures README's "relative")."""
    reference = np.asarray(reference, dtype=np.float64)
    return float(
        np.abs(np.asarray(ours, dtype=np.float64) - reference).max() / np.abs(reference).max()
    )


@pytest.fixture()
def immutable_folder(tmp_path):
    """A folder in which no one, root included, can create a file (chattr +i)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    try:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("chattr is not installed")
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)
