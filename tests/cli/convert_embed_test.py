"""`matpac-convert` then `matpac-embed` on the official fixture checkpoints, as a user runs them."""

import os

import numpy as np
import pytest
import soundfile

from tests.cli.run_cli import run_cli as _run
from tests.conftest import relative_error

pytestmark = pytest.mark.single_backend


@pytest.fixture(scope="module")
def clips(tmp_path_factory, fixture_arrays):
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i, waveform in enumerate(fixture_arrays("embed")["waveform"]):
        paths.append(str(folder / f"clip{i}.wav"))
        soundfile.write(paths[-1], waveform, 16000, subtype="FLOAT")
    return paths


@pytest.mark.parametrize(
    "checkpoint, output", [("encoder_only.pt", "preset"), ("train_full.pt", "model.keras")]
)
def test_convert_then_embed_reproduces_official(
    tmp_path, fixtures_dir, fixture_arrays, clips, checkpoint, output
):
    model = str(tmp_path / output)  # a preset directory, or a .keras file
    _run(
        "convert",
        f"--checkpoint={fixtures_dir / checkpoint}",
        f"--output={model}",
        "--num_heads=4",
        "--predictor_num_heads=4",
    )
    expected = fixture_arrays("embed")
    pooled, frames = str(tmp_path / "pooled.npz"), str(tmp_path / "frames.npz")
    _run("embed", f"--model={model}", f"--output={pooled}", "--layers", *clips)
    _run(
        "embed",
        f"--model={model}",
        f"--output={frames}",
        "--mode=fast",
        "--frames",
        "--layers",
        "--official_frame_order",
        *clips,
    )
    with np.load(pooled) as out:
        assert list(out["files"]) == clips
        assert relative_error(out["embeddings"], expected["precise_pooled/emb"]) < 1e-4
        assert relative_error(out["layers"], expected["precise_pooled/layers"]) < 1e-4
    with np.load(frames) as out:
        assert relative_error(out["embeddings"], expected["fast_frames/emb"]) < 1e-4
        assert relative_error(out["layers"], expected["fast_frames/layers"]) < 1e-4
        assert list(out["num_frames"]) == [16, 16]


def test_bad_files_are_named_or_skipped(tmp_path, fixtures_dir, clips):
    model = str(tmp_path / "model.keras")
    _run(
        "convert",
        f"--checkpoint={fixtures_dir / 'encoder_only.pt'}",
        f"--output={model}",
        "--num_heads=4",
    )
    corrupt, short = tmp_path / "corrupt.wav", tmp_path / "short.wav"
    corrupt.write_bytes(os.urandom(2000))
    soundfile.write(short, np.zeros(100, "float32"), 16000)
    failed = _run(
        "embed",
        f"--model={model}",
        f"--output={tmp_path / 'x.npz'}",
        clips[0],
        str(corrupt),
        ok=False,
    )
    assert "corrupt.wav" in failed.stderr
    out_path = tmp_path / "skipped.npz"
    _run(
        "embed",
        f"--model={model}",
        f"--output={out_path}",
        "--skip_errors",
        clips[0],
        str(corrupt),
        str(short),
    )
    with np.load(out_path) as out:
        assert list(out["files"]) == [clips[0]]
        assert sorted(out["skipped"]) == sorted([str(corrupt), str(short)])
        assert any("too short" in e for e in out["errors"])


def test_mismatching_checkpoint_names_tensor(tmp_path, fixture_arrays):
    state = fixture_arrays("encoder_only")
    state["student_encoder.blocks.0.attn.qkv.bias"] = np.zeros(100, "float32")
    path = tmp_path / "broken.npz"
    np.savez(path, **state)
    failed = _run("convert", f"--checkpoint={path}", f"--output={tmp_path / 'b.keras'}", ok=False)
    assert "student_encoder.blocks.0.attn.qkv.bias" in failed.stderr
    assert not (tmp_path / "b.keras").exists()


def test_convert_names_the_output_written_and_replaces_only_when_asked(tmp_path, fixtures_dir):
    encoder, training = fixtures_dir / "encoder_only.pt", fixtures_dir / "train_full.pt"
    preset, model = tmp_path / "m", tmp_path / "m.keras"
    first = _run("convert", f"--checkpoint={encoder}", f"--output={preset}")
    assert first.stdout.strip() == f"wrote {preset} (preset of the MatpacBackbone)"
    files = ["audio_converter.json", "config.json", "metadata.json", "model.weights.h5"]
    assert sorted(os.listdir(preset)) == files
    refused = _run("convert", f"--checkpoint={training}", f"--output={preset}", ok=False)
    assert refused.stderr.strip() == (
        f"Error: --output {preset}: already exists and is not empty (pass --overwrite to "
        "replace it)"
    )
    _run("convert", f"--checkpoint={encoder}", f"--output={model}")
    before = model.read_bytes()
    refused = _run("convert", f"--checkpoint={training}", f"--output={model}", ok=False)
    assert refused.stderr.strip() == (
        f"Error: --output {model}: already exists (pass --overwrite to replace it)"
    )
    assert model.read_bytes() == before
    replaced = _run("convert", f"--checkpoint={training}", f"--output={model}", "--overwrite")
    assert replaced.stdout.strip() == f"wrote {model} (MatpacPretrainer)"
    replaced = _run("convert", f"--checkpoint={training}", f"--output={preset}/", "--overwrite")
    assert replaced.stdout.strip() == f"wrote {preset} (preset of the MatpacBackbone)"
    assert sorted(os.listdir(tmp_path)) == ["m", "m.keras"]  # no temporary left
    assert sorted(os.listdir(preset)) == files
