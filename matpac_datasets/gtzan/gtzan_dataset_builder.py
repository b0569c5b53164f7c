"""GTZAN genre collection, fault-filtered artist-disjoint split (443/197/290), 16 kHz mono."""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib

GENRES = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip
_SPLIT_FILES = {
    "train": "train_filtered.txt",
    "valid": "valid_filtered.txt",
    "test": "test_filtered.txt",
}
_SPLITS_DIR = epath.Path(__file__).parent / "splits"


class Builder(lib.AudioBuilder):
    """GTZAN restricted to the 930 clips of the Kereliuk/Sturm fault-filtered split."""

    name = "matpac_gtzan"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: fault-filtered split, 16 kHz mono int16 audio."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Get GTZAN (`genres.tar.gz`, or the Kaggle mirror
    andradaolteanu/gtzan-dataset-music-genre-classification) and pass the folder holding the
    genre folders `blues/ ... rock/` with `<genre>/<genre>.000NN.wav` (`.au` is accepted too), or
    one of its parents (`genres/`, `Data/genres_original/`), as manual_dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "label": tfds.features.ClassLabel(names=GENRES),
                "filename": tfds.features.Text(doc="<genre>/<genre>.000NN.wav, as in the lists"),
                "split": tfds.features.Text(),
            },
            supervised_keys=("audio", "label"),
            homepage="https://github.com/coreyker/dnn-mgr",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        subdirs = ["genres", "Data/genres_original", "genres_original"]
        root = lib.find_root(dl_manager.manual_dir, "blues", subdirs)
        return {
            split: self._generate_examples(root, _SPLITS_DIR / filename, split)
            for split, filename in _SPLIT_FILES.items()
        }

    def _generate_examples(self, root, split_file, split):
        clips = []
        for entry in lib.read_lines(split_file):
            path = root / entry
            if not path.exists() and path.with_suffix(".au").exists():
                path = path.with_suffix(".au")
            genre = entry.split("/")[0]
            features = {"label": GENRES.index(genre), "filename": entry, "split": split}
            clips.append(lib.Clip(key=entry, path=path, features=features))
        yield from self._audio_examples(clips, split)
