"""keras-hub presets: the converted fixture encoder saved as a preset and loaded through
keras-hub's own `from_preset`, on every backend, against the authors' embeddings."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from matpac_keras.audio_converter import MatpacAudioConverter
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.convert import model_from_state_dict
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.errors import InputError
from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.presets import PUBLISHED_CHECKPOINTS, published_checkpoint
from matpac_keras.saving import load_backbone, load_model, save_preset
from tests.conftest import FIXTURE_HEADS, relative_error


@pytest.fixture(scope="module")
def preset_dir(encoder_only_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("preset") / "matpac_fixture"
    save_preset(model_from_state_dict(encoder_only_state, **FIXTURE_HEADS), folder)
    return folder


def test_preset_holds_keras_hub_files(preset_dir, encoder_only_state):
    names = sorted(os.listdir(preset_dir))
    assert names == ["audio_converter.json", "config.json", "metadata.json", "model.weights.h5"]
    config = json.loads((preset_dir / "config.json").read_text())
    assert config["registered_name"] == "matpac_keras>MatpacBackbone"
    frames = 16 * (encoder_only_state["pos_embed"].shape[1] - 1) // 5  # 5 mel patch rows
    assert config["config"]["max_frames"] == frames
    converter = json.loads((preset_dir / "audio_converter.json").read_text())
    assert converter["registered_name"] == "matpac_keras>MatpacAudioConverter"


def test_keras_hub_from_preset_reproduces_the_official_embeddings(preset_dir, fixture_arrays):
    backbone = keras_hub.models.Backbone.from_preset(os.fspath(preset_dir))
    assert type(backbone) is MatpacBackbone
    expected = fixture_arrays("embed")
    out = EmbeddingExtractor(backbone, layers=True).embed_waveforms(expected["waveform"])
    assert relative_error(out.embedding, expected["precise_pooled/emb"]) < 1e-4
    assert relative_error(out.layers, expected["precise_pooled/layers"]) < 1e-4


def test_subclass_from_preset_and_load_backbone_give_the_same_weights(preset_dir):
    via_class = MatpacBackbone.from_preset(os.fspath(preset_dir))
    via_path = load_backbone(preset_dir)
    assert isinstance(load_model(preset_dir), MatpacBackbone)
    for a, b in zip(via_class.weights, via_path.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_audio_converter_from_preset_is_the_front_end(preset_dir, fixture_arrays):
    converter = keras_hub.layers.AudioConverter.from_preset(os.fspath(preset_dir))
    assert type(converter) is MatpacAudioConverter
    waveform = fixture_arrays("embed")["waveform"][:, :16000]
    ours = keras.ops.convert_to_numpy(converter(waveform))
    reference = keras.ops.convert_to_numpy(LogMelSpectrogram()(waveform))
    np.testing.assert_array_equal(ours, reference)
    assert ours.shape == (len(waveform), 80, 1 + (16000 - 400) // 160)


def test_audio_converter_runs_inside_tf_data(fixture_arrays):
    tf = pytest.importorskip("tensorflow")
    waveform = fixture_arrays("embed")["waveform"][:, :8000]
    converter = MatpacAudioConverter()
    dataset = tf.data.Dataset.from_tensor_slices(waveform).batch(2).map(converter)
    ours = np.concatenate([batch.numpy() for batch in dataset])
    reference = keras.ops.convert_to_numpy(LogMelSpectrogram()(waveform))
    # TensorFlow's FFT in tf.data against this backend's: float32 rounding in the quiet bands.
    assert ours.shape == reference.shape and relative_error(ours, reference) < 2e-5


def test_audio_converter_refuses_another_rate():
    with pytest.raises(ValueError, match="sampling_rate=44100: MATPAC takes 16000 Hz"):
        MatpacAudioConverter(sampling_rate=44100)


def test_backbone_config_round_trip_and_unbuilt_free():
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    assert backbone.built and backbone.count_params() > 0  # built on construction
    clone = MatpacBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    tokens = clone(np.zeros((1, 80, 48), "float32"))
    assert tuple(tokens.shape) == (1, 1 + 5 * 3, 32)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_config", "not a model preset (no config.json)"),
        ("bad_json", "corrupt preset config (not valid JSON"),
        ("no_weights", "incomplete preset (no model.weights.h5)"),
        ("truncated_weights", "corrupt preset"),
        ("other_class", "a preset of keras_hub>BertBackbone, not of matpac_keras>MatpacBackbone"),
    ],
)
def test_damaged_presets_are_named(preset_dir, tmp_path, damage, message):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(preset_dir, folder)
    config, weights = folder / "config.json", folder / "model.weights.h5"
    if damage == "no_config":
        config.unlink()
    elif damage == "bad_json":
        config.write_text("{not json")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    else:
        data = json.loads(config.read_text())
        data["registered_name"] = "keras_hub>BertBackbone"
        config.write_text(json.dumps(data))
    with pytest.raises(InputError, match=str(folder)) as error:
        load_backbone(folder)
    assert message in str(error.value)


def test_published_checkpoints_are_known_by_name():
    entry = published_checkpoint("/downloads/matpac_plus_as_48_1_map_enconly.pt")
    assert entry.max_frames == 992 and entry.variant == "base"
    assert published_checkpoint("my_model.pt") is None
    assert len({c.preset for c in PUBLISHED_CHECKPOINTS.values()}) == len(PUBLISHED_CHECKPOINTS)
    assert all(c.url.endswith(c.file) for c in PUBLISHED_CHECKPOINTS.values())
