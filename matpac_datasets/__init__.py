"""TFDS builders for MATPAC pre-training and downstream datasets (TensorFlow-only).

One package per dataset, `matpac_datasets/<name>/<name>_dataset_builder.py` with a `Builder` class,
registered in TFDS as `matpac_<name>` (e.g. `matpac_esc50`) once its module is imported; the
prefix keeps them apart from TFDS's own `gtzan`, `nsynth` and `spoken_digit`.
"""

from __future__ import annotations

import importlib

NAMES = (
    "esc50",
    "urbansound8k",
    "gtzan",
    "nsynth",
    "openmic",
    "magnatagatune",
    "fsd50k",
    "mtg_jamendo",
    "spoken_digit",
    "audioset",
    "audio_folder",
)


def builder_class(name: str) -> type:
    """The `Builder` class of `matpac_datasets/<name>/` (importing it registers `matpac_<name>`)."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")
    return importlib.import_module(f"matpac_datasets.{name}.{name}_dataset_builder").Builder
