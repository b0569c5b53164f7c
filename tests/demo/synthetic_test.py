"""The synthetic corpus: deterministic, balanced, held-out splits, and classes that have the
structure their names promise (measured here with plain NumPy signal analysis)."""

import numpy as np
import pytest

from matpac_keras.demo.synthetic import CLASS_NAMES, NUM_CLASSES, make_corpus, synthesize

pytestmark = pytest.mark.single_backend
SR = 16000


def test_corpus_is_deterministic_balanced_and_split():
    waveforms, labels = make_corpus(3, 0.5, seed=1)
    assert waveforms.shape == (3 * NUM_CLASSES, 8000) and waveforms.dtype == np.float32
    assert np.array_equal(labels, np.repeat(np.arange(NUM_CLASSES), 3))
    assert np.all(np.isfinite(waveforms)) and np.abs(waveforms).max() <= 1.0
    assert np.all(np.abs(waveforms).max(axis=1) > 1e-3)  # no silent clip
    again, _ = make_corpus(3, 0.5, seed=1)
    np.testing.assert_array_equal(again, waveforms)
    held_out, _ = make_corpus(3, 0.5, seed=1, split="probe_test")
    other_seed, _ = make_corpus(3, 0.5, seed=2)
    for other in (held_out, other_seed):
        assert not np.any(np.all(np.isclose(other[:, None], waveforms[None]), axis=2))


def _peak_hz(segment):
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return np.fft.rfftfreq(len(segment), 1 / SR)[np.argmax(spectrum[10:]) + 10]


@pytest.mark.parametrize("name", ["steady_harmonic", "rising_glide", "falling_glide"])
def test_pitch_contours(name):
    label = CLASS_NAMES.index(name)
    for i in range(8):
        clip = synthesize(label, np.random.default_rng((5, i)), SR * 2)
        ratio = _peak_hz(clip[-6400:]) / _peak_hz(clip[:6400])  # last vs first 0.4 s
        if name == "steady_harmonic":
            assert 0.97 < ratio < 1.03
        elif name == "rising_glide":
            assert ratio > 2**0.25  # glides span 0.4-1 octave over the clip
        else:
            assert ratio < 2**-0.25


def _pulses_per_second(clip):
    """Upward crossings of the 5-ms log-energy envelope through its mid level, per second."""
    frames = clip[: len(clip) // 80 * 80].reshape(-1, 80)
    energy = np.log(np.mean(frames**2, axis=1) + 1e-12)
    threshold = (np.median(energy) + energy.max()) / 2
    above = energy > threshold
    return np.sum(above[1:] & ~above[:-1]) / (len(clip) / SR)


def test_click_rates():
    for i in range(6):
        slow = synthesize(CLASS_NAMES.index("slow_clicks"), np.random.default_rng((6, i)), SR * 3)
        fast = synthesize(CLASS_NAMES.index("fast_clicks"), np.random.default_rng((7, i)), SR * 3)
        assert 2 <= _pulses_per_second(slow) <= 7
        assert 13 <= _pulses_per_second(fast) <= 33


def test_bad_arguments():
    with pytest.raises(ValueError, match="label"):
        synthesize(NUM_CLASSES, np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="split"):
        make_corpus(1, 0.1, 0, split="validation")
    with pytest.raises(ValueError, match="clips_per_class"):
        make_corpus(0, 0.1, 0)
