"""Pretraining from waveform crops: the log-mel computed inside the step, as from log-mel batches.

The fixture model (the authors' training checkpoint) on two real 128-frame crops: the forward
pass and the loss from the waveforms equal those from their log-mel (our front end, itself
checked against the fixtures in frontend_test.py) within 1e-5; int16 PCM crops equal their
float scaling; one training step from waveforms leaves the same weights as from log-mel.
"""

import keras
import numpy as np
import pytest

from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.pretrainer import as_logmel
from tests.pretrainer_tiny import TINY_FRAMES, tiny_masks, tiny_pretrainer

CROP_SAMPLES = 160 * 127 + 400  # 128 frames: the fixture model's whole position grid


def _numpy(tree):
    return {k: keras.ops.convert_to_numpy(v) for k, v in tree.items()}


def test_fixture_forward_from_waveforms_equals_from_log_mel(fixture_pretrainer, fixture_arrays):
    waves = fixture_arrays("embed")["waveform"][:, :CROP_SAMPLES]
    ids = fixture_arrays("train_step")["ids_shuffle"][:2]
    logmel = keras.ops.convert_to_numpy(LogMelSpectrogram()(waves))
    assert logmel.shape == (2, 80, 128)
    from_logmel = _numpy(
        fixture_pretrainer.training_outputs({"source": logmel, "ids_shuffle": ids})
    )
    got = _numpy(fixture_pretrainer.training_outputs({"waveform": waves, "ids_shuffle": ids}))
    assert sorted(got) == sorted(from_logmel)
    for key, value in from_logmel.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5, rtol=1e-5, err_msg=key)
    assert np.isfinite(from_logmel["loss"]) and from_logmel["loss"] > 0


def test_int16_crops_are_scaled_as_pcm(fixture_arrays):
    waves = fixture_arrays("embed")["waveform"][:, :CROP_SAMPLES]
    pcm = np.clip(np.round(waves * 32768), -32768, 32767).astype("int16")
    expected = keras.ops.convert_to_numpy(LogMelSpectrogram()(pcm.astype("float32") / 32768))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(as_logmel(pcm)), expected, atol=1e-6)
    logmel = np.zeros((1, 80, 16), "float32")
    assert as_logmel(logmel) is logmel  # a log-mel batch passes as it is
    with pytest.raises(ValueError, match=r"log-mel batch \[batch, mels, frames\] or waveforms"):
        as_logmel(np.zeros(400, "float32"))


def test_a_training_step_from_waveforms_equals_one_from_log_mel():
    rng = np.random.default_rng(0)
    waves = rng.uniform(-0.5, 0.5, (4, 160 * (TINY_FRAMES - 1) + 400)).astype("float32")
    logmel = keras.ops.convert_to_numpy(LogMelSpectrogram()(waves))
    ids = tiny_masks()
    results = []
    for batch in ({"source": logmel, "ids_shuffle": ids}, {"waveform": waves, "ids_shuffle": ids}):
        model = tiny_pretrainer(seed=1)
        logs = model.train_on_batch(batch, return_dict=True)
        results.append((logs, [keras.ops.convert_to_numpy(w) for w in model.weights]))
    (logs_a, weights_a), (logs_b, weights_b) = results
    assert logs_a["loss"] == pytest.approx(logs_b["loss"], rel=1e-5, abs=1e-6)
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    moved = tiny_pretrainer(seed=1).weights
    assert any(
        np.abs(keras.ops.convert_to_numpy(w) - a).max() > 1e-6
        for w, a in zip(moved, weights_a, strict=True)
    )  # the step did change the weights: the comparison is not of two untouched models


def test_a_batch_dict_needs_exactly_one_input():
    model = tiny_pretrainer()
    logmel = np.zeros((1, 80, TINY_FRAMES), "float32")
    with pytest.raises(ValueError, match="one of 'source' and 'waveform' required"):
        model.unpack_batch({"source": logmel, "waveform": np.zeros((1, 10480), "float32")})
    with pytest.raises(ValueError, match="one of 'source' and 'waveform' required"):
        model.unpack_batch({"ids_shuffle": tiny_masks(1)})
