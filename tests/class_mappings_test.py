"""The label lists of the authors' heads, in output order, and of our builders' tasks."""

import csv
import json
import pathlib

import pytest

from matpac_keras import class_mappings
from matpac_keras.class_mappings import TASK_HEADS, task_head, task_labels
from matpac_keras.errors import InputError

pytestmark = pytest.mark.single_backend


@pytest.fixture(scope="module")
def shared(fixtures_dir):
    """The authors' label files as the task gives them (../shared/class_mappings)."""
    return fixtures_dir.parent / "class_mappings"


@pytest.mark.parametrize("task", sorted(TASK_HEADS))
def test_every_task_has_its_number_of_distinct_labels(task):
    labels = task_labels(task)
    assert len(labels) == task_head(task).num_classes == len(set(labels))
    assert all(isinstance(label, str) and label for label in labels)


def test_audioset_outputs_follow_the_mid_order(shared):
    with (shared / "audioset_mapping.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    by_mid = sorted(rows, key=lambda row: row["mid"])
    assert task_labels("audioset") == tuple(row["display_name"] for row in by_mid)
    assert task_labels("audioset")[0] != rows[0]["display_name"]  # not the index order
    mids = class_mappings.audioset_mids()  # the fine-tuning targets' order (matpac-finetune)
    assert mids == tuple(row["mid"] for row in by_mid) and list(mids) == sorted(set(mids))


@pytest.mark.parametrize(
    "task, index, label",
    [
        ("esc50", 0, "dog"),  # index -> label
        ("esc50", 49, "hand_saw"),
        ("openmic", 0, "accordion"),  # label -> index
        ("fsd50k", 1, "Accordion"),  # index, label, mid (no header)
        ("mtg_genre", 0, "genre---60s"),
    ],
)
def test_file_layouts_are_read_in_output_order(task, index, label):
    assert task_labels(task)[index] == label


@pytest.mark.parametrize(
    "task", ["openmic", "mtg_genre", "mtg_instrument", "mtg_mood", "mtg_top50"]
)
def test_label_to_index_files_invert_exactly(task, shared):
    mapping = json.loads((shared / f"{task}_mapping.json").read_text())
    labels = task_labels(task)
    assert {label: i for i, label in enumerate(labels)} == mapping


def test_builder_tasks_take_the_builders_class_order():
    from matpac_datasets.gtzan.gtzan_dataset_builder import GENRES
    from matpac_datasets.nsynth.nsynth_dataset_builder import FAMILIES

    assert task_labels("gtzan") == tuple(GENRES) and task_labels("nsynth") == tuple(FAMILIES)
    assert task_head("magnatagatune").multi_label and not task_head("gtzan").multi_label


def test_the_shipped_files_are_the_authors(shared):
    here = pathlib.Path(class_mappings.__file__).parent
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        p.name for p in here.iterdir() if p.suffix in (".csv", ".json")
    )
    for path in shared.iterdir():
        assert (here / path.name).read_bytes() == path.read_bytes(), path.name


def test_an_unknown_task_is_named():
    with pytest.raises(InputError, match="task 'birds': not one of"):
        task_labels("birds")
