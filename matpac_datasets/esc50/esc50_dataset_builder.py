"""ESC-50: 2,000 five-second environmental clips, 50 classes, 5 folds (16 kHz mono)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from matpac_datasets import audio_builder_lib as lib

# `target` 0-49 of meta/esc50.csv, in order.
CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)  # fmt: skip
NUM_FOLDS = 5


class Builder(lib.AudioBuilder):
    """ESC-50 with one split per official fold (`fold1` ... `fold5`)."""

    name = "matpac_esc50"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: full-length 16 kHz mono int16 audio."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download https://github.com/karolpiczak/ESC-50/archive/master.zip, extract it and pass the
    `ESC-50-master/` folder (or its parent) as manual_dir: it holds `meta/esc50.csv` and
    `audio/<fold>-<freesound id>-<take>-<target>.wav`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {
                "label": tfds.features.ClassLabel(names=CLASSES),
                "filename": tfds.features.Text(),
                "fold": tfds.features.Scalar(dtype=np.int32),
                "esc10": tfds.features.Scalar(dtype=np.bool_),
            },
            supervised_keys=("audio", "label"),
            homepage="https://github.com/karolpiczak/ESC-50",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = lib.find_root(dl_manager.manual_dir, "meta/esc50.csv", ["ESC-50-master"])
        columns = ["filename", "fold", "target", "category", "esc10"]
        folds = lib.read_fold_table(
            root / "meta/esc50.csv", columns, "target", "category", CLASSES, NUM_FOLDS
        )
        return {
            f"fold{k}": self._generate_examples(root, rows, split=f"fold{k}")
            for k, rows in folds.items()
        }

    def _generate_examples(self, root, rows, split):
        clips = [
            lib.Clip(
                key=row["filename"],
                path=root / "audio" / row["filename"],
                features={
                    "label": int(row["target"]),
                    "filename": row["filename"],
                    "fold": int(row["fold"]),
                    "esc10": row["esc10"] == "True",
                },
            )
            for row in rows
        ]
        yield from self._audio_examples(clips, split)
