"""`matpac-embed --runtime=openvino [--precision=bfloat16]`: the encoder exported once
(cached by its weights), run outside Keras, gives Keras's embeddings (float32: within 1e-5;
OpenVINO bfloat16: within 3e-2 relative, faster only on CPUs with bf16 instructions)."""

import pathlib

import numpy as np
import pytest
import soundfile as sf

from tests.cli.run_cli import no_keras_env, run_cli, save_tiny_backbone

pytestmark = pytest.mark.single_backend


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    return save_tiny_backbone(path, seed=5, depth=2, max_frames=96)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(2)
    for i, seconds in enumerate([0.5, 1.3, 4.0]):  # one window, two, several (streamed)
        sf.write(folder / f"{i}.wav", rng.uniform(-0.5, 0.5, int(seconds * 16000)), 16000)
    return folder


def _embed(model, clips, output, *flags, **env):
    run_cli("embed", f"--model={model}", f"--output={output}", "--batch_size=2", *flags,
            str(clips), **env)  # fmt: skip
    with np.load(output) as out:
        return out["embeddings"]


def test_openvino_equals_keras(model, clips, tmp_path):
    cache = {"MATPAC_ENCODER_CACHE": str(tmp_path / "cache")}
    keras_out = _embed(model, clips, tmp_path / "keras.npz")
    scale = np.abs(keras_out).max()
    # (ONNX Runtime, the same code path with a slower export, is checked against Keras in
    # tests/encoder_runtime_test.py)
    out = _embed(model, clips, tmp_path / "openvino.npz", "--runtime=openvino", **cache)
    np.testing.assert_allclose(out, keras_out, atol=1e-5 * scale)
    exports = [p for p in (tmp_path / "cache").iterdir() if p.name != "keys"]
    assert len(exports) == 1  # the export, kept for the next run
    bf16 = _embed(model, clips, tmp_path / "bf16.npz", "--runtime=openvino",
                  "--precision=bfloat16", **cache)  # fmt: skip
    relative = np.abs(bf16 - keras_out).max() / scale
    assert relative < 3e-2, relative


def test_bfloat16_needs_openvino(model, clips, tmp_path):
    result = run_cli("embed", f"--model={model}", f"--output={tmp_path / 'x.npz'}",
                     "--precision=bfloat16", str(clips), ok=False)  # fmt: skip
    assert "--precision=bfloat16 needs --runtime=openvino" in result.stderr


def test_cached_export_runs_without_tensorflow_or_keras(model, clips, tmp_path):
    """With the export cached (first run), a process in which TensorFlow, Keras, JAX and torch
    cannot be imported embeds the files, as the Keras path does (the log-mel in NumPy)."""
    cache = {"MATPAC_ENCODER_CACHE": str(tmp_path / "cache")}
    keras_out = _embed(model, clips, tmp_path / "keras.npz")
    first = _embed(model, clips, tmp_path / "first.npz", "--runtime=onnx", **cache)  # exports
    no_keras = no_keras_env(tmp_path / "shim")
    out = _embed(model, clips, tmp_path / "none.npz", "--runtime=onnx", **no_keras, **cache)
    np.testing.assert_allclose(out, keras_out, atol=1e-5 * np.abs(keras_out).max())
    np.testing.assert_array_equal(out, first)
    # The shim works: without a cached export, the model must be built, and cannot be.
    other = tmp_path / "other.keras"
    save_tiny_backbone(other, seed=6, depth=1, max_frames=96)
    result = run_cli("embed", f"--model={other}", f"--output={tmp_path / 'x.npz'}",
                     "--runtime=onnx", str(clips), ok=False, **no_keras, **cache)  # fmt: skip
    assert "keras" in result.stderr.lower()
