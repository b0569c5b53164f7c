"""Faults end cleanly (issue 25, item 6): a full disk while `matpac-convert`, `matpac-export` or
`matpac-embed` writes ends with one `Error:` line and exit status 1, nothing half-written; a
truncated cached runtime export is detected by its checksum and exported again.
"""

import errno
import os
import subprocess

import keras
import numpy as np
import pytest
import soundfile as sf

from matpac_keras import encoder_runtime
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.cli.entry import error_line, is_user_error
from matpac_keras.outputs import OutputError, atomic_output
from tests.cli.run_cli import run_cli, save_tiny_backbone

pytestmark = pytest.mark.single_backend

H5PY_FULL = (
    "Can't synchronously write data (file write failed: time = Tue Dec 8 00:10:59 2026 , "
    "filename = 'x/model.weights.h5', file descriptor = 3, errno = 28, error message = 'No "
    "space left on device', buf = 0x55d31fadd340, total write size = 243264)"
)


def _tf_full():
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(
        None, None, "/x/variables/part-00000-of-00001.data; No space left on device"
    )


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        lambda: OSError(H5PY_FULL),  # h5py: no errno, the reason in the text
        lambda: RuntimeError(f"Can't decrement id ref count ({H5PY_FULL})"),
        _tf_full,  # TensorFlow's SavedModel writer
    ],
    ids=["oserror", "h5py", "h5py-runtime", "tensorflow"],
)
def test_a_writer_failing_on_a_full_disk_is_one_output_error(tmp_path, make_error):
    target = tmp_path / "out.keras"
    with pytest.raises(OutputError) as raised:
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"partial")
            raise make_error()
    assert str(raised.value) == f"{target}: cannot write it: No space left on device"
    assert is_user_error(raised.value)
    assert error_line(raised.value) == f"Error: {target}: cannot write it: No space left on device"
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary left


def test_an_out_of_memory_error_stays_a_bug(tmp_path):
    import tensorflow as tf

    error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    with pytest.raises(tf.errors.ResourceExhaustedError):
        with atomic_output(tmp_path / "out.npz") as temporary:
            temporary.write_bytes(b"partial")
            raise error
    assert not is_user_error(error)


def _small_tmpfs(folder, size: str):
    """Mounts a tmpfs of `size` at `folder` (root only); a real full disk."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    return folder


@pytest.fixture
def full_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root (mount -t tmpfs); the unit tests cover it")
    folder = _small_tmpfs(tmp_path / "small", "1200k")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _one_line(result):
    """The `Error:` line ending a failed command's stderr (before it: logs and progress bars,
    never a traceback, a library's "Exception ignored" or a crash)."""
    assert result.returncode == 1, result.stderr[-2000:]
    for noise in ("Traceback", "Exception ignored", "Fatal Python error", "terminate called"):
        assert noise not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error:")] == lines[-1:], lines
    return lines[-1]


def test_convert_and_export_to_a_full_disk_end_in_one_line(fixtures_dir, tmp_path, full_disk):
    checkpoint = fixtures_dir / "encoder_only.pt"
    for output in (full_disk / "preset", full_disk / "model.keras"):
        result = run_cli(
            "convert", f"--checkpoint={checkpoint}", "--num_heads=4", f"--output={output}", ok=False
        )
        assert _one_line(result) == f"Error: {output}: cannot write it: No space left on device"
        assert list(full_disk.iterdir()) == []
    model = tmp_path / "model.keras"
    run_cli("convert", f"--checkpoint={checkpoint}", "--num_heads=4", f"--output={model}")
    output = full_disk / "saved_model"
    result = run_cli("export", f"--model={model}", f"--output={output}", ok=False)
    assert _one_line(result) == f"Error: {output}: cannot write it: No space left on device"
    assert list(full_disk.iterdir()) == []


def test_embed_to_a_full_disk_ends_in_one_line(tmp_path, full_disk):
    model = save_tiny_backbone(tmp_path / "tiny.keras", 3, max_frames=64)
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        sf.write(clips / f"{i}.wav", np.zeros(16000 * 20, "int16"), 16000)
    (full_disk / "filler").write_bytes(b"\0" * (1200 * 1024 - 64 * 1024))
    for output in (full_disk / "emb.npz", f"{full_disk}/shards/"):
        args = [f"--model={model}", f"--output={output}", "--frames", str(clips)]
        result = run_cli("embed", *args, ok=False)
        line = _one_line(result)
        assert line.startswith(f"Error: {str(output).rstrip('/')}") and line.endswith(
            "No space left on device"
        ), line


def test_truncated_cached_onnx_export_is_rebuilt(tmp_path, caplog):
    keras.utils.set_random_seed(3)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    windows = np.random.default_rng(0).normal(size=(2, 80, 48)).astype("float32")
    first = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=tmp_path)
    expected = first(windows)
    path = first.path
    del first
    with open(path, "r+b") as file:  # a disk that filled up, or a killed copy
        file.truncate(os.path.getsize(path) // 2)
    again = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=tmp_path)
    np.testing.assert_array_equal(again(windows), expected)
    assert "encoder.onnx does not match its checksum (truncated or changed)" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.path.basename(os.path.dirname(path))]
