"""tf.data pipelines: crops against the front end on the same waveform slices, drops, seeds, fit.

Real FSDD recordings (8 kHz, resampled to 16 kHz; most under 0.5 s) with 40-frame crops
(6,640 samples), so that some clips are long enough and others are dropped.
Tests marked single_backend only look at tf.data output; the others run Keras under each backend.
"""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from keras import ops

from matpac_keras.audio import load_audio
from matpac_keras.data.dropped import DroppedClips
from matpac_keras.data.pretraining import pretraining_dataset, random_crop
from matpac_keras.frontend import HOP_LENGTH, LogMelSpectrogram, samples_for_frames

CROP_FRAMES = 40
CROP = samples_for_frames(CROP_FRAMES)
single_backend = pytest.mark.single_backend


@pytest.fixture(scope="module")
def fsdd_files(fsdd_dir) -> list[str]:
    """30 recordings across digits and speakers."""
    files = sorted(str(path) for path in pathlib.Path(fsdd_dir).glob("*.wav"))
    assert len(files) == 3000, fsdd_dir
    return files[::100]


@pytest.fixture(scope="module")
def waves(fsdd_files) -> dict[str, np.ndarray]:
    return {path: load_audio(path) for path in fsdd_files}


def _rows(dataset, epochs: int = 1) -> list[np.ndarray]:
    """Every batch of `epochs` passes, concatenated per pass."""
    return [np.concatenate([b.numpy() for b in dataset]) for _ in range(epochs)]


def _locate(row: np.ndarray, waves: dict[str, np.ndarray]) -> list[tuple[str, int]]:
    """Every (file, start) with start a multiple of the hop where the waveform equals `row`."""
    found = []
    for path, wave in waves.items():
        if len(wave) >= len(row):
            windows = np.lib.stride_tricks.sliding_window_view(wave, len(row))[::HOP_LENGTH]
            found += [(path, int(i) * HOP_LENGTH) for i in np.flatnonzero((windows == row).all(1))]
    return found


def _logmel(waveform: np.ndarray) -> np.ndarray:
    return ops.convert_to_numpy(LogMelSpectrogram()(np.atleast_2d(waveform)))


@single_backend
def test_waveform_crops_are_hop_aligned_slices_of_every_long_enough_clip(fsdd_files, waves):
    dropped = DroppedClips()
    dataset = pretraining_dataset(
        fsdd_files, 3, CROP_FRAMES, seed=0, deterministic=True, logmel_in_pipeline=False,
        dropped=dropped,
    )  # fmt: skip
    assert dataset.element_spec == tf.TensorSpec((3, CROP), tf.float32)
    (rows,) = _rows(dataset)
    usable = {path for path, wave in waves.items() if len(wave) >= CROP}
    assert 6 <= len(usable) <= len(waves) - 6  # both kinds present
    assert len(rows) == len(usable) // 3 * 3  # each usable clip once, the remainder dropped
    assert dropped.counts == {"bad_audio": 0, "too_short": len(waves) - len(usable)}
    assert dropped.names("too_short") == set(waves) - usable
    located = [_locate(row, waves) for row in rows]
    assert all(len(matches) == 1 for matches in located)
    sources, starts = zip(*(matches[0] for matches in located), strict=True)
    assert len(set(sources)) == len(rows)
    assert all(0 <= s <= len(waves[p]) - CROP for p, s in zip(sources, starts, strict=True))
    assert len(set(starts)) > 3  # random offsets, not always the clip's start


@single_backend
def test_crop_offsets_are_uniform_over_every_frame_start():
    starts = 10  # the clip is 9 hops longer than a crop
    ramp = tf.range(CROP + 9 * HOP_LENGTH + 100, dtype=tf.float32)  # +100: not a whole frame
    seeds = tf.data.Dataset.random(seed=1).take(3000)
    firsts = np.array([int(c[0]) for c in seeds.map(lambda s: random_crop(ramp, s, CROP_FRAMES))])
    assert set(firsts % HOP_LENGTH) == {0}
    counts = np.bincount(firsts // HOP_LENGTH, minlength=starts)
    assert len(counts) == starts
    assert counts.min() > 230 and counts.max() < 370  # 300 expected each; sd 16.4


def test_logmel_crops_equal_the_front_end_of_the_same_waveform_slices(fsdd_files, waves):
    kwargs = dict(batch_size=3, crop_frames=CROP_FRAMES, seed=7, deterministic=True)
    (logmels,) = _rows(pretraining_dataset(fsdd_files, **kwargs))
    (crops,) = _rows(pretraining_dataset(fsdd_files, logmel_in_pipeline=False, **kwargs))
    assert logmels.shape == (len(crops), 80, CROP_FRAMES) and logmels.dtype == np.float32
    # Under every backend, the layer called directly on the cropped waveforms.
    np.testing.assert_allclose(logmels, _logmel(crops), atol=1e-4, rtol=0)
    # And those frames of the whole clip's log-mel (a one-frame shift is off by ~1).
    for logmel, crop in list(zip(logmels, crops, strict=True))[:3]:
        ((path, start),) = _locate(crop, waves)
        first = start // HOP_LENGTH
        whole = _logmel(waves[path])[0, :, first : first + CROP_FRAMES]
        np.testing.assert_allclose(logmel, whole, atol=1e-4, rtol=0)
        assert np.abs(whole[:, 1:] - logmel[:, :-1]).max() > 0.5


@single_backend
def test_same_seed_gives_the_same_batches(fsdd_files):
    def epochs(seed, deterministic=True):
        dataset = pretraining_dataset(
            fsdd_files, 2, CROP_FRAMES, seed=seed, deterministic=deterministic,
            logmel_in_pipeline=False,
        )  # fmt: skip
        return _rows(dataset, epochs=2)

    first, second = epochs(5), epochs(5)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # a new order and new crops every epoch
    assert not np.array_equal(first[0], epochs(6)[0])
    fast = epochs(5, deterministic=False)[0]  # same crops, maybe in another order
    assert {r.tobytes() for r in fast} <= {r.tobytes() for r in np.concatenate(first)}
    with pytest.raises(ValueError, match="needs a seed"):
        pretraining_dataset(fsdd_files, 2, deterministic=True)


@single_backend
def test_bad_and_short_files_of_a_folder_are_dropped_and_counted(tmp_path, fsdd_files, waves):
    (tmp_path / "a" / "b").mkdir(parents=True)
    copies = {}
    for i, path in enumerate(fsdd_files[:8]):
        copy = tmp_path / ("a" if i % 2 else "a/b") / f"clip{i}.WAV"
        copy.write_bytes(pathlib.Path(path).read_bytes())
        copies[str(copy)] = waves[path]
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + bytes(range(200)))
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio")
    dropped = DroppedClips()
    dataset = pretraining_dataset(tmp_path, 1, CROP_FRAMES, dropped=dropped)
    short = {path for path, wave in copies.items() if len(wave) < CROP}
    for _ in range(2):  # a second epoch counts nobody twice
        assert len(list(dataset)) == len(copies) - len(short)
        assert dropped.counts == {"bad_audio": 2, "too_short": len(short)}
    assert dropped.names("too_short") == short
    assert dropped.names("bad_audio") == {
        str(tmp_path / "broken.wav"),
        str(tmp_path / "empty.flac"),
    }


class _ToyAudio(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Seven int16 clips of 0.3 to 0.75 s, as the datasets/ builders store audio."""

    VERSION = tfds.core.Version("1.0.0")
    LENGTHS = (5000, 12000, 6639, 6640, 9000, 4000, 11000)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "audio": tfds.features.Audio(shape=(None,), dtype=np.int16, sample_rate=16000),
                    "filename": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, length in enumerate(self.LENGTHS):
            audio = np.random.default_rng(i).integers(-30000, 30000, length, dtype=np.int16)
            yield i, {"audio": audio, "filename": f"clip{i}.wav", "label": i % 3}


@single_backend
def test_tfds_sources(tmp_path):
    builder = _ToyAudio(data_dir=str(tmp_path))
    builder.download_and_prepare()
    stored = {
        ex["filename"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))
    }
    waves = {name: ex["audio"] / np.float32(32768) for name, ex in stored.items()}

    for source in (builder, builder.as_dataset(split="train")):
        dropped = DroppedClips()
        dataset = pretraining_dataset(
            source, 1, CROP_FRAMES, seed=3, deterministic=True, logmel_in_pipeline=False,
            shuffle_buffer=4, dropped=dropped,
        )  # fmt: skip
        rows, second_epoch = _rows(dataset, epochs=2)
        assert len(rows) == len(second_epoch) == 4
        again = pretraining_dataset(
            source, 1, CROP_FRAMES, seed=3, deterministic=True, logmel_in_pipeline=False,
            shuffle_buffer=4,
        )  # fmt: skip
        np.testing.assert_array_equal(_rows(again)[0], rows)
        assert dropped.names("too_short") == {"clip0.wav", "clip2.wav", "clip5.wav"}
        assert all(len(_locate(row, waves)) == 1 for row in rows)


@single_backend
def test_bad_arguments(tmp_path, fsdd_files):
    with pytest.raises(ValueError, match="batch_size must be a positive int; got 0"):
        pretraining_dataset(fsdd_files, 0)
    with pytest.raises(ValueError, match="crop_frames must be a positive int; got -1"):
        pretraining_dataset(fsdd_files, 2, crop_frames=-1)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pretraining_dataset(tmp_path / "nowhere", 2)


class _XOnlyModel(keras.Model):
    """Trained on x alone, as the pretrainer is: pulls a read-out of the log-mel towards 1."""

    def __init__(self, frontend: bool):
        super().__init__(name="x_only_model")  # TensorFlow rejects the default "_x_only_model"
        self.frontend = LogMelSpectrogram() if frontend else None
        self.readout = keras.layers.Dense(1)

    def call(self, x):
        logmel = x if self.frontend is None else self.frontend(x)
        return self.readout(ops.mean(logmel, axis=2))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(ops.square(y_pred - 1.0))


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # epoch length found in epoch 1
@pytest.mark.parametrize("logmel_in_pipeline", [True, False])
def test_fit_on_the_pipeline(fsdd_files, logmel_in_pipeline):
    dataset = pretraining_dataset(
        fsdd_files, 3, CROP_FRAMES, seed=0, logmel_in_pipeline=logmel_in_pipeline
    )
    model = _XOnlyModel(frontend=not logmel_in_pipeline)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model(next(iter(dataset)).numpy())  # builds the read-out
    before = ops.convert_to_numpy(model.readout.kernel).copy()
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert not np.allclose(ops.convert_to_numpy(model.readout.kernel), before)
