"""`matpac-embed` at scale: memory bounded by the batch, sharded output, kill and resume.

Subprocesses, as a user runs the command (`python -m matpac_keras.cli.embed`), with a tiny
model. A wrapper process reports a command's peak RSS (`RUSAGE_CHILDREN`).
"""

import csv
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import soundfile as sf

from matpac_keras.audio import load_audio
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.embedding_shards import read_shards
from tests.cli.run_cli import peak_rss, run_cli, save_tiny_backbone

pytestmark = pytest.mark.single_backend

RATE = 16000


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    return save_tiny_backbone(tmp_path_factory.mktemp("model") / "tiny.keras", 3, max_frames=256)


def _write_clips(folder: pathlib.Path, count: int, seconds: float = 10.0, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        noise = rng.standard_normal(int(seconds * RATE)) * 3000
        sf.write(folder / f"{i:04d}.wav", noise.astype(np.int16), RATE, subtype="PCM_16")
    return folder


def _command(model, output, *inputs, extra=()):
    return [
        sys.executable,
        "-m",
        "matpac_keras.cli.embed",
        f"--model={model}",
        f"--output={output}",
        *extra,
        *map(str, inputs),
    ]


def _peak_rss(command) -> int:
    return peak_rss(command)[0]


@pytest.mark.slow
def test_peak_memory_of_1000_ten_second_files_within_1_3x_of_100(model, tmp_path):
    many = _write_clips(tmp_path / "many", 1000)
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(many.iterdir())[:100]:
        os.link(path, few / path.name)
    small = _peak_rss(_command(model, tmp_path / "few.npz", few))
    large = _peak_rss(_command(model, tmp_path / "many.npz", many))
    sharded = _peak_rss(_command(model, f"{tmp_path}/shards/", many, extra=["--shard_size=250"]))
    mib = 2**20
    assert large < 1.3 * small, f"1000 files {large / mib:.0f} MiB, 100: {small / mib:.0f} MiB"
    assert sharded < 1.3 * small, f"sharded {sharded / mib:.0f} MiB, 100: {small / mib:.0f} MiB"
    with np.load(tmp_path / "many.npz") as out:
        assert out["embeddings"].shape == (1000, 160)
        np.testing.assert_allclose(
            read_shards(tmp_path / "shards")["embeddings"], out["embeddings"], atol=1e-6
        )  # batches end at shard ends: the same numbers up to float32 rounding


def test_shards_hold_what_the_npz_holds_frames_unpadded(model, tmp_path):
    """Short and long (streamed) clips, one unreadable file, --frames --layers: the shards'
    arrays equal the .npz's (whose frames are padded) and the extractor's own."""
    folder = _write_clips(tmp_path / "clips", 5, seconds=1.0)
    sf.write(folder / "long.wav", np.random.default_rng(1).uniform(-0.5, 0.5, 3 * RATE), RATE)
    (folder / "broken.wav").write_bytes(b"RIFF nothing")
    flags = ["--frames", "--layers", "--skip_errors", "--batch_size=2"]
    run_cli("embed", *_command(model, tmp_path / "one.npz", folder, extra=flags)[3:])
    result = run_cli(
        "embed", *_command(model, f"{tmp_path}/out/", folder, extra=[*flags, "--shard_size=3"])[3:]
    )
    assert "3 shards of up to 3 files, 6 clips" in result.stdout and "1 skipped" in result.stdout
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["index.csv", "manifest.json"] + [
        f"shard-0000{k}-of-00003.npz" for k in range(3)
    ]
    shards = read_shards(tmp_path / "out")
    with np.load(tmp_path / "one.npz") as one:
        assert list(shards["files"]) == list(one["files"])
        assert list(shards["skipped"]) == list(one["skipped"])
        offsets = shards["frame_offsets"]
        np.testing.assert_array_equal(np.diff(offsets), one["num_frames"])
        for row, length in enumerate(one["num_frames"]):
            clip = shards["frames"][offsets[row] : offsets[row + 1]]
            np.testing.assert_allclose(clip, one["embeddings"][row, :length], atol=1e-6)
            layer_clip = shards["layer_frames"][:, offsets[row] : offsets[row + 1]]
            np.testing.assert_allclose(layer_clip, one["layers"][row, :, :length], atol=1e-6)
    backbone = keras.saving.load_model(model)
    extractor = EmbeddingExtractor(backbone, layers=True)
    for row, path in enumerate(shards["files"]):
        alone = extractor.embed_waveforms(load_audio(path)[None])
        np.testing.assert_allclose(shards["embeddings"][row], alone.embedding[0], atol=1e-5)
        np.testing.assert_allclose(shards["layers"][row], alone.layers[0], atol=1e-5)
    with open(tmp_path / "out" / "index.csv", newline="") as index:
        rows = list(csv.DictReader(index))
    assert [row["file"] for row in rows] == sorted(str(p) for p in folder.iterdir())
    assert [row["file"] for row in rows if row["error"]] == [str(folder / "broken.wav")]


def test_killed_run_resumes_to_the_same_shards(model, tmp_path):
    folder = _write_clips(tmp_path / "clips", 240)
    flags = ["--shard_size=30", "--batch_size=8"]
    run_cli("embed", *_command(model, f"{tmp_path}/whole/", folder, extra=flags)[3:])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = tmp_path / "killed"
    process = subprocess.Popen(
        _command(model, f"{output}/", folder, extra=flags),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(output.glob("shard-*.npz")) and process.poll() is None:
        assert time.monotonic() < deadline, "no shard was written in 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(p.name for p in output.glob("shard-*.npz"))
    assert 1 <= len(done) < 8, f"the kill came too late to test a resume: {done}"
    assert not (output / "index.csv").exists()
    result = run_cli("embed", *_command(model, f"{output}/", folder, extra=flags)[3:])
    assert f"resuming: {len(done)} of 8 shards already done" in result.stdout
    assert sorted(p.name for p in output.iterdir()) == sorted(
        p.name for p in (tmp_path / "whole").iterdir()
    )  # no temporaries left
    for name in [p.name for p in (tmp_path / "whole").glob("shard-*.npz")]:
        with np.load(tmp_path / "whole" / name) as a, np.load(output / name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    assert (output / "index.csv").read_text() == (tmp_path / "whole" / "index.csv").read_text()
    other = run_cli(
        "embed",
        *_command(model, f"{output}/", folder, extra=["--shard_size=30", "--mode=fast"])[3:],
        ok=False,
    )
    assert "holds another job's shards (differs in mode ('precise' there, 'fast' now))" in (
        other.stderr
    )
