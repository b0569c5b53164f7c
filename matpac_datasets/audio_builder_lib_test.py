"""Tests of the shared builder code and of the builders' registration."""

import pickle

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

import matpac_datasets as datasets
from matpac_datasets import audio_builder_lib as lib

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend


def test_to_int16_inverts_soundfile_and_clips(tmp_path):
    pcm = np.random.default_rng(0).integers(-32768, 32768, 5000).astype(np.int16)
    pcm[:2] = [-32768, 32767]
    sf.write(tmp_path / "x.wav", pcm, 16000, subtype="PCM_16")
    as_float, _ = sf.read(tmp_path / "x.wav", dtype="float32")
    np.testing.assert_array_equal(lib.to_int16(as_float), pcm)
    clipped = lib.to_int16(np.array([1.0, -1.0, 1.7, -2.5, 0.25]))
    np.testing.assert_array_equal(clipped, [32767, -32768, 32767, -32768, 8192])


def test_audio_feature_stores_two_bytes_per_sample():
    feature = lib.audio_feature()
    wave = np.array([-32768, -1, 0, 1, 32767, 1234], np.int16)
    encoded = feature.encode_example(wave)
    assert encoded == wave.tobytes()  # raw little-endian int16, not int64 varints
    np.testing.assert_array_equal(feature.decode_example_np(encoded), wave)
    assert (feature.sample_rate, feature.np_dtype) == (16000, np.int16)


def test_find_root_and_listing(tmp_path):
    (tmp_path / "Top" / "meta").mkdir(parents=True)
    (tmp_path / "Top" / "meta" / "x.csv").write_text("a\n")
    assert lib.find_root(tmp_path, "meta/x.csv", ["Other", "Top"]) == tmp_path / "Top"
    with pytest.raises(FileNotFoundError, match="meta/y.csv"):
        lib.find_root(tmp_path, "meta/y.csv", ["Top"])
    for name in ("b/one.WAV", "a.flac", "b/c/two.mp3", "b/skip.txt", "three.Ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in lib.list_audio_files(tmp_path)]
    assert found == ["a.flac", "b/c/two.mp3", "b/one.WAV", "three.Ogg"]


def test_csv_helpers_name_the_file(tmp_path):
    (tmp_path / "m.csv").write_text("x,y\n1,2\n")
    rows = lib.read_csv(tmp_path / "m.csv")
    assert rows == [{"x": "1", "y": "2"}]
    with pytest.raises(ValueError, match=r"m\.csv.*'z'"):
        lib.require_columns(tmp_path / "m.csv", rows, ["x", "z"])


def test_fold_table_groups_rows_and_names_bad_ones(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("name,fold,cid,cname\na.wav,2,1,dog\nb.wav,1,0,cat\nc.wav,2,0,cat\n")
    folds = lib.read_fold_table(path, ["name", "fold"], "cid", "cname", ["cat", "dog"], 3)
    assert {k: [r["name"] for r in rows] for k, rows in folds.items()} == {
        1: ["b.wav"], 2: ["a.wav", "c.wav"], 3: []
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"meta\.csv: unexpected class in row .*a\.wav"):
        lib.read_fold_table(path, ["name"], "cid", "cname", ["cat", "bird"], 3)
    with pytest.raises(ValueError, match=r"meta\.csv: fold 2 not in 1\.\.1"):
        lib.read_fold_table(path, ["name"], "cid", "cname", ["cat", "dog"], 1)
    with pytest.raises(ValueError, match=r"meta\.csv: missing column\(s\) \['salience'\]"):
        lib.read_fold_table(path, ["salience"], "cid", "cname", ["cat", "dog"], 3)


def test_skip_bad_files_survives_pickling(tmp_path):
    builder = datasets.builder_class("esc50")(data_dir=str(tmp_path), skip_bad_files=False)
    restored = pickle.loads(pickle.dumps(builder))
    assert restored.skip_bad_files is False
    assert datasets.builder_class("esc50")(data_dir=str(tmp_path)).skip_bad_files is True


@pytest.mark.parametrize("name", datasets.NAMES)
def test_registered_under_a_matpac_name(name, tmp_path):
    cls = datasets.builder_class(name)
    assert cls.name == f"matpac_{name}"
    builder = tfds.builder(cls.name, data_dir=str(tmp_path))
    assert type(builder) is cls
    assert builder.info.features["audio"].sample_rate == 16000


def test_tfds_own_builders_still_load():
    for name in datasets.NAMES:
        datasets.builder_class(name)
    # Our names must not shadow TFDS's gtzan / nsynth / spoken_digit (legacy and new-style).
    for name in ("gtzan", "nsynth", "spoken_digit"):
        assert not tfds.builder_cls(name).__module__.startswith("datasets.")
    assert "mnist" in tfds.list_builders(with_community_datasets=False)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'esc5'"):
        datasets.builder_class("esc5")
