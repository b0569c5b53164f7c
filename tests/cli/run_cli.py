"""Runs a matpac-keras command as a user does: its module in a new Python process."""

import json
import os
import pathlib
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


_PEAK_OF = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": done.returncode, "peak": peak, "out": done.stdout, "err": done.stderr}))
"""


def peak_rss(command: list[str], timeout: float = 900, ok: bool = True) -> tuple[int, str]:
    """Runs `command` (TensorFlow backend, quiet) under a wrapper process that reports its peak
    RSS (`RUSAGE_CHILDREN`); asserts it succeeded (or, with `ok=False`, failed). Returns (peak
    bytes, its stdout; with `ok=False` its stderr)."""
    wrapper = subprocess.run(
        [sys.executable, "-c", _PEAK_OF, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
        timeout=timeout,
    )
    result = json.loads(wrapper.stdout)
    assert (result["rc"] == 0) == ok, result["err"][-3000:]
    return result["peak"], result["out"] if ok else result["err"]


def save_tiny_backbone(path: pathlib.Path, seed: int, **sizes) -> pathlib.Path:
    """Saves a small random MatpacBackbone (D=32, 2 heads; `sizes` override depth, max_frames,
    ...) to the `.keras` file `path`, for commands to load."""
    import keras

    from matpac_keras.backbone import MatpacBackbone

    keras.utils.set_random_seed(seed)
    backbone = MatpacBackbone(**{"embed_dim": 32, "depth": 1, "num_heads": 2, **sizes})
    backbone.build(None)
    backbone.save(path)
    return path


NO_KERAS = """
import sys

# What a cached encoder export must run without: importing any of these fails.
for name in ("tensorflow", "keras", "keras_hub", "jax", "torch", "tf2onnx"):
    sys.modules[name] = None
"""


def no_keras_env(folder: pathlib.Path) -> dict[str, str]:
    """Environment for `run_cli` in which TensorFlow, Keras, keras-hub, JAX and torch cannot be
    imported (a `sitecustomize.py` written into `folder`, first on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(NO_KERAS)
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
