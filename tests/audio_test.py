"""Tests for matpac_keras.audio: decoding, scaling, mono mix, resampling and bad files."""

import pathlib
import wave

import numpy as np
import pytest
import soundfile as sf

from matpac_keras import audio

pytestmark = pytest.mark.single_backend

FSDD_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


def _sine(freq: float, rate: int, num: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(num) / rate)


def _write_pcm(path: pathlib.Path, raw: bytes, width: int, channels: int = 1) -> None:
    """Writes PCM bytes with the stdlib `wave` module, so the stored samples are known exactly."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(raw)


def _peak_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_float_wav_round_trip_is_exact(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, 4000).astype(np.float32)
    path = tmp_path / "float.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    y = audio.load_audio(path)  # pathlib.Path accepted
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(audio.load_audio(str(path)), x)


def test_pcm_u8_scaling(tmp_path):
    stored = np.tile(np.arange(256, dtype=np.uint8), 4)
    path = tmp_path / "u8.wav"
    _write_pcm(path, stored.tobytes(), width=1)
    assert sf.info(path).subtype == "PCM_U8"
    expected = (stored.astype(np.float64) - 128) / 128
    np.testing.assert_array_equal(audio.load_audio(path), expected.astype(np.float32))


def test_pcm_16_scaling(tmp_path):
    rng = np.random.default_rng(1)
    stored = np.concatenate([[-32768, -1, 0, 1, 32767], rng.integers(-32768, 32768, 1000)])
    path = tmp_path / "s16.wav"
    _write_pcm(path, stored.astype("<i2").tobytes(), width=2)
    assert sf.info(path).subtype == "PCM_16"
    expected = (stored / 32768).astype(np.float32)
    np.testing.assert_array_equal(audio.load_audio(path), expected)


def test_pcm_24_scaling(tmp_path):
    rng = np.random.default_rng(2)
    stored = np.concatenate([[-(2**23), -1, 0, 1, 2**23 - 1], rng.integers(-(2**23), 2**23, 1000)])
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in stored)
    path = tmp_path / "s24.wav"
    _write_pcm(path, raw, width=3)
    assert sf.info(path).subtype == "PCM_24"
    y = audio.load_audio(path)
    assert y.min() == -1.0 and y.max() < 1.0
    np.testing.assert_allclose(y, stored / 2**23, rtol=0, atol=1e-7)


def test_stereo_is_channel_mean(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3000, 2)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    assert audio.audio_info(path) == (16000, 3000, 2)
    expected = x.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(audio.load_audio(path), expected, rtol=0, atol=1e-7)


def test_to_mono_shapes():
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    np.testing.assert_array_equal(audio.to_mono(x), [0.5, 2.5, 4.5])
    assert audio.to_mono(x).dtype == np.float32
    np.testing.assert_array_equal(audio.to_mono(x[:, 0]), [0, 2, 4])
    with pytest.raises(ValueError, match="shape"):
        audio.to_mono(np.zeros((2, 3, 4)))


def test_flac_round_trip(tmp_path):
    stored = np.random.default_rng(4).integers(-32768, 32768, 5000).astype(np.int16)
    path = tmp_path / "x.flac"
    sf.write(path, stored, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(audio.load_audio(path), (stored / 32768).astype(np.float32))


def test_ogg_tone_frequency_and_energy(tmp_path):
    rate, freq = 48000, 1000.0
    x = _sine(freq, rate, rate)
    path = tmp_path / "tone.ogg"
    sf.write(path, x, rate, format="OGG", subtype="VORBIS")
    y = audio.load_audio(path)
    assert len(y) == 16000
    assert abs(_peak_freq(y, 16000) - freq) <= 1.0
    assert _rms(y[1600:-1600]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_mp3_tone_frequency_and_energy(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("the installed libsndfile has no MP3 support")
    rate, freq = 44100, 1000.0
    path = tmp_path / "tone.mp3"
    try:
        sf.write(path, _sine(freq, rate, rate), rate, format="MP3", subtype="MPEG_LAYER_III")
    except sf.SoundFileError as e:
        pytest.skip(f"the installed libsndfile cannot write MP3: {e}")
    y = audio.load_audio(path)
    assert abs(len(y) - 16000) < 1600  # encoder delay / padding only
    assert abs(_peak_freq(y, 16000) - freq) <= 1.0
    assert _rms(y[1600:-1600]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("freq", [440.0, 3000.0])
@pytest.mark.parametrize("rate,num", [(8000, 8000), (44100, 44107), (22050, 22051)])
def test_resample_matches_analytic_sine(rate, num, freq):
    y = audio.resample(_sine(freq, rate, num).astype(np.float32), rate, 16000)
    assert y.dtype == np.float32
    assert len(y) == round(num * 16000 / rate)
    expected = _sine(freq, 16000, len(y))
    edge = 800  # 50 ms: the filter's transient at the ends of the signal
    # 1e-4 also rejects linear interpolation (errors 2e-4 .. 0.3 on these tones).
    np.testing.assert_allclose(y[edge:-edge], expected[edge:-edge], rtol=0, atol=1e-4)


def test_resample_removes_tones_above_the_new_nyquist():
    y = audio.resample(_sine(10000.0, 44100, 44100).astype(np.float32), 44100, 16000)
    assert _rms(y[800:-800]) < 1e-4  # without low-pass, 10 kHz aliases to 6 kHz at rms 0.35


def test_load_audio_resamples_44k_file(tmp_path):
    rate, num, freq = 44100, 22050 + 3, 1000.0
    path = tmp_path / "cd.wav"
    sf.write(path, _sine(freq, rate, num), rate, subtype="FLOAT")
    y = audio.load_audio(path)
    assert len(y) == round(num * 16000 / rate)
    expected = _sine(freq, 16000, len(y))
    np.testing.assert_allclose(y[800:-800], expected[800:-800], rtol=0, atol=1e-3)


def test_resample_same_rate_and_bad_rates():
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    np.testing.assert_array_equal(audio.resample(x, 16000, 16000), x)
    with pytest.raises(ValueError, match="positive"):
        audio.resample(x, 0, 16000)


def test_max_seconds_keeps_the_start(tmp_path):
    x = np.random.default_rng(5).uniform(-1, 1, 16000).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(audio.load_audio(path, max_seconds=0.25), x[:4000])
    with pytest.raises(ValueError, match="max_seconds"):
        audio.load_audio(path, max_seconds=0)


def test_real_fsdd_file_at_16k():
    path = FSDD_DIR / "0_george_0.wav"
    if not path.is_file():
        pytest.skip(f"FSDD not found at {FSDD_DIR}")
    rate, frames, channels = audio.audio_info(path)
    assert (rate, channels) == (8000, 1)
    y = audio.load_audio(path)
    assert abs(len(y) - 2 * frames) <= 1
    assert np.abs(y).max() <= 1.0 and _rms(y) > 1e-3
    native, _ = sf.read(path, dtype="float32")
    assert _rms(y) == pytest.approx(_rms(native), rel=0.02)


def _assert_audio_error(path, match: str, **kwargs) -> None:
    with pytest.raises(audio.AudioError, match=match) as info:
        audio.load_audio(path, **kwargs)
    assert path.name in str(info.value)


def test_missing_file(tmp_path):
    _assert_audio_error(tmp_path / "missing.wav", "not found")
    with pytest.raises(audio.AudioError, match="missing.wav"):
        audio.audio_info(tmp_path / "missing.wav")


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(6).bytes(2000))
    _assert_audio_error(path, "cannot decode")
    with pytest.raises(audio.AudioError, match="corrupt.wav"):
        audio.audio_info(path)


def test_zero_length_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    _assert_audio_error(path, "0 frames")


def test_truncated_header(tmp_path):
    path = tmp_path / "truncated.wav"
    sf.write(path, np.zeros(1000, np.float32), 16000)
    path.write_bytes(path.read_bytes()[:30])
    _assert_audio_error(path, "cannot decode")


def test_nan_float_wav(tmp_path):
    x = np.zeros(1000, np.float32)
    x[500] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    _assert_audio_error(path, "NaN")


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(150, np.float32), 8000, subtype="FLOAT")  # 300 samples at 16 kHz
    _assert_audio_error(path, r"300 samples .* minimum is 400")
    assert len(audio.load_audio(path, min_samples=300)) == 300


def _pcm16_wav(path: pathlib.Path, frames: int, rate: int = 16000) -> np.ndarray:
    samples = (np.arange(frames) % 200 - 100).astype(np.int16) * 100
    sf.write(path, samples, rate, subtype="PCM_16")
    return samples


@pytest.mark.parametrize("subtype, width", [("PCM_16", 2), ("FLOAT", 4)])
def test_truncated_wav_is_refused(tmp_path, subtype, width):
    # The file: the header declares 16,000 frames, 500 are present. libsndfile reports
    # only the frames present (sf.info says 500), so without the RIFF check it loads silently.
    path = tmp_path / "cut.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000, subtype=subtype)
    data = path.read_bytes()
    header = data.index(b"data") + 8
    path.write_bytes(data[: header + 500 * width])
    assert sf.info(path).frames == 500
    message = "cut.wav: truncated: header declares 16000 frames, 500 present"
    _assert_audio_error(path, message)
    with pytest.raises(audio.AudioError, match=message):
        audio.audio_info(path)
    with pytest.raises(audio.AudioError, match=message):
        next(audio.stream_audio(path))
    assert audio.wav_declared_frames(path) == 16000


def test_wav_whose_header_states_no_length_is_read(tmp_path):
    # Streaming writers put a placeholder data size (0xFFFFFFFF): not a truncation.
    path = tmp_path / "streamed.wav"
    samples = _pcm16_wav(path, 16000)
    data = bytearray(path.read_bytes())
    size = data.index(b"data") + 4
    data[size : size + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert audio.wav_declared_frames(path) is None
    np.testing.assert_array_equal(audio.load_audio(path), (samples / 32768).astype(np.float32))


def test_complete_files_are_not_truncated(tmp_path):
    path = tmp_path / "whole.wav"
    _pcm16_wav(path, 16000)
    assert audio.wav_declared_frames(path) == 16000
    assert audio.audio_info(path) == (16000, 16000, 1)
    for fsdd in sorted(FSDD_DIR.glob("*.wav"))[:200]:  # real files: none is refused
        assert audio.wav_declared_frames(fsdd) == sf.info(fsdd).frames, fsdd
    assert audio.wav_declared_frames(__file__) is None  # not a WAV


def test_truncated_mp3_is_refused(tmp_path):
    # MP3s with a Xing/Info header declare their length: a cut file decodes fewer frames.
    path = tmp_path / "cut.mp3"
    x = np.random.default_rng(0).uniform(-0.3, 0.3, 48000).astype(np.float32)
    try:
        sf.write(path, x, 16000, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        pytest.skip("this libsndfile cannot write MP3")
    data = path.read_bytes()
    assert len(audio.load_audio(path)) == 48000
    path.write_bytes(data[: len(data) // 2])
    _assert_audio_error(path, r"cut\.mp3: truncated: header declares 48000 frames, \d+ present")


@pytest.mark.parametrize("rate, channels", [(16000, 1), (8000, 1), (44100, 2)])
def test_stream_equals_load_audio_and_one_shot_resampling(tmp_path, rate, channels):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (rate * 3 + 17, channels))
    path = tmp_path / "clip.wav"
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    blocks = list(audio.stream_audio(path, block_frames=5000))
    assert len(blocks) >= 5 and all(b.ndim == 1 and b.dtype == np.float32 for b in blocks)
    streamed = np.concatenate(blocks)
    native, _ = sf.read(path, dtype="float32", always_2d=True)
    one_shot = audio.resample(audio.to_mono(native), rate, 16000)  # soxr in one call
    np.testing.assert_array_equal(streamed, one_shot)  # bit for bit: soxr's stream is exact
    np.testing.assert_array_equal(audio.load_audio(path), one_shot)
    head = np.concatenate(list(audio.stream_audio(path, max_seconds=1.0, block_frames=999)))
    np.testing.assert_array_equal(head, audio.load_audio(path, max_seconds=1.0))


def test_stream_raises_on_a_late_bad_block(tmp_path):
    x = np.zeros(40000, np.float32)
    x[35000] = np.inf
    path = tmp_path / "late_inf.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    blocks = audio.stream_audio(path, block_frames=10000)
    assert len(next(blocks)) == 10000  # earlier blocks come out first ...
    with pytest.raises(audio.AudioError, match=r"late_inf\.wav: audio contains NaN or infinite"):
        list(blocks)  # ... then the bad one stops the stream
    with pytest.raises(ValueError, match="block_frames"):
        next(audio.stream_audio(path, block_frames=0))


def test_pcm16_to_float_is_libsndfiles_scaling():
    from matpac_keras.audio import pcm16_to_float

    pcm = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    np.testing.assert_array_equal(
        pcm16_to_float(pcm), np.array([-1.0, -1 / 32768, 0.0, 1 / 32768, 32767 / 32768], "float32")
    )
    assert pcm16_to_float(pcm).dtype == np.float32
    floats = np.array([1.5, -2.0])  # float input: only cast, never rescaled or clipped
    np.testing.assert_array_equal(pcm16_to_float(floats), floats.astype("float32"))
