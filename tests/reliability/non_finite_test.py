"""Non-finite results are never written (issue 25, item 4): a clip whose embedding or
probabilities hold NaN (a float WAV of 1e30 samples) stops `matpac-embed` and `matpac-tag` with
an error naming it, or with --skip_errors is listed as skipped with the reason; a checkpoint
with a NaN weight is refused by `matpac-convert`, naming the tensor.
"""

import re

import keras
import numpy as np
import pytest
import soundfile as sf
import torch

from matpac_keras.torch_checkpoint import load_torch_checkpoint
from tests.cli.run_cli import run_cli, save_tiny_backbone

pytestmark = pytest.mark.single_backend

RATE = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    sf.write(folder / "a_fine.wav", rng.uniform(-0.5, 0.5, RATE).astype("float32"), RATE)
    huge = np.full(RATE, 1e30, "float32")  # finite samples, but their power overflows
    sf.write(folder / "b_huge.wav", huge, RATE, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("model") / "tiny.keras", 3, max_frames=64)


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("Error: "), lines
    return lines[-1]


@pytest.mark.parametrize("sharded", [False, True])
def test_embed_refuses_or_skips_a_nan_embedding(model, clips, tmp_path, sharded):
    output = f"{tmp_path}/out/" if sharded else f"{tmp_path}/out.npz"
    huge = clips / "b_huge.wav"
    failed = run_cli("embed", f"--model={model}", f"--output={output}", str(clips), ok=False)
    assert _one_error_line(failed) == (
        f"Error: {huge}: its embedding holds NaN or infinite values (from extreme samples, e.g. "
        "a float file of 1e30, or from non-finite model weights); nothing of it is written"
    )
    assert not (tmp_path / "out.npz").exists()
    args = [f"--model={model}", f"--output={output}", "--skip_errors", "--overwrite"]
    done = run_cli("embed", *args, str(clips))
    assert "1 skipped" in done.stdout
    if sharded:
        from matpac_keras.embedding_shards import read_shards

        arrays = read_shards(tmp_path / "out")
    else:
        with np.load(tmp_path / "out.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
    assert list(arrays["files"]) == [str(clips / "a_fine.wav")]
    assert np.isfinite(arrays["embeddings"]).all()
    assert list(arrays["skipped"]) == [str(huge)]
    assert "its embedding holds NaN or infinite values" in str(arrays["errors"][0])


def test_tag_refuses_or_skips_nan_probabilities(fixtures_dir, clips, tmp_path):
    tagger = tmp_path / "tagger"
    checkpoint = fixtures_dir / "heads" / "as_enc_and_head.pt"
    run_cli("convert", f"--checkpoint={checkpoint}", "--num_heads=2", f"--output={tagger}")
    huge = clips / "b_huge.wav"
    failed = run_cli("tag", f"--model={tagger}", str(clips), ok=False)
    assert _one_error_line(failed).startswith(f"Error: {huge}: its embedding holds NaN")
    assert not re.search(r"\bnan\b", failed.stdout.lower())
    out = tmp_path / "tags.npz"
    done = run_cli("tag", f"--model={tagger}", "--skip_errors", f"--output={out}", str(clips))
    assert not re.search(r"\bnan\b", done.stdout.lower()) and "1 skipped" in done.stdout
    with np.load(out) as tags:
        assert list(tags["files"]) == [str(clips / "a_fine.wav")]
        assert np.isfinite(tags["probabilities"]).all()
        assert list(tags["skipped"]) == [str(huge)]


def test_convert_refuses_a_nan_weight(fixtures_dir, tmp_path):
    state = load_torch_checkpoint(fixtures_dir / "encoder_only.pt")
    key = next(k for k in sorted(state) if k.endswith("blocks.1.mlp.fc1.weight"))
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    tensors[key][0, 0] = float("nan")
    checkpoint = tmp_path / "nan.pt"
    torch.save(tensors, checkpoint)
    output = tmp_path / "out.keras"
    failed = run_cli(
        "convert", f"--checkpoint={checkpoint}", "--num_heads=4", f"--output={output}", ok=False
    )
    line = _one_error_line(failed)
    assert line.startswith(f"Error: --checkpoint {checkpoint}: tensor '{key}' (Keras weight ")
    assert line.endswith(
        "holds NaN or infinite values: a corrupt or diverged checkpoint; nothing written"
    )
    assert not output.exists()


def test_saved_model_refuses_to_answer_nan(tmp_path):
    import tensorflow as tf

    from matpac_keras.export import export_saved_model
    from matpac_keras.saving import load_backbone

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the SavedModel export runs under TensorFlow")
    backbone = load_backbone(save_tiny_backbone(tmp_path / "tiny.keras", 3, max_frames=64))
    export_saved_model(backbone, tmp_path / "saved")
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    fine = np.random.default_rng(0).uniform(-0.5, 0.5, (1, RATE)).astype("float32")
    assert np.isfinite(serve(waveform=tf.constant(fine))["embedding"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="embedding holds NaN or infinite"):
        serve(waveform=tf.constant(np.full((1, RATE), 1e30, "float32")))
