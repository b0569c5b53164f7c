"""A plain baseline feature: mean and standard deviation of the log-mel over time."""

import numpy as np
from keras import ops

from matpac_keras.embedding import exact_logmels
from matpac_keras.frontend import N_FFT, LogMelSpectrogram


def logmel_statistics(waveforms: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """[N, 2 * mels]: per mel bin, the mean then the (population) std over frames of each clip's
    normalised log-mel (the model's input). Clips shorter than one frame are zero-padded."""
    frontend = LogMelSpectrogram()
    waves = []
    for waveform in waveforms:
        waveform = np.asarray(waveform, dtype="float32")
        if waveform.ndim != 1:
            raise ValueError(f"expected 1-D waveforms; got shape {waveform.shape}")
        waves.append(np.pad(waveform, (0, max(0, N_FFT - len(waveform)))))
    logmels = exact_logmels(lambda x: ops.convert_to_numpy(frontend(x)), waves, batch_size)
    logmels = [m.astype("float64") for m in logmels]
    stats = [np.concatenate([m.mean(axis=1), m.std(axis=1)]) for m in logmels]
    return np.asarray(np.stack(stats), dtype="float32")
