"""The log-mel front end's constants and filters, and its NumPy version (SPEC section 1).

`frontend.LogMelSpectrogram` is the Keras layer (every backend, tf.data); `logmel` here is the
same function in NumPy, for the runs that load no Keras at all (`matpac-embed` with a cached
ONNX / OpenVINO encoder): equal to the layer within float32 rounding (1e-5,
tests/logmel_test.py). Both take their constants, window and filters from this module.
"""

import functools

import numpy as np

from matpac_keras.audio import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
F_MIN = 50.0
F_MAX = 8000.0
LOG_EPS = float(np.finfo(np.float32).eps)
LOGMEL_MEAN = -7.056
LOGMEL_STD = 4.193


def num_frames(num_samples: int) -> int:
    """Frames of the `center=False` STFT of `num_samples` samples (0 when too short)."""
    return max(0, 1 + (num_samples - N_FFT) // HOP_LENGTH)


def samples_for_frames(frames: int) -> int:
    """The fewest samples whose `center=False` STFT has `frames` frames (97,520 for 608): the
    length of a crop of `frames` frames, the inverse of `num_frames`."""
    return N_FFT + HOP_LENGTH * (frames - 1)


_MEL_F_SP = 200.0 / 3  # Slaney: 3 mels per 200 Hz below 1 kHz ...
_MEL_MIN_LOG_HZ = 1000.0
_MEL_LOG_STEP = float(np.log(6.4) / 27.0)  # ... and log-spaced above


def hz_to_mel(hz: float) -> float:
    """Slaney's mel scale, for one frequency."""
    if hz < _MEL_MIN_LOG_HZ:
        return hz / _MEL_F_SP
    return _MEL_MIN_LOG_HZ / _MEL_F_SP + float(np.log(hz / _MEL_MIN_LOG_HZ)) / _MEL_LOG_STEP


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`, elementwise, in the dtype of `mel`."""
    mel = np.asarray(mel)
    min_log_mel = mel.dtype.type(_MEL_MIN_LOG_HZ / _MEL_F_SP)
    log_hz = _MEL_MIN_LOG_HZ * np.exp(mel.dtype.type(_MEL_LOG_STEP) * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log_hz, mel.dtype.type(_MEL_F_SP) * mel).astype(mel.dtype)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> np.ndarray:
    """Slaney-scale, Slaney-area-normalised triangular filters, [n_fft // 2 + 1, n_mels].

    Computed in float32 in the order torchaudio's `melscale_fbanks` uses: the authors' front end
    (and so the published weights) saw exactly these rounded filters, which differ from a float64
    computation by up to 1e-7 absolute (0.1% on the smallest edge weights).
    """
    fft_hz = np.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=np.float32)
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2).astype(np.float32)
    edges_hz = mel_to_hz(mel_points)
    widths = edges_hz[1:] - edges_hz[:-1]
    offsets = edges_hz[None, :] - fft_hz[:, None]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(np.float32(0), np.minimum(rising, falling))
    return filters * (np.float32(2.0) / (edges_hz[2:] - edges_hz[:-2]))


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window (`torch.hann_window(length)`), float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype("float32")


@functools.cache
def _window_and_filters() -> tuple[np.ndarray, np.ndarray]:
    return periodic_hann(N_FFT), mel_filterbank().astype("float32")


def logmel(waveforms, normalize: bool = True) -> np.ndarray:
    """Waveforms [batch, samples] at 16 kHz -> log-mel [batch, 80, frames], float32, in NumPy:
    `LogMelSpectrogram(normalize)` without Keras.

    Raises:
        ValueError: not [batch, samples], or fewer samples than one frame (400).
    """
    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim != 2:
        raise ValueError(f"waveforms must be [batch, samples]; got shape {waveforms.shape}")
    if waveforms.shape[1] < N_FFT:
        raise ValueError(f"clips of {waveforms.shape[1]} samples are shorter than one frame")
    window, filters = _window_and_filters()
    frames = np.lib.stride_tricks.sliding_window_view(waveforms, N_FFT, axis=1)[:, ::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * window, n=N_FFT, axis=-1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    out = np.log(np.matmul(power.astype(np.float32), filters) + np.float32(LOG_EPS))
    if normalize:
        out = (out - np.float32(LOGMEL_MEAN)) / np.float32(LOGMEL_STD)
    return np.ascontiguousarray(out.transpose(0, 2, 1), dtype=np.float32)
