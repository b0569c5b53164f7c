"""Runs a matpac-keras command as a user does: its module in a new Python process."""

import os
import subprocess
import sys


def run_cli(module: str, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`python -m matpac_keras.cli.<module> ARGS`, quiet; asserts it succeeded (or, with
    `ok=False`, failed), showing the end of its stderr otherwise."""
    result = subprocess.run(
        [sys.executable, "-m", f"matpac_keras.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
    )
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result
