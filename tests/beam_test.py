"""`matpac_keras.beam`: the Beam pipeline (DirectRunner, tiny model) writes the shards of a
direct computation with the extractor (and of `matpac-embed --output DIR/` where it exists),
resumes a job with a shard deleted, and reports unreadable files as `matpac-embed` does."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile as sf

from matpac_keras import beam
from matpac_keras.audio import AudioError, load_audio, stream_audio
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.embedding_shards import read_shards
from matpac_keras.file_embeddings import most_whole_frames
from matpac_keras.saving import load_backbone

pytestmark = pytest.mark.single_backend

MAX_FRAMES = 64  # one chunk: 10_480 samples (0.655 s) at 16 kHz
SHARD_SIZE = 2
DIRECT = ["--runner=DirectRunner"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    keras.utils.set_random_seed(4)
    backbone = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=MAX_FRAMES)
    backbone.build(None)
    backbone.save(path)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """Whole clips (16 kHz float, 8 kHz int16, 44.1 kHz stereo of 2 windows; two of one
    length, so they share a batch), an unreadable file and one of 2.5 s (4 windows, more than
    the batch of 2: streamed)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    specs = [
        ("a.wav", 16000, 8000, 1, "FLOAT"),
        ("b.wav", 8000, 4500, 1, "PCM_16"),
        ("c.wav", 16000, 8000, 1, "FLOAT"),
        ("e.wav", 44100, 50_000, 2, "FLOAT"),
        ("f_long.wav", 16000, 40_000, 1, "FLOAT"),
    ]
    for name, rate, frames, channels, subtype in specs:
        sf.write(folder / name, rng.uniform(-0.5, 0.5, (frames, channels)), rate, subtype=subtype)
    (folder / "d_corrupt.wav").write_bytes(b"RIFF" + os.urandom(3000))
    return sorted(str(path) for path in folder.iterdir())


def _expected(model: str, paths: list[str]) -> dict:
    """Each readable file embedded directly: whole clips with `embed_clips`, the long one
    streamed with `embed_stream` (frames and layers kept)."""
    extractor = EmbeddingExtractor(load_backbone(model), layers=True)
    out = {}
    for path in paths:
        if "corrupt" in path:
            continue
        if "long" in path:
            out[path] = extractor.embed_stream(stream_audio(path), frames=True)
        else:
            out[path] = extractor.embed_clips([load_audio(path)])[0]
    return out


def _shard_files(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.npz"))}


def _assert_same_shards(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in ("files", "input_index", "skipped", "errors", "frame_offsets"):
        if key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("embeddings", "layers", "frames", "layer_frames"):
        if key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=key)


@pytest.fixture(scope="module")
def beam_output(model, clips, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("beam") / "emb"
    shards = beam.embed_with_beam(model, clips, folder, shard_size=SHARD_SIZE,
                                  pipeline_options=DIRECT, frames=True, layers=True,
                                  batch_size=2, skip_errors=True)  # fmt: skip
    assert shards.count == 3 and not shards.pending()
    return folder


def test_shards_equal_the_direct_embeddings(model, clips, beam_output):
    got = read_shards(beam_output)
    expected = _expected(model, clips)
    readable = [p for p in clips if p in expected]
    assert list(got["files"]) == readable
    assert list(got["input_index"]) == [clips.index(p) for p in readable]
    assert list(got["skipped"]) == [p for p in clips if "corrupt" in p]
    assert "d_corrupt.wav: cannot read audio header" in got["errors"][0]
    offsets = got["frame_offsets"]
    for i, path in enumerate(readable):
        want = expected[path]
        np.testing.assert_allclose(got["embeddings"][i], want.embedding, atol=1e-5)
        np.testing.assert_allclose(got["layers"][i], want.layers, atol=1e-5)
        steps = slice(offsets[i], offsets[i + 1])
        np.testing.assert_allclose(got["frames"][steps], want.frames, atol=1e-5)
        np.testing.assert_allclose(got["layer_frames"][:, steps], want.layer_frames, atol=1e-5)
    assert offsets[-1] - offsets[-2] > 3 * MAX_FRAMES // 16  # the long file: several chunks
    index = (beam_output / "index.csv").read_text().splitlines()
    assert index[0] == "file,shard,row,error" and len(index) == len(clips) + 1
    assert index[4].startswith(f"{clips[3]},,,") and "cannot read audio header" in index[4]
    assert index[6] == f"{clips[5]},shard-00002-of-00003.npz,1,"


def test_rerun_rewrites_only_the_missing_shard(model, clips, beam_output, tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    for entry in beam_output.iterdir():
        (folder / entry.name).write_bytes(entry.read_bytes())
    before, index = _shard_files(folder), (folder / "index.csv").read_text()
    kept = {name: (folder / name).stat().st_mtime_ns for name in before}
    (folder / "shard-00001-of-00003.npz").unlink()
    (folder / "index.csv").unlink()
    beam.embed_with_beam(model, clips, folder, shard_size=SHARD_SIZE, pipeline_options=DIRECT,
                         frames=True, layers=True, batch_size=2, skip_errors=True)  # fmt: skip
    after = _shard_files(folder)
    assert sorted(after) == sorted(before)
    for name, mtime in kept.items():
        if name != "shard-00001-of-00003.npz":
            assert (folder / name).stat().st_mtime_ns == mtime, name  # not written again
    with np.load(folder / "shard-00001-of-00003.npz") as new:
        with np.load(beam_output / "shard-00001-of-00003.npz") as old:
            _assert_same_shards(dict(new), dict(old))
    assert (folder / "index.csv").read_text() == index
    # Another job's options in the same folder are refused, naming what differs.
    from matpac_keras.outputs import OutputError

    with pytest.raises(OutputError, match=r"holds another job's shards .*mode \('precise' there"):
        beam.embed_with_beam(model, clips, folder, shard_size=SHARD_SIZE, mode="fast",
                             pipeline_options=DIRECT, frames=True, layers=True)  # fmt: skip


def test_unreadable_file_fails_without_skip_errors(model, clips, tmp_path):
    with pytest.raises(AudioError, match=r"d_corrupt\.wav: cannot read audio header"):
        beam.embed_with_beam(model, clips[2:4], tmp_path / "emb", shard_size=SHARD_SIZE,
                             pipeline_options=DIRECT)  # fmt: skip
    assert sorted(os.listdir(tmp_path / "emb")) == ["manifest.json"]  # no shard: resumable


def test_equal_to_matpac_embed_sharded_output(model, clips, beam_output, tmp_path):
    from absl import flags

    from matpac_keras.cli import embed

    if "shard_size" not in flags.FLAGS:
        pytest.skip("matpac-embed has no --shard_size (sharded --output DIR/) yet")
    output = tmp_path / "emb"
    argv = flags.FLAGS(["matpac-embed", f"--model={model}", f"--output={output}/",
                        f"--shard_size={SHARD_SIZE}", "--frames", "--layers", "--batch_size=2",
                        "--skip_errors", *clips])  # fmt: skip
    try:
        embed.main(argv)
    finally:
        flags.FLAGS.unparse_flags()
    _assert_same_shards(read_shards(output), read_shards(beam_output))
    for name in ("index.csv", "manifest.json"):
        assert (output / name).read_text() == (beam_output / name).read_text(), name


def test_command_line(model, clips, tmp_path, capsys):
    """`python -m matpac_keras.beam`'s `main`: our flags, then Beam's after `--`; a folder."""
    folder = pathlib.Path(clips[0]).parent
    args = [f"--output={tmp_path / 'emb'}", "--shard_size=4", "--skip_errors", "--batch_size=2",
            str(folder), "--", "--runner=DirectRunner"]  # fmt: skip
    beam.main([f"--model={model}", *args])
    assert f"wrote {tmp_path / 'emb'}: 6 inputs in 2 shards" in capsys.readouterr().out
    index = (tmp_path / "emb" / "index.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in index[1:]] == clips
    with pytest.raises(SystemExit) as exit_status:
        beam.main([f"--model={tmp_path / 'missing.keras'}", *args])
    assert exit_status.value.code == 1
    assert capsys.readouterr().err.startswith("Error: no model file at")


def test_model_handler_batches_and_command_line_help(model):
    handler = beam.MatpacModelHandler("m.keras", {"batch_size": 8})
    assert handler.batch_elements_kwargs() == {"min_batch_size": 8, "max_batch_size": 8}
    for kwargs in [{"batch_size": 2}, {"mode": "fast", "temporal_support": 0.32, "hop": 0.16}]:
        extractor = EmbeddingExtractor(load_backbone(model), **kwargs)
        most = most_whole_frames(extractor)  # streamed above: more than batch_size windows
        assert len(extractor.windows(most)) <= extractor.batch_size
        assert len(extractor.windows(most + 1)) > extractor.batch_size
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = [sys.executable, "-m", "matpac_keras.beam", "--help"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--shard_size" in result.stdout and "--runner" in result.stdout
    # Without Apache Beam, the import names the extra to install.
    hide = "import sys; sys.modules['apache_beam'] = None; import matpac_keras.beam"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                            timeout=120, env=env)  # fmt: skip
    assert result.returncode == 1
    assert 'pip install "matpac-keras[beam]"' in result.stderr
