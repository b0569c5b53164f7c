"""Audio front end: 16 kHz waveform -> normalised log-mel spectrogram (SPEC section 1).

Everything is written with Keras ops, so the layer runs under TensorFlow, JAX and PyTorch and
inside `tf.data`. The STFT frames the signal with one gather and takes a real FFT of the
windowed frames: an FFT keeps float32 rounding near the authors' (a DFT-by-matmul was 10x
further off the fixtures in the quiet bands). Its constants and filters are `logmel.py`'s, which
also computes the same log-mel in NumPy (for the runs that load no Keras).
"""

import keras
import numpy as np

# Keras's own audio preprocessing layers (MelSpectrogram) derive from DataLayer: under any
# backend, inside a tf.data graph it runs its maths with TensorFlow. Private API, pinned by the
# keras==3.15 requirement.
from keras.src.layers.preprocessing.data_layer import DataLayer

from matpac_keras.audio import SAMPLE_RATE  # noqa: F401  (importers take it from here)
from matpac_keras.logmel import (  # noqa: F401  (the constants and filters, shared with NumPy's)
    F_MAX,
    F_MIN,
    HOP_LENGTH,
    LOG_EPS,
    LOGMEL_MEAN,
    LOGMEL_STD,
    N_FFT,
    N_MELS,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    num_frames,
    periodic_hann,
    samples_for_frames,
)


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
