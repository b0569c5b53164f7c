"""Audio files -> validated mono float32 waveforms at 16 kHz.

The single place where audio is decoded (soundfile / libsndfile: wav, flac, ogg, mp3, any
subtype), checked, mixed to mono and resampled (soxr 'HQ'), so the embedding CLI, the TFDS
builders and the tf.data pipelines all see identical samples. Integer PCM is scaled to [-1, 1)
by libsndfile; nothing is clipped or rescaled here (float files and resampling overshoot keep
their values).

`stream_audio` decodes a file block by block (soundfile blocks, soxr's streaming resampler), so
a long file is never in memory whole; `load_audio` is the concatenation of its blocks, bit for
bit (soxr's stream gives exactly its one-shot result).

A file shorter than its header says is refused as truncated: for WAV the `data` chunk's size
is read from the RIFF header (libsndfile silently reports only the frames present); for other
formats with a length in their header (FLAC, MP3 with a Xing/Info frame) the frames decoded
are compared with it at the end of the file. Headers that state no length (a WAV `data` size
of 0 or a placeholder of 2 GiB or more, written by streaming encoders; Ogg, which stores none)
are not checked.
"""

import os
import struct
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from matpac_keras.errors import InputError

SAMPLE_RATE = 16000  # the one sample rate of the model, the builders and the pipelines
PCM16_SCALE = 32768.0  # int16 PCM x -> x / 32768 in [-1, 1), as libsndfile reads it
BLOCK_FRAMES = 1 << 18  # frames decoded at once by stream_audio (5.5 s at 48 kHz)

_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, TypeError)
# WAVE format tags whose block align is one frame: PCM, IEEE float, A-law, mu-law, extensible.
_FRAME_ALIGNED_WAV_FORMATS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
_UNKNOWN_WAV_SIZE = 0x80000000  # data sizes from here up are streaming writers' placeholders


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aif", ".aiff")


def list_audio_files(folder: str | os.PathLike) -> list[str]:
    """Audio files (by extension, any case) anywhere under `folder`, sorted."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"audio folder {folder} does not exist or is not a folder")
    found = []
    for parent, _, names in os.walk(folder):
        found += [os.path.join(parent, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS)]
    return sorted(found)


def read_input_list(path: str | os.PathLike) -> list[str]:
    """The audio files named in a list file: one path per line; blank lines and lines starting
    with `#` are skipped; a relative path is relative to the list file's folder.

    Raises:
        FileNotFoundError: no list file at `path`.
        InputError: the list names no file, or is not UTF-8 text.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file]
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text list of audio files ({error})") from error
    base = os.path.dirname(path)
    files = [os.path.join(base, line) for line in lines if line and not line.startswith("#")]
    if not files:
        raise InputError(f"{path}: the list names no audio file")
    return files


def input_audio_files(arguments: list[str], input_list: str | None = None) -> list[str]:
    """The audio files a command is given: each argument a file or a folder (its audio files,
    recursively, sorted), then those of `input_list` (`read_input_list`), in order.

    Raises:
        FileNotFoundError / InputError: as `read_input_list`; a folder with no audio file.
    """
    files = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = list_audio_files(argument)
            if not found:
                raise InputError(
                    f"{argument}: a folder with no audio files ({', '.join(AUDIO_EXTENSIONS)})"
                )
            files += found
        else:
            files.append(argument)
    if input_list is not None:
        files += read_input_list(input_list)
    return files


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


def wav_declared_frames(path: str | os.PathLike) -> int | None:
    """Frames a RIFF/RIFX WAVE header declares (its `data` chunk size / block align).

    None when the file is not such a WAV, its format is compressed (a block is not one frame),
    or the header states no length (size 0 or a streaming placeholder of 2 GiB or more).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
                if chunk_id == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    tag, _, _, _, block_align = struct.unpack(endian + "HHIIH", fmt[:14])
                    if tag not in _FRAME_ALIGNED_WAV_FORMATS or block_align == 0:
                        return None
                    f.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
                elif chunk_id == b"data":
                    if block_align is None or size == 0 or size >= _UNKNOWN_WAV_SIZE:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def _decode_error(path: str, what: str, error: Exception) -> AudioError:
    """The AudioError of a file soundfile could not open or decode (`what`: "cannot read audio
    header", "cannot decode audio"). libsndfile says "File does not exist or is not a regular
    file (possibly a pipe?)" of an existing file in no format it knows (a fake `.mp3`): that
    file is said to be no decodable audio instead."""
    message = str(error)
    if "does not exist or is not a regular file" in message and os.path.isfile(path):
        message = (
            "not decodable audio: its content is in none of the formats soundfile reads "
            "(wav, flac, ogg, mp3...), whatever its name"
        )
    return AudioError(f"{path}: {what}: {message}")


def _truncated(path: str, declared: int, present: int) -> AudioError:
    return AudioError(f"{path}: truncated: header declares {declared} frames, {present} present")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) of an audio file, read from its header.

    Raises:
        AudioError: missing or unreadable file, or a WAV whose data is shorter than its
            header declares (other formats show truncation only when decoded).
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        info = sf.info(path)
    except _DECODE_ERRORS as e:
        raise _decode_error(path, "cannot read audio header", e) from e
    declared = wav_declared_frames(path)
    if declared is not None and declared > info.frames:
        raise _truncated(path, declared, info.frames)
    return info.samplerate, info.frames, info.channels


def stream_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = 400,
    max_seconds: float | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Decodes `path` block by block: yields float32 mono blocks [n] at `sample_rate`.

    The blocks concatenated equal `load_audio(path, ...)` exactly. Checks are made as the file
    is read, so an AudioError can come after some blocks (the file is truncated, a block holds
    NaN, or the whole is too short): a caller must discard what it made of the earlier ones.

    Args:
        path, sample_rate, min_samples, max_seconds: as for `load_audio`.
        block_frames: int. Frames (at the file's rate) decoded at a time. Defaults to 2**18.

    Raises:
        AudioError: as `load_audio`.
    """
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    path = os.fspath(path)
    _check_file(path)
    wav_frames = wav_declared_frames(path)
    try:
        with sf.SoundFile(path) as f:
            orig_rate, declared = f.samplerate, f.frames
            if wav_frames is not None and wav_frames > declared:
                raise _truncated(path, wav_frames, declared)
            wanted = declared if max_seconds is None else int(np.ceil(max_seconds * orig_rate))
            wanted = min(wanted, declared)
            resampler = None
            if orig_rate != sample_rate:
                resampler = soxr.ResampleStream(
                    orig_rate, sample_rate, 1, dtype="float32", quality="HQ"
                )
            decoded = produced = 0
            while decoded < wanted:
                data = f.read(min(block_frames, wanted - decoded), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                decoded += data.shape[0]
                if not np.isfinite(data).all():
                    raise AudioError(f"{path}: audio contains NaN or infinite values")
                block = to_mono(data)
                if resampler is not None:
                    block = resampler.resample_chunk(block, last=decoded >= wanted)
                produced += block.shape[0]
                if block.shape[0]:
                    yield block
    except _DECODE_ERRORS as e:
        raise _decode_error(path, "cannot decode audio", e) from e
    if decoded < wanted:
        raise _truncated(path, declared, decoded)
    if decoded == 0:
        raise AudioError(f"{path}: empty audio (0 frames)")
    if produced < min_samples:
        raise AudioError(
            f"{path}: too short: {produced} samples "
            f"({produced / sample_rate:.4f} s) at {sample_rate} Hz, "
            f"minimum is {min_samples} samples"
        )


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
        AudioError: missing, unreadable, corrupt or truncated file, 0 frames, NaN/inf, or too
            short.
    """
    blocks = list(stream_audio(path, sample_rate, min_samples, max_seconds))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def pcm16_to_float(waveform) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1) (x / PCM16_SCALE, as soundfile reads it); any other
    array as float32 (unscaled). The builders store int16; this is its one conversion in NumPy
    (`data/sources.to_float` is the same in tf.data)."""
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        return waveform.astype("float32") / np.float32(PCM16_SCALE)
    return waveform.astype("float32", copy=False)
