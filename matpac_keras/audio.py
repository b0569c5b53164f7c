"""Audio files -> validated mono float32 waveforms at 16 kHz.

The single place where audio is decoded (soundfile / libsndfile: wav, flac, ogg, mp3, any
subtype), checked, mixed to mono and resampled (soxr 'HQ'), so the embedding CLI, the TFDS
builders and the tf.data pipelines all see identical samples. Integer PCM is scaled to [-1, 1)
by libsndfile; nothing is clipped or rescaled here (float files and resampling overshoot keep
their values).
"""

import os

import numpy as np
import soundfile as sf
import soxr

from matpac_keras.errors import InputError

SAMPLE_RATE = 16000

_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, TypeError)


class AudioError(InputError):
    """A file that cannot be turned into valid audio; message names the file."""


def to_mono(data: np.ndarray) -> np.ndarray:
    """Averages channels: [samples] or [samples, channels] -> float32 [samples]."""
    data = np.asarray(data)
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    if data.ndim == 2 and data.shape[1] > 0:
        return data.mean(axis=1, dtype=np.float32)
    raise ValueError(f"expected [samples] or [samples, channels], got shape {data.shape}")


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resamples a mono waveform with soxr 'HQ'; output length is round(n * target / orig)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {target_rate}")
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono [samples] waveform, got shape {waveform.shape}")
    if orig_rate == target_rate:
        return waveform.copy()
    return soxr.resample(waveform, orig_rate, target_rate, quality="HQ").astype(np.float32)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: not a regular file")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) of an audio file, read from its header."""
    path = os.fspath(path)
    _check_file(path)
    try:
        info = sf.info(path)
    except _DECODE_ERRORS as e:
        raise AudioError(f"{path}: cannot read audio header: {e}") from e
    return info.samplerate, info.frames, info.channels


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = 400,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decodes, validates, mixes to mono and resamples `path`; returns float32 [samples].

    Args:
        path: str or PathLike. Any format and subtype libsndfile reads (wav, flac, ogg, mp3).
        sample_rate: int. Output rate. Defaults to 16000.
        min_samples: int. Fewer samples (after resampling) raise AudioError. Defaults to 400
            (one 25 ms STFT frame at 16 kHz).
        max_seconds: float or None. When set, only the first `max_seconds` seconds are decoded
            (the rest is ignored, which bounds memory on long files). Defaults to None (all).

    Raises:
        AudioError: missing, unreadable or corrupt file, 0 frames, NaN/inf, or too short.
    """
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    path = os.fspath(path)
    _check_file(path)
    try:
        with sf.SoundFile(path) as f:
            orig_rate = f.samplerate
            frames = -1 if max_seconds is None else int(np.ceil(max_seconds * orig_rate))
            data = f.read(frames, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as e:
        raise AudioError(f"{path}: cannot decode audio: {e}") from e
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 frames)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite values")
    waveform = resample(to_mono(data), orig_rate, sample_rate)
    if waveform.shape[0] < min_samples:
        raise AudioError(
            f"{path}: too short: {waveform.shape[0]} samples "
            f"({waveform.shape[0] / sample_rate:.4f} s) at {sample_rate} Hz, "
            f"minimum is {min_samples} samples"
        )
    return waveform
