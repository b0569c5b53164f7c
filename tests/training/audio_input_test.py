"""Real-audio training batches: epochs of the tf.data pipeline, resumable at any global step."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from matpac_keras.errors import InputError  # noqa: E402
from matpac_keras.frontend import LogMelSpectrogram  # noqa: E402
from matpac_keras.training.audio_input import AudioBatchStream, epoch_seed  # noqa: E402

pytestmark = pytest.mark.single_backend
CROP = 16  # frames: 2,800 samples at 16 kHz, shorter than every FSDD recording


@pytest.fixture(scope="module")
def folder(fsdd_dir, tmp_path_factory):
    """Seven spoken-digit recordings (8 kHz wav), linked into a folder of their own."""
    if not fsdd_dir.is_dir():
        pytest.skip(f"no FSDD recordings at {fsdd_dir}")
    out = tmp_path_factory.mktemp("audio")
    for path in sorted(fsdd_dir.glob("*.wav"))[:7]:
        (out / path.name).symlink_to(path)
    return out


def _take(stream, start, count):
    batches = stream.batches(start)
    taken = [next(batches) for _ in range(count)]
    assert all(isinstance(b, tuple) and len(b) == 1 for b in taken)  # (x,): what Keras takes
    return [b for (b,) in taken]


def test_batches_are_log_mel_crops_and_resume_exactly(folder):
    stream = AudioBatchStream(folder, "train", batch_size=2, crop_frames=CROP, seed=3)
    whole = _take(stream, 0, 8)  # 7 clips, batches of 2: 3 per epoch
    assert stream.epoch_lengths == [3, 3]
    assert all(b.shape == (2, 80, CROP) and b.dtype == np.float32 for b in whole)
    assert all(np.isfinite(b).all() for b in whole)
    assert not np.array_equal(whole[0], whole[3])  # a new order and new crops each epoch
    assert stream.position(0) == (0, 0) and stream.position(4) == (1, 1)
    assert stream.position(7) == (2, 1)

    for start in (2, 4, 6):  # resumed mid-epoch, at an epoch start, with recorded lengths
        resumed = AudioBatchStream(
            folder, "train", 2, CROP, seed=3, epoch_lengths=stream.epoch_lengths[: start // 3]
        )
        for a, b in zip(_take(resumed, start, 8 - start), whole[start:], strict=True):
            np.testing.assert_array_equal(a, b)


def test_crops_are_the_front_end_of_the_recordings(folder):
    import soundfile
    import soxr

    stream = AudioBatchStream(folder, "train", batch_size=7, crop_frames=CROP, seed=0)
    (batch,) = _take(stream, 0, 1)  # the whole epoch: every recording once
    frontend = LogMelSpectrogram()
    for crop in batch:  # each crop is the log-mel of some hop-aligned window of some clip
        best = np.inf
        for path in sorted(folder.iterdir()):
            audio, rate = soundfile.read(path, dtype="float32")
            audio = soxr.resample(audio, rate, 16000)
            full = np.asarray(frontend(audio[None]))[0]
            for offset in range(full.shape[1] - CROP + 1):
                best = min(best, np.abs(full[:, offset : offset + CROP] - crop).max())
        assert best < 1e-3


def test_bad_source_and_seeds(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        AudioBatchStream(tmp_path / "missing", "train", 2, CROP, seed=0)
    seeds = {epoch_seed(s, e) for s in range(5) for e in range(20)}
    assert len(seeds) == 100 and all(0 <= s < 2**31 for s in seeds)


def test_logmel_in_step_gives_the_waveform_crops_of_the_same_log_mel(folder):
    """`logmel_in_step=True`: waveform crops, whose front end is the default stream's batch."""
    from matpac_keras.frontend import samples_for_frames

    logmels = AudioBatchStream(folder, "train", batch_size=2, crop_frames=CROP, seed=3)
    waves = AudioBatchStream(
        folder, "train", batch_size=2, crop_frames=CROP, seed=3, logmel_in_step=True
    )
    for logmel, wave in zip(_take(logmels, 0, 4), _take(waves, 0, 4), strict=True):
        assert wave.shape == (2, samples_for_frames(CROP)) and wave.dtype == np.float32
        np.testing.assert_allclose(np.asarray(LogMelSpectrogram()(wave)), logmel, atol=1e-5)
