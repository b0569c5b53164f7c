"""Audio front end: 16 kHz waveform -> normalised log-mel spectrogram (SPEC section 1).

Everything is written with Keras ops, so the layer runs under TensorFlow, JAX and PyTorch and
inside `tf.data`. The STFT frames the signal with one gather and takes a real FFT of the
windowed frames: an FFT keeps float32 rounding near the authors' (a DFT-by-matmul was 10x
further off the fixtures in the quiet bands).
"""

import keras
import numpy as np

# Keras's own audio preprocessing layers (MelSpectrogram) derive from DataLayer: under any
# backend, inside a tf.data graph it runs its maths with TensorFlow. Private API, pinned by the
# keras==3.15 requirement.
from keras.src.layers.preprocessing.data_layer import DataLayer

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


@keras.saving.register_keras_serializable(package="matpac_keras")
class LogMelSpectrogram(DataLayer):
    """Waveform [batch, samples] at 16 kHz -> log-mel [batch, 80, frames].

    Args:
        normalize: bool. Apply the AudioSet statistics `(x - (-7.056)) / 4.193` (the model's
            input). Defaults to `True`; `False` gives the raw `log(mel + eps)`.

    Always computes in float32, whatever the dtype policy: the log of small powers needs it.
    """

    def __init__(self, normalize: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.normalize = normalize
        self._window = periodic_hann(N_FFT)
        self._mel = mel_filterbank().astype("float32")
        self._frame_offsets = np.arange(N_FFT, dtype="int32")

    def call(self, waveform):
        np_ops, math_ops = self.backend.numpy, self.backend.math  # keras.ops, or TF in tf.data
        waveform = self.backend.cast(waveform, "float32")
        if len(waveform.shape) != 2:
            raise ValueError(
                f"LogMelSpectrogram expects waveforms [batch, samples]; got shape {waveform.shape}"
            )
        n_frames = 1 + (self.backend.core.shape(waveform)[1] - N_FFT) // HOP_LENGTH
        starts = np_ops.arange(n_frames, dtype="int32")[:, None] * HOP_LENGTH
        frames = np_ops.take(waveform, starts + self._frame_offsets[None, :], axis=1)
        real, imag = math_ops.rfft(frames * self._window, fft_length=N_FFT)
        power = np_ops.square(real) + np_ops.square(imag)
        logmel = np_ops.log(np_ops.matmul(power, self._mel) + LOG_EPS)
        if self.normalize:
            logmel = (logmel - LOGMEL_MEAN) / LOGMEL_STD
        return np_ops.transpose(logmel, (0, 2, 1))

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else num_frames(samples)
        return (input_shape[0], N_MELS, frames)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}
