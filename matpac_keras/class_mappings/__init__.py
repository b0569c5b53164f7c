"""Label names of the classification heads a MATPAC classifier can carry, in output order.

The authors' heads (SPEC section 9) come with label files, kept here as their inference package
ships them:

- `audioset_mapping.csv` (index, mid, display_name): the AudioSet fine-tuned head's output i is
  the i-th class in the order of `mid`, not the ontology's index order (`audioset_mids()`);
- `esc50_mapping.json` (index -> label), `openmic_mapping.json` and `mtg_*_mapping.json`
  (label -> index), `fsd50k_mapping.csv` (index, label, mid; no header row).

The other downstream tasks (nsynth, gtzan, magnatagatune, urbansound8k) have no authors' file:
their labels are those of our builders (`matpac_datasets/`), in their order. `TASK_HEADS` says,
per task, how many outputs a head has and whether the task is multi-label.
"""

import csv
import dataclasses
import importlib
import json
import pathlib

from matpac_keras.errors import InputError

_HERE = pathlib.Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class TaskHead:
    """A task's head: `num_classes` outputs, multi-label or not, labels read from `source` (a
    file beside this module, or "module:ATTRIBUTE" of a builder's tuple of names)."""

    num_classes: int
    multi_label: bool
    source: str


TASK_HEADS = {
    "audioset": TaskHead(527, True, "audioset_mapping.csv"),
    "openmic": TaskHead(20, True, "openmic_mapping.json"),
    "mtg_genre": TaskHead(87, True, "mtg_genre_mapping.json"),
    "mtg_instrument": TaskHead(40, True, "mtg_instrument_mapping.json"),
    "mtg_mood": TaskHead(56, True, "mtg_mood_mapping.json"),
    "mtg_top50": TaskHead(50, True, "mtg_top50_mapping.json"),
    "fsd50k": TaskHead(200, True, "fsd50k_mapping.csv"),
    "esc50": TaskHead(50, False, "esc50_mapping.json"),
    "nsynth": TaskHead(11, False, "matpac_datasets.nsynth.nsynth_dataset_builder:FAMILIES"),
    "gtzan": TaskHead(10, False, "matpac_datasets.gtzan.gtzan_dataset_builder:GENRES"),
    "magnatagatune": TaskHead(
        50, True, "matpac_datasets.magnatagatune.magnatagatune_dataset_builder:TAGS"
    ),
    "urbansound8k": TaskHead(
        10, False, "matpac_datasets.urbansound8k.urbansound8k_dataset_builder:CLASSES"
    ),
}


def task_head(task: str) -> TaskHead:
    """The `TaskHead` of `task`; InputError naming the known tasks otherwise."""
    if task not in TASK_HEADS:
        raise InputError(f"task {task!r}: not one of {sorted(TASK_HEADS)}")
    return TASK_HEADS[task]


def _ordered(mapping: dict, path: pathlib.Path, label_to_index: bool) -> list[str]:
    pairs = (
        [(int(v), k) for k, v in mapping.items()]
        if label_to_index
        else [(int(k), v) for k, v in mapping.items()]
    )
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise ValueError(f"{path}: indices are not 0 .. {len(pairs) - 1}")
    return [label for _, label in pairs]


def _audioset_rows() -> list[dict[str, str]]:
    """The rows (index, mid, display_name) of `audioset_mapping.csv`, sorted by `mid`: the
    order of the AudioSet head's outputs."""
    with (_HERE / "audioset_mapping.csv").open(newline="", encoding="utf-8") as file:
        return sorted(csv.DictReader(file), key=lambda row: row["mid"])


def audioset_mids() -> tuple[str, ...]:
    """The 527 AudioSet label MIDs in head output order (sorted), parallel to
    `task_labels("audioset")`."""
    return tuple(row["mid"] for row in _audioset_rows())


def _read(source: str) -> list[str]:
    if ":" in source:
        module, _, attribute = source.partition(":")
        return list(getattr(importlib.import_module(module), attribute))
    path = _HERE / source
    if source == "audioset_mapping.csv":
        return [row["display_name"] for row in _audioset_rows()]
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as file:
            rows = [row for row in csv.reader(file) if row]
        return _ordered({row[0]: row[1] for row in rows}, path, label_to_index=False)
    mapping = json.loads(path.read_text(encoding="utf-8"))
    label_to_index = all(isinstance(value, int) for value in mapping.values())
    return _ordered(mapping, path, label_to_index)


def task_labels(task: str) -> tuple[str, ...]:
    """The label names of `task`'s head outputs, in output order (`TASK_HEADS`)."""
    head = task_head(task)
    labels = tuple(_read(head.source))
    if len(labels) != head.num_classes:
        raise ValueError(f"{head.source}: {len(labels)} labels, {head.num_classes} expected")
    return labels
