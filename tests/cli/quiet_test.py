"""The CLIs keep TensorFlow's C++ start-up lines off stderr unless --verbosity asks for them."""

import os
import subprocess
import sys

import pytest

from matpac_keras.cli.quiet import asks_for_verbosity

pytestmark = pytest.mark.single_backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_UP = ("absl::InitializeLog", "cpu_feature_guard", "cudart_stub", "cuInit")


def _export(tmp_path, *flags):
    """matpac-export of a corrupt model: fails after importing TensorFlow, reading the model."""
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's
    return subprocess.run(
        [sys.executable, "-m", "matpac_keras.cli.export", f"--model={tmp_path / 'broken.keras'}"]
        + [f"--output={tmp_path / 'out'}", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


def test_tensorflow_start_up_lines_only_with_verbosity(tmp_path):
    pytest.importorskip("tensorflow")
    quiet = _export(tmp_path)  # imports TensorFlow, then fails on the corrupt model
    assert quiet.returncode == 1
    [line] = quiet.stderr.strip().splitlines()  # the error alone
    assert line.startswith("Error: ") and "broken.keras: corrupt or truncated .keras file" in line
    assert not any(marker in quiet.stderr for marker in START_UP), quiet.stderr
    verbose = _export(tmp_path, "--verbosity=1")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert any(marker in verbose.stderr for marker in START_UP), verbose.stderr[-3000:]


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], False),
        (["--verbosity=1"], True),
        (["--verbosity", "2"], True),
        (["-v=0"], False),
        (["--verbosity=-1"], False),
        (["--model=m", "-v", "1"], True),
        (["--verbosity=loud"], False),
    ],
)
def test_verbosity_read_before_the_flags_are_parsed(argv, expected):
    assert asks_for_verbosity(argv) is expected
