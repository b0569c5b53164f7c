"""Tests of the MTG-Jamendo builder on dummy_data/ (split-0 rows, 0.5 s MP3s), every config."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.mtg_jamendo import mtg_jamendo_dataset_builder as mtg
from matpac_keras import class_mappings

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend

SPLIT_SIZES = {"train": 2, "valid": 1, "test": 1}


class _Checks:
    """The checks of every config; one DatasetBuilderTestCase per config uses them."""

    DATASET_CLASS = mtg.Builder
    SPLITS = SPLIT_SIZES
    NUM_LABELS = 0
    KNOWN_ROW = ("", ())  # (filename, label indices read from the mapping file by hand)

    def _manual_copy(self, name: str) -> pathlib.Path:
        manual = pathlib.Path(self.tmp_dir) / name
        shutil.copytree(self.dummy_data, manual)
        return manual

    def _prepare(self, manual_dir=None):
        config = self.BUILDER_CONFIG_NAMES_TO_TEST[0]
        return builder_testing.prepare(
            self.DATASET_CLASS, manual_dir or self.dummy_data, self.tmp_dir, config=config
        )

    def test_labels_tracks_and_audio(self):
        builder = self._prepare()
        config = builder.builder_config
        labels = config.labels
        self.assertEqual(len(labels), self.NUM_LABELS)
        self.assertEqual(labels, class_mappings.task_labels(config.head))
        self.assertEqual(builder.info.features["labels"].shape, (self.NUM_LABELS,))
        root = self.dummy_data / "mtg-jamendo-dataset"
        seen = {}
        for split in SPLIT_SIZES:
            listed = mtg.read_split(mtg.split_file(root, config.name, split), labels)
            rows = {track.path: track for track in listed}
            for name, ex in builder_testing.examples(builder, split).items():
                track = rows[name]  # every example is a row of its split's file
                on = [labels[i] for i in np.flatnonzero(ex["labels"])]
                self.assertEqual(sorted(on), sorted(track.tags))
                self.assertEqual(ex["track_id"].decode(), track.track_id)
                # MP3 decoding is lossy and adds encoder delay: check the length only.
                self.assertAlmostEqual(len(ex["audio"]) / 16000, 0.5, delta=0.1)
                self.assertEqual(ex["audio"].dtype, np.int16)
                seen[name] = ex
        self.assertEqual(len(seen), sum(SPLIT_SIZES.values()))
        name, indices = self.KNOWN_ROW
        self.assertEqual(list(np.flatnonzero(seen[name]["labels"])), list(indices))

    def test_missing_split_file_is_named(self):
        manual = self._manual_copy("incomplete")
        config = self.BUILDER_CONFIG_NAMES_TO_TEST[0]
        gone = mtg.split_file(manual / "mtg-jamendo-dataset", config, "test")
        gone.unlink()
        with self.assertRaisesRegex(FileNotFoundError, f"{gone}: split file not found"):
            self._prepare(manual)


class MtgJamendoGenreTest(_Checks, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["genre"]
    NUM_LABELS = 87
    # easylistening, electronic, lounge: 31, 33, 57 in mtg_genre_mapping.json.
    KNOWN_ROW = ("75/775.mp3", (31, 33, 57))

    def test_missing_audio_is_counted_and_low_quality_names_are_read(self):
        builder = self._prepare()
        # 43/243.mp3 is listed in train without a file; 15/215.low.mp3 stands for 15/215.mp3.
        skipped = {"train": {"missing": 1}, "valid": {}, "test": {}}
        self.assertEqual(builder.info.metadata["skipped"], skipped)
        self.assertEqual([s.key for s in builder.skipped], ["43/243.mp3"])
        [test] = builder_testing.examples(builder, "test").values()
        self.assertEqual(test["filename"].decode(), "15/215.mp3")
        self.assertEqual(list(np.flatnonzero(test["labels"])), [59])  # genre---metal

    def test_a_tag_outside_the_vocabulary_is_refused(self):
        manual = self._manual_copy("bad_tag")
        path = mtg.split_file(manual / "mtg-jamendo-dataset", "genre", "valid")
        path.write_text(path.read_text().replace("genre---lounge", "genre---polka"))
        with self.assertRaisesRegex(ValueError, rf"{path}:2: tag\(s\) \['genre---polka'\] not"):
            self._prepare(manual)


class MtgJamendoInstrumentTest(_Checks, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["instrument"]
    NUM_LABELS = 40
    # classicalguitar, doublebass, drums, guitar: 10, 12, 14, 18 in mtg_instrument_mapping.json.
    KNOWN_ROW = ("59/8559.mp3", (10, 12, 14, 18))


class MtgJamendoMoodthemeTest(_Checks, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["moodtheme"]
    NUM_LABELS = 56
    KNOWN_ROW = ("46/3346.mp3", (5, 34))  # mood/theme---calm, mood/theme---melodic


class MtgJamendoTop50Test(_Checks, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["top50tags"]
    NUM_LABELS = 50
    KNOWN_ROW = ("82/382.mp3", (4, 44))  # genre---classical, instrument---voice

    def test_split_files_and_audio_folders_beside_each_other(self):
        """Layout 3: manual_dir is the clone, with the NN/ folders directly in it."""
        manual = pathlib.Path(self.tmp_dir) / "flat"
        shutil.copytree(self.dummy_data / "mtg-jamendo-dataset", manual)
        for folder in (self.dummy_data / "audio").iterdir():
            shutil.copytree(folder, manual / folder.name)
        builder = self._prepare(manual)
        sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
        self.assertEqual(sizes, SPLIT_SIZES)


def test_read_split_checks_rows(tmp_path):
    labels = ("genre---rock", "genre---metal")
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
    row = "track_0000241\tartist_000005\talbum_000033\t41/241.mp3\t340.1"
    path = tmp_path / "autotagging_genre-train.tsv"
    path.write_text(f"{header}\r\n{row}\tgenre---rock\tgenre---metal\r\n\r\n")  # CRLF, blank
    [track] = mtg.read_split(path, labels)
    assert track == mtg.Track("track_0000241", "41/241.mp3", ("genre---rock", "genre---metal"))
    np.testing.assert_array_equal(
        mtg.multi_hot(track.tags, {label: i for i, label in enumerate(labels)}), [True, True]
    )
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(ValueError, match=f"{path}:2: no tag"):
        mtg.read_split(path, labels)
    path.write_text(f"{header}\n{row}\tgenre---rock\n{row}\tgenre---metal\n")
    with pytest.raises(ValueError, match=f"{path}:3: 41/241.mp3 already listed on line 2"):
        mtg.read_split(path, labels)
    path.write_text(f"TRACK\tPATH\n{row}\tgenre---rock\n")
    with pytest.raises(ValueError, match=f"{path}:1: expected the columns"):
        mtg.read_split(path, labels)


def test_audio_folder_and_file_names(tmp_path):
    assert mtg.audio_dir(tmp_path) == tmp_path
    (tmp_path / "audio-low" / "15").mkdir(parents=True)
    assert mtg.audio_dir(tmp_path) == tmp_path / "audio-low"
    folder = tmp_path / "audio-low"
    assert mtg.audio_file(folder, "15/215.mp3") == folder / "15/215.mp3"  # neither: as listed
    (folder / "15/215.low.mp3").write_bytes(b"")
    assert mtg.audio_file(folder, "15/215.mp3") == folder / "15/215.low.mp3"
    (folder / "15/215.mp3").write_bytes(b"")
    assert mtg.audio_file(folder, "15/215.mp3") == folder / "15/215.mp3"  # full quality first
    (tmp_path / "audio").mkdir()
    assert mtg.audio_dir(tmp_path) == tmp_path / "audio"


def test_vocabularies_are_the_authors_heads():
    heads = {c.name: c.head for c in mtg.Builder.BUILDER_CONFIGS}
    assert heads == {
        "genre": "mtg_genre",
        "instrument": "mtg_instrument",
        "moodtheme": "mtg_mood",
        "top50tags": "mtg_top50",
    }
    top50 = class_mappings.task_labels("mtg_top50")
    prefixes = {label.split("---")[0] for label in top50}
    assert prefixes == {"genre", "instrument", "mood/theme"}  # the three categories mixed
