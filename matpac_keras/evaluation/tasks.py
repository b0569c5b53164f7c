"""Downstream tasks as data: which TFDS dataset, labels, splits or folds, and metric.

One row per task (SPEC section 7; matpac_datasets/README.md). The TFDS builders live in the
`matpac_datasets/<builder>/` packages and register `matpac_<builder>`.

- `folds`: leave-one-fold-out tasks (ESC-50, UrbanSound8K); a run's score is the mean over
  folds. Otherwise `train` / `valid` / `test` name the official splits.
- `valid` None: no official validation split (OpenMIC, FSDD, and the training folds of the fold
  tasks). The probe then holds out a seeded random fraction of the training clips
  (`--valid_fraction`, 10% by default, as EVAR does for ESC-50/US8K; MATPAC does not say).
- `evar_seconds`: EVAR's `unit_sec` (crop or zero-pad every clip to it), used only with
  `--input_length=evar`; MATPAC embeds whole clips. We always keep a clip's start (EVAR crops
  FSD50K's training and validation clips at random).
- MagnaTagATune: the filtered standard split by default, `magnatagatune_unfiltered` for the
  directory rule without filtering.
- MTG-Jamendo (`mtg_genre`, `mtg_instrument`, `mtg_mood`, `mtg_top50`): split-0 of each tag set,
  whole tracks (matpac_datasets/mtg_jamendo/README.md), labels in the authors' head order.
- `TASK_GROUPS`: names that stand for several tasks in `matpac-evaluate --task` (`expand`).
"""

import dataclasses
from collections.abc import Sequence

METRICS = ("accuracy", "map")


@dataclasses.dataclass(frozen=True)
class Task:
    """One downstream task.

    name: our short name (e.g. "esc50"). builder: the `matpac_datasets/` package.
    builder_config: TFDS BuilderConfig name, or None.
    label_key: "label" (a ClassLabel) or "labels" (a multi-hot vector).
    mask_key: feature telling which labels are annotated (OpenMIC), or None.
    metric: "accuracy" or "map" (macro mAP; masked by `mask_key` when set).
    """

    name: str
    builder: str
    label_key: str
    metric: str
    train: str = "train"
    valid: str | None = "valid"
    test: str = "test"
    folds: tuple[str, ...] = ()
    builder_config: str | None = None
    mask_key: str | None = None
    evar_seconds: float | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric must be one of {METRICS}; got {self.metric!r}")

    @property
    def tfds_name(self) -> str:
        """The registered TFDS name, with the config when there is one."""
        name = f"matpac_{self.builder}"
        return f"{name}/{self.builder_config}" if self.builder_config else name

    @property
    def multi_label(self) -> bool:
        return self.label_key == "labels"

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split the task reads."""
        if self.folds:
            return self.folds
        return tuple(s for s in (self.train, self.valid, self.test) if s is not None)


def _folds(n: int) -> tuple[str, ...]:
    return tuple(f"fold{k}" for k in range(1, n + 1))


TASKS = {
    task.name: task
    for task in (
        Task("esc50", "esc50", "label", "accuracy", folds=_folds(5), evar_seconds=5.0),
        Task(
            "urbansound8k", "urbansound8k", "label", "accuracy", folds=_folds(10), evar_seconds=4.0
        ),
        Task("gtzan", "gtzan", "label", "accuracy", evar_seconds=30.0),
        Task("nsynth", "nsynth", "label", "accuracy", evar_seconds=4.0),
        Task("openmic", "openmic", "labels", "map", valid=None, mask_key="label_mask"),
        Task("magnatagatune", "magnatagatune", "labels", "map", builder_config="filtered"),
        Task(
            "magnatagatune_unfiltered",
            "magnatagatune",
            "labels",
            "map",
            builder_config="unfiltered",
        ),
        Task("fsd50k", "fsd50k", "labels", "map", evar_seconds=7.6358),
        Task("mtg_genre", "mtg_jamendo", "labels", "map", builder_config="genre"),
        Task("mtg_instrument", "mtg_jamendo", "labels", "map", builder_config="instrument"),
        Task("mtg_mood", "mtg_jamendo", "labels", "map", builder_config="moodtheme"),
        Task("mtg_top50", "mtg_jamendo", "labels", "map", builder_config="top50tags"),
        Task("spoken_digit", "spoken_digit", "label", "accuracy", valid=None),
    )
}


def get_task(name: str) -> Task:
    """A task by short name ("esc50") or TFDS name ("matpac_esc50", "matpac_magnatagatune/...")."""
    for task in TASKS.values():
        if name in (task.name, task.tfds_name, f"matpac_{task.name}"):
            return task
    known = ", ".join(TASKS)
    raise ValueError(f"unknown task {name!r}; known: {known} (or their matpac_* TFDS names)")


# The papers' task lists (SPEC section 7): MATPAC's 7 tasks, and MATPAC++'s 11 (the same 7 plus
# the 4 MTG-Jamendo tag sets).
_MATPAC = ("openmic", "nsynth", "gtzan", "magnatagatune", "fsd50k", "esc50", "urbansound8k")
TASK_GROUPS = {
    "matpac": _MATPAC,
    "matpac_plusplus": _MATPAC + ("mtg_genre", "mtg_instrument", "mtg_mood", "mtg_top50"),
}


def expand(names: Sequence[str]) -> tuple[str, ...]:
    """`names` with each `TASK_GROUPS` name replaced by its tasks, in order; a task named twice
    (alone or through groups) is kept once, at its first place. Task names are not checked."""
    expanded = []
    for name in names:
        for task in TASK_GROUPS.get(name, (name,)):
            if task not in expanded:
                expanded.append(task)
    return tuple(expanded)


def manual_dirs(task_names: Sequence[str], entries: Sequence[str]) -> tuple[str | None, ...]:
    """The manual dir of each task from `--manual_dir` entries: one path per task, in order, or
    `NAME=PATH` entries, NAME a task or its builder (`mtg_jamendo=DIR` serves the four MTG
    tasks); a task no entry names gets None (its dataset must be prepared already).

    Raises:
        ValueError: naming the entry: a mix of both forms, a count that is not one per task,
            or a NAME that is none of the tasks' names or builders.
    """
    named = [e for e in entries if e is not None and "=" in e]
    if not named:
        if len(entries) != len(task_names):
            raise ValueError(
                f"{len(entries)} given for {len(task_names)} task(s): give one path per task "
                "in --task's order, or NAME=PATH entries (NAME a task or its builder)"
            )
        return tuple(entries)
    if len(named) != len(entries):
        raise ValueError(f"mix of NAME=PATH and plain entries: {list(entries)}")
    found = dict(entry.split("=", 1) for entry in entries)
    tasks = [get_task(name) for name in task_names]
    known = {t.name for t in tasks} | {t.builder for t in tasks}
    for name in found:
        if name not in known:
            raise ValueError(f"{name}={found[name]}: {name!r} is none of the tasks or builders")
    return tuple(found.get(t.name, found.get(t.builder)) for t in tasks)
