"""`matpac-embed`: its output (checked first, atomic, named as written), inputs checked at the door,
and long files streamed with the embeddings of the whole-clip path.

Most cases call the command's `main` in this process (flags parsed as on the command line), so
that they take seconds; the kill during the write runs it as a subprocess.
"""

import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile as sf
from absl import app, flags

from matpac_keras.audio import AudioError, load_audio
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.cli import embed
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.errors import InputError

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_FRAMES = 64  # one chunk: 10_480 samples (0.655 s) at 16 kHz


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    keras.utils.set_random_seed(4)
    backbone = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=MAX_FRAMES)
    backbone.build(None)
    backbone.save(path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """Two short clips (one chunk: batched whole) and three long ones (streamed): 8 kHz int16,
    16 kHz float, 44.1 kHz stereo; 2.2 s to 4.1 s, i.e. 3 to 7 chunks."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    specs = [
        ("short_a.wav", 16000, 8000, 1, "FLOAT"),
        ("short_b.wav", 16000, 9000, 1, "FLOAT"),
        ("long_8k.wav", 8000, 17_600, 1, "PCM_16"),
        ("long_16k.wav", 16000, 65_600, 1, "FLOAT"),
        ("long_44k.wav", 44100, 120_000, 2, "FLOAT"),
    ]
    paths = []
    for name, rate, frames, channels, subtype in specs:
        paths.append(str(folder / name))
        sf.write(paths[-1], rng.uniform(-0.5, 0.5, (frames, channels)), rate, subtype=subtype)
    return paths


def _embed(*args: str) -> None:
    """Runs `matpac-embed ARGS` in this process, as its entry point parses them."""
    argv = flags.FLAGS(["matpac-embed", *args])
    try:
        embed.main(argv)
    finally:
        flags.FLAGS.unparse_flags()


def _truncated_wav(path: pathlib.Path) -> pathlib.Path:
    """The issue's file: its header declares 16,000 frames, 500 are present."""
    sf.write(path, np.zeros(16000, "float32"), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"data") + 8 + 1000])
    return path


@pytest.mark.parametrize("mode", ["precise", "fast"])
def test_streamed_and_batched_files_equal_the_whole_clip_path(model, clips, tmp_path, mode):
    output = tmp_path / "frames.npz"
    pooled = tmp_path / "pooled.npz"
    _embed(f"--model={model}", f"--output={output}", f"--mode={mode}", "--frames", "--layers",
           "--batch_size=2", *clips)  # fmt: skip
    _embed(f"--model={model}", f"--output={pooled}", f"--mode={mode}", "--layers", *clips)
    from matpac_keras.saving import load_backbone

    extractor = EmbeddingExtractor(load_backbone(model), mode=mode, layers=True)
    with np.load(output) as frames, np.load(pooled) as means:
        assert list(frames["files"]) == clips == list(means["files"])
        for i, path in enumerate(clips):
            whole = extractor.embed_waveforms(load_audio(path)[None])  # today's in-memory path
            steps = frames["num_frames"][i]
            assert steps == whole.frames.shape[1]
            np.testing.assert_allclose(frames["embeddings"][i, :steps], whole.frames[0], atol=1e-5)
            assert not frames["embeddings"][i, steps:].any()  # zero-padded to the longest
            np.testing.assert_allclose(
                frames["layers"][i, :, :steps], whole.layer_frames[0], atol=1e-5
            )
            np.testing.assert_allclose(means["embeddings"][i], whole.embedding[0], atol=1e-5)
            np.testing.assert_allclose(means["layers"][i], whole.layers[0], atol=1e-5)
        assert frames["num_frames"].max() > 3 * MAX_FRAMES // 16  # long clips: several chunks


def test_temporal_support_flags(model, clips, tmp_path):
    """--temporal_support / --hop / --aggregate: short clips batched, long ones streamed, both
    equal to the extractor's windowed embedding of the whole clip; the values used are stored."""
    output = tmp_path / "ts.npz"
    _embed(f"--model={model}", f"--output={output}", "--temporal_support=0.5", "--hop=0.3",
           "--aggregate=mean+max", "--batch_size=2", *clips)  # fmt: skip
    from matpac_keras import embedding
    from matpac_keras.cli import window_flags
    from matpac_keras.saving import load_backbone

    assert window_flags.AGGREGATES == embedding.AGGREGATES  # the flag's choices
    extractor = EmbeddingExtractor(
        load_backbone(model), temporal_support=0.5, hop=0.3, aggregate="mean+max"
    )
    with np.load(output) as out:
        assert (float(out["temporal_support"]), float(out["hop"])) == (0.48, 0.32)
        assert out["embeddings"].shape == (len(clips), 320)
        for i, path in enumerate(clips):
            whole = extractor.embed_waveforms(load_audio(path)[None]).embedding[0]
            np.testing.assert_allclose(out["embeddings"][i], whole, atol=1e-5, err_msg=path)
    with pytest.raises(app.UsageError, match=r"--temporal_support must be from 0.16 s .* 0.64 s"):
        _embed(f"--model={model}", f"--output={tmp_path / 'a'}", "--temporal_support=1", *clips)
    with pytest.raises(app.UsageError, match=r"--hop must be from 0.16 s .*up to the temporal"):
        _embed(f"--model={model}", f"--output={tmp_path / 'a'}", "--temporal_support=0.32",
               "--hop=0.48", *clips)  # fmt: skip
    with pytest.raises(app.UsageError, match="--frames needs non-overlapping windows"):
        _embed(f"--model={model}", f"--output={tmp_path / 'a'}", "--temporal_support=0.32",
               "--hop=0.16", "--frames", *clips)  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["ts.npz"]


def test_output_named_as_written_and_refused_if_present(model, clips, tmp_path, capsys):
    _embed(f"--model={model}", f"--output={tmp_path / 'x'}", clips[0])
    assert f"wrote {tmp_path / 'x.npz'}: 1 clips, embeddings (1, 160)" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]
    before = (tmp_path / "x.npz").read_bytes()
    # Refused before any input is read: a missing audio file is not what the error names.
    with pytest.raises(InputError, match=r"--output .*x\.npz: already exists \(pass --overwrite"):
        _embed(f"--model={model}", f"--output={tmp_path / 'x'}", str(tmp_path / "missing.wav"))
    assert (tmp_path / "x.npz").read_bytes() == before
    _embed(f"--model={model}", f"--output={tmp_path / 'x.npz'}", "--overwrite", *clips[:2])
    with np.load(tmp_path / "x.npz") as out:
        assert out["embeddings"].shape == (2, 160)
    with pytest.raises(flags.IllegalFlagValueError, match="batch_size"):
        _embed(f"--model={model}", f"--output={tmp_path / 'y'}", "--batch_size=0", clips[0])


def test_failed_write_keeps_the_old_output(model, clips, tmp_path, monkeypatch):
    output = tmp_path / "emb.npz"
    output.write_bytes(b"the user's earlier embeddings")

    def fail_midway(file, **arrays):
        with open(file, "wb") as f:
            f.write(b"PK\x03\x04 half an archive")
        raise OSError("the disk went away")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(OSError, match="the disk went away"):
        _embed(f"--model={model}", f"--output={output}", "--overwrite", clips[0])
    assert output.read_bytes() == b"the user's earlier embeddings"
    assert os.listdir(tmp_path) == ["emb.npz"]  # no temporary left


def test_truncated_wav_is_refused_or_listed(model, clips, tmp_path):
    cut = str(_truncated_wav(tmp_path / "cut.wav"))
    message = "cut.wav: truncated: header declares 16000 frames, 500 present"
    with pytest.raises(AudioError, match=message):
        _embed(f"--model={model}", f"--output={tmp_path / 'a.npz'}", clips[2], cut)
    assert not (tmp_path / "a.npz").exists()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(os.urandom(3000))
    _embed(f"--model={model}", f"--output={tmp_path / 'b.npz'}", "--skip_errors",
           cut, clips[2], str(corrupt), clips[0])  # fmt: skip
    with np.load(tmp_path / "b.npz") as out:
        assert list(out["files"]) == [clips[2], clips[0]]
        assert list(out["skipped"]) == [cut, str(corrupt)]
        assert message in out["errors"][0] and "corrupt.wav" in out["errors"][1]
    with pytest.raises(InputError, match="no readable audio among the 1 files"):
        _embed(f"--model={model}", f"--output={tmp_path / 'c.npz'}", "--skip_errors", cut)


def test_bad_model_files_are_named(clips, tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(b"PK\x03\x04" + os.urandom(500))
    with pytest.raises(InputError, match=r"cut\.keras: corrupt or truncated \.keras file"):
        _embed(f"--model={cut}", f"--output={tmp_path / 'x.npz'}", clips[0])
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(plain)
    with pytest.raises(InputError, match=r"plain\.keras: holds a Sequential .*not a MATPAC"):
        _embed(f"--model={plain}", f"--output={tmp_path / 'x.npz'}", clips[0])


KILLED_WRITE = """
import os, signal, sys
import numpy as np

def write_half_then_die(file, **arrays):
    with open(file, "wb") as f:
        f.write(b"PK\\x03\\x04 half an archive")  # as a kill during the write leaves it
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = write_half_then_die
from matpac_keras.cli import embed

sys.argv = ["matpac-embed", *sys.argv[1:]]
embed.run()
"""


def test_kill_during_the_write_keeps_the_old_output(model, clips, tmp_path):
    output = tmp_path / "emb.npz"
    np.savez(output, embeddings=np.ones((1, 3)))  # the user's earlier output
    before = output.read_bytes()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, f"--model={model}", f"--output={output}"]
        + ["--overwrite", clips[0]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert output.read_bytes() == before
    with np.load(output) as out:
        np.testing.assert_array_equal(out["embeddings"], np.ones((1, 3)))
    left = [name for name in os.listdir(tmp_path) if name != "emb.npz"]
    assert len(left) == 1 and left[0].startswith(".tmp-emb.npz."), left  # the hidden partial
