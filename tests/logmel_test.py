"""The NumPy log-mel (`logmel.logmel`, for runs without Keras) equals the Keras front end
(`frontend.LogMelSpectrogram`) within 1e-5, on the authors' fixture clips and on noise, tones,
a chirp, silence and near-silence.

Within 1e-5 wherever a band holds more than the float32 FFT's rounding noise: within 60 dB of
its frame's loudest band (a log-mel at most 14 below the frame's largest; 98 % of the bands of
these clips, all of those of noise and speech). Below that two float32 FFTs differ by up to
1e-4: a chirp's empty bands, 1e-7 of its frame's peak power, differ by 7.5e-5 whatever precision
NumPy computes in (float32 or float64), so it is the Keras side's float32 rounding."""

import keras
import numpy as np
import pytest

from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.logmel import LOGMEL_STD, logmel


def _keras(waveforms, normalize=True):
    return keras.ops.convert_to_numpy(LogMelSpectrogram(normalize=normalize)(waveforms))


def _assert_equal(waveforms, normalize=True):
    ours, theirs = logmel(waveforms, normalize), _keras(waveforms, normalize)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    error = np.abs(ours - theirs)
    raw = _keras(waveforms, normalize=False)
    loud = raw > raw.max(axis=1, keepdims=True) - 14  # within 60 dB of the frame's peak band
    assert loud.mean() > 0.75
    scale = 1.0 if normalize else LOGMEL_STD  # 1e-5 of the model's input
    assert error[loud].max() < 1e-5 * scale, error[loud].max()
    assert error.max() < 2e-4 * scale, error.max()
    return ours


def _clips(samples: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 16000
    return np.stack(
        [
            rng.uniform(-0.5, 0.5, samples),
            0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t * t),
            np.where(t < t[-1] / 2, 0.0, rng.normal(0, 1e-3, samples)),  # silence, then quiet
            1e-4 * rng.normal(size=samples),
        ]
    ).astype("float32")


@pytest.mark.parametrize("normalize", [True, False])
def test_equals_keras_front_end(normalize):
    ours = _assert_equal(_clips(16000 * 3 + 123), normalize)  # not a whole number of hops
    assert ours.shape == (4, 80, 299)


def test_equals_keras_on_the_authors_clips(fixture_arrays):
    _assert_equal(fixture_arrays("logmel")["waveform"])


def test_bad_input():
    assert logmel(np.zeros((1, 400), "float32")).shape == (1, 80, 1)
    with pytest.raises(ValueError, match="batch, samples"):
        logmel(np.zeros((4, 2, 1000), "float32"))
    with pytest.raises(ValueError, match="shorter than one frame"):
        logmel(np.zeros((1, 399), "float32"))
