"""The HEAR API against the rules of the HEAR API page and its validator (hear-validator):
model type and attributes, output shapes and dtypes, timestamps in ms at regular intervals
within the sound, for the validator's batches; and agreement with the precise embeddings."""

import keras
import numpy as np
import pytest

from matpac_keras import hear
from matpac_keras.backbone import MatpacBackbone

SIZE = 5 * 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(3)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=128)
    backbone.build(None)
    path = tmp_path_factory.mktemp("hear") / "model.keras"
    backbone.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return hear.load_model(str(model_path))


def _noise(num_sounds: int, seconds: float) -> np.ndarray:
    """White noise in [-1, 1], as the validator draws it."""
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (num_sounds, int(seconds * 16000))).astype("float32")


def test_model_type_and_attributes(model):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert isinstance(model, tf.Module)
    elif keras.backend.backend() == "torch":
        import torch

        assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert type(model.scene_embedding_size) is type(model.timestamp_embedding_size) is int
    assert model.scene_embedding_size == model.timestamp_embedding_size == SIZE


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0])  # the validator's lengths, 2 sounds
def test_timestamp_embeddings_follow_the_rules(model, seconds):
    outputs = hear.get_timestamp_embeddings(_noise(2, seconds), model)
    assert all(keras.ops.is_tensor(output) for output in outputs)
    embeddings, timestamps = map(keras.ops.convert_to_numpy, outputs)
    assert embeddings.dtype == timestamps.dtype == np.float32
    assert embeddings.ndim == 3 and embeddings.shape[0] == 2 and embeddings.shape[2] == SIZE
    assert timestamps.shape == embeddings.shape[:2]
    hop = np.diff(timestamps, axis=1)
    assert np.abs(hop - hop.mean()).max() <= 1  # regular intervals (validator: within 1 ms)
    assert timestamps.max() <= 1000 * seconds  # within the sound
    assert timestamps.max() >= 1000 * seconds - 2 * hop.mean()  # up to its end
    assert timestamps.min() <= hop.mean()
    np.testing.assert_array_equal(timestamps[0], timestamps[1])  # one length, one timeline


def _frame_centre_ms(frame: np.ndarray) -> np.ndarray:
    """Centre of STFT frame i: its 400-sample window starts at sample 160 i."""
    return (160 * frame + 400 / 2) / 16000 * 1000


def test_timestamps_are_the_centres_of_their_frames(model):
    audio = _noise(2, 1.98)  # 196 frames: 13 steps, the last centred at 2007.5 ms, left out
    embeddings, timestamps = map(
        keras.ops.convert_to_numpy, hear.get_timestamp_embeddings(audio, model)
    )
    expected = [_frame_centre_ms(np.arange(16 * j, 16 * j + 16)).mean() for j in range(12)]
    np.testing.assert_allclose(timestamps[0], expected, rtol=0, atol=1e-4)
    assert timestamps[0, 0] == pytest.approx(87.5)
    assert model.extractor.mode == "precise"
    precise = model.extractor.embed_waveforms(audio)
    assert precise.frames.shape[1] == 13
    np.testing.assert_allclose(embeddings, precise.frames[:, :12], atol=1e-5)


@pytest.mark.parametrize("backend_tensor", [False, True])
def test_scene_embeddings_are_the_precise_ones(model, backend_tensor):
    audio = _noise(4, 2.74)  # the validator's scene batch
    given = keras.ops.convert_to_tensor(audio) if backend_tensor else audio
    scene = hear.get_scene_embeddings(given, model)
    assert keras.ops.is_tensor(scene)
    scene = keras.ops.convert_to_numpy(scene)
    assert scene.dtype == np.float32 and scene.shape == (4, SIZE)
    expected = model.extractor.embed_waveforms(audio)  # the same compiled functions: faster
    np.testing.assert_allclose(scene, expected.embedding, atol=1e-5)
    np.testing.assert_allclose(scene, expected.frames.mean(axis=1), atol=1e-5)


def test_short_sound_keeps_one_timestamp(model):
    embeddings, timestamps = hear.get_timestamp_embeddings(np.zeros((3, 400), "float32"), model)
    assert tuple(embeddings.shape) == (3, 1, SIZE)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(timestamps), [[87.5]] * 3)


def test_bad_input_is_named(model, tmp_path):
    with pytest.raises(ValueError, match=r"\[n_sounds, n_samples\]"):
        hear.get_scene_embeddings(np.zeros(16000, "float32"), model)
    with pytest.raises(ValueError, match="399 samples are too short"):
        hear.get_timestamp_embeddings(np.zeros((1, 399), "float32"), model)
    with pytest.raises(ValueError, match="model_file_path is required"):
        hear.load_model()
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        hear.load_model(str(tmp_path / "missing.keras"))


def test_scene_embeddings_with_a_temporal_support(model_path, model):
    """`load_model(path, temporal_support=..., hop=..., aggregate=...)`: the scene embedding is
    the extractor's windowed one (twice as wide with mean+max); timestamps are unchanged."""
    from matpac_keras.embedding import EmbeddingExtractor

    windowed = hear.load_model(
        str(model_path), temporal_support=0.32, hop=0.16, aggregate="mean+max"
    )
    assert windowed.scene_embedding_size == 2 * SIZE and windowed.timestamp_embedding_size == SIZE
    audio = _noise(2, 1.98)
    scene = keras.ops.convert_to_numpy(hear.get_scene_embeddings(audio, windowed))
    expected = EmbeddingExtractor(
        windowed.backbone, temporal_support=0.32, hop=0.16, aggregate="mean+max"
    ).embed_waveforms(audio)
    assert scene.shape == (2, 2 * SIZE)
    np.testing.assert_allclose(scene, expected.embedding, atol=1e-5)
    precise = keras.ops.convert_to_numpy(hear.get_scene_embeddings(audio, model))
    assert np.abs(scene[:, :SIZE] - precise).max() > 1e-3  # 32-frame windows differ
    stamps = [keras.ops.convert_to_numpy(t) for t in hear.get_timestamp_embeddings(audio, windowed)]
    default = [keras.ops.convert_to_numpy(t) for t in hear.get_timestamp_embeddings(audio, model)]
    for ours, theirs in zip(stamps, default, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="temporal_support must be from 0.16 s"):
        hear.load_model(str(model_path), temporal_support=2.0)
