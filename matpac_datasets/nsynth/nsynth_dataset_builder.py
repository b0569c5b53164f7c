"""NSynth: 305,979 four-second notes, 11 instrument families (official train/valid/test)."""

from __future__ import annotations

import json

import numpy as np
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib

# `instrument_family` 0-10 of examples.json, in order.
FAMILIES = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
    "synth_lead", "vocal",
)  # fmt: skip
SOURCES = ("acoustic", "electronic", "synthetic")
SPLITS = ("train", "valid", "test")


class Builder(lib.AudioBuilder):
    """NSynth with the instrument family as label (`synth_lead` only occurs in train)."""

    name = "matpac_nsynth"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 16 kHz mono int16 audio, family labels."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download nsynth-{train,valid,test}.jsonwav.tar.gz
    (https://magenta.tensorflow.org/datasets/nsynth), extract all three into manual_dir: it then
    holds `nsynth-<split>/examples.json` and `nsynth-<split>/audio/<note_str>.wav`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "label": tfds.features.ClassLabel(names=FAMILIES),
                "instrument_source": tfds.features.ClassLabel(names=SOURCES),
                "pitch": tfds.features.Scalar(dtype=np.int32, doc="MIDI pitch, 0-127"),
                "velocity": tfds.features.Scalar(dtype=np.int32, doc="MIDI velocity, 0-127"),
                "filename": tfds.features.Text(doc="<note_str>.wav"),
                "split": tfds.features.Text(),
            },
            supervised_keys=("audio", "label"),
            homepage="https://magenta.tensorflow.org/datasets/nsynth",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, "nsynth-test/examples.json", ["nsynth"])
        for split in SPLITS:
            if not (root / f"nsynth-{split}" / "examples.json").exists():
                raise FileNotFoundError(f"{root / f'nsynth-{split}' / 'examples.json'} not found")
        return {split: self._generate_examples(root / f"nsynth-{split}", split) for split in SPLITS}

    def _generate_examples(self, folder, split):
        notes = json.loads((folder / "examples.json").read_text())
        clips = []
        for note_str, note in sorted(notes.items()):
            family = int(note["instrument_family"])
            if FAMILIES[family] != note["instrument_family_str"]:
                raise ValueError(f"{folder / 'examples.json'}: unexpected family in {note_str}")
            features = {
                "label": family,
                "instrument_source": int(note["instrument_source"]),
                "pitch": int(note["pitch"]),
                "velocity": int(note["velocity"]),
                "filename": f"{note_str}.wav",
                "split": split,
            }
            path = folder / "audio" / f"{note_str}.wav"
            clips.append(lib.Clip(key=note_str, path=path, features=features))
        yield from self._audio_examples(clips, split)
