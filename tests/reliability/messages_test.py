"""Messages that name the cause in one line (issue 25, item 7, the embedding side): a fake
`.mp3`, a preset of another model, an exported encoder fed more frames than `max_frames`, and
a checkpoint whose head count is guessed.
"""

import json

import keras
import numpy as np
import pytest

from matpac_keras import encoder_runtime, saving
from matpac_keras.audio import AudioError, audio_info, load_audio
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from tests.cli.run_cli import run_cli, save_tiny_backbone

pytestmark = pytest.mark.single_backend


def test_a_fake_mp3_is_named_as_no_decodable_audio(tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_bytes(b"ID3 this is not audio at all" * 10)
    reason = (
        "not decodable audio: its content is in none of the formats soundfile reads "
        "(wav, flac, ogg, mp3...), whatever its name"
    )
    with pytest.raises(AudioError) as header:
        audio_info(fake)
    assert str(header.value) == f"{fake}: cannot read audio header: {reason}"
    with pytest.raises(AudioError) as decode:
        load_audio(fake)
    assert str(decode.value) == f"{fake}: cannot decode audio: {reason}"
    with pytest.raises(AudioError, match="file not found"):  # a missing one stays so
        audio_info(tmp_path / "missing.mp3")


def test_embed_names_the_fake_mp3(tmp_path):
    model = save_tiny_backbone(tmp_path / "tiny.keras", 3, max_frames=64)
    fake = tmp_path / "song.mp3"
    fake.write_bytes(b"\xff\xfb" + b"\0" * 500)
    failed = run_cli("embed", f"--model={model}", f"--output={tmp_path}/e.npz", str(fake), ok=False)
    assert failed.stderr.strip().splitlines()[-1] == (
        f"Error: {fake}: cannot read audio header: not decodable audio: its content is in none "
        "of the formats soundfile reads (wav, flac, ogg, mp3...), whatever its name"
    )


@pytest.mark.parametrize(
    "config, described",
    [
        (keras.saving.serialize_keras_object(keras.layers.Dense(3)), "keras.layers.Dense"),
        ({"registered_name": "keras_hub>BertBackbone", "config": {}}, "keras_hub>BertBackbone"),
    ],
    ids=["keras-builtin", "other-package"],
)
def test_a_preset_of_another_model_names_it(tmp_path, config, described):
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "config.json").write_text(json.dumps(config))
    (preset / "model.weights.h5").write_bytes(b"")
    with pytest.raises(InputError) as refused:
        saving.load_backbone(preset)
    assert str(refused.value) == (
        f"{preset}: a preset of {described}, not of matpac_keras>MatpacBackbone"
    )


def test_onnx_encoder_fed_too_many_frames_fails_before_the_runtime(tmp_path):
    keras.utils.set_random_seed(3)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    encoder = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=tmp_path)
    with pytest.raises(ValueError) as refused:
        encoder(np.zeros((1, 80, 80), "float32"))
    assert str(refused.value) == (
        "windows of 80 frames: this encoder takes multiples of 16 frames up to 64"
    )


def test_converting_with_a_guessed_head_count_warns_naming_it(fixtures_dir, tmp_path):
    checkpoint = fixtures_dir / "heads" / "as_enc_and_head.pt"
    done = run_cli("convert", f"--checkpoint={checkpoint}", f"--output={tmp_path / 'tagger'}")
    warning = (
        "the encoder width 64 is that of no ViT variant (192, 384, 768, 1024): its head count, "
        "which the weights' shapes do not tell, is guessed as 1 (heads of width 64); pass "
        "--num_heads if it was trained with another"
    )
    assert warning in done.stderr
    given = run_cli(
        "convert", f"--checkpoint={checkpoint}", "--num_heads=2", f"--output={tmp_path / 'x'}"
    )
    assert "is guessed as" not in given.stderr
