"""Task rows and task groups: the MTG-Jamendo tasks and `--task=matpac_plusplus`."""

import pytest

from matpac_keras import class_mappings
from matpac_keras.evaluation import tasks

pytestmark = pytest.mark.single_backend

MATPAC = ["openmic", "nsynth", "gtzan", "magnatagatune", "fsd50k", "esc50", "urbansound8k"]
MTG = {  # task: the builder's config
    "mtg_genre": "genre",
    "mtg_instrument": "instrument",
    "mtg_mood": "moodtheme",
    "mtg_top50": "top50tags",
}


def test_groups_expand_to_the_papers_tasks_in_order():
    assert tasks.expand(["matpac"]) == tuple(MATPAC)
    assert tasks.expand(["matpac_plusplus"]) == tuple(MATPAC + list(MTG))
    for group in tasks.TASK_GROUPS.values():
        assert all(name in tasks.TASKS for name in group)
    # Plain names pass through; a task named again (alone or in a group) is kept once.
    assert tasks.expand(["esc50", "matpac", "spoken_digit", "esc50"]) == (
        "esc50", "openmic", "nsynth", "gtzan", "magnatagatune", "fsd50k", "urbansound8k",
        "spoken_digit",
    )  # fmt: skip
    assert tasks.expand(["matpac_esc50", "not_a_task"]) == ("matpac_esc50", "not_a_task")


def test_mtg_jamendo_tasks():
    for name, config in MTG.items():
        task = tasks.get_task(name)
        assert (task.builder, task.builder_config, task.metric) == ("mtg_jamendo", config, "map")
        assert task.multi_label and task.splits == ("train", "valid", "test")
        assert tasks.get_task(f"matpac_mtg_jamendo/{config}") is task
        assert class_mappings.task_head(name).multi_label  # the authors' head of the same name


def test_manual_dirs_by_position_or_by_name():
    manual_dirs = tasks.manual_dirs
    names = tasks.expand(["matpac_plusplus"])
    assert manual_dirs(["esc50", "gtzan"], ["/e", "/g"]) == ("/e", "/g")
    by_name = manual_dirs(names, ["esc50=/data/esc", "mtg_jamendo=/data/mtg", "mtg_mood=/m"])
    assert dict(zip(names, by_name, strict=True)) == {
        **dict.fromkeys(names),
        "esc50": "/data/esc",
        "mtg_genre": "/data/mtg",
        "mtg_instrument": "/data/mtg",
        "mtg_mood": "/m",  # the task's own entry before its builder's
        "mtg_top50": "/data/mtg",
    }
    assert manual_dirs(["esc50"], [None]) == (None,)  # as Options keeps them, resolved
    with pytest.raises(ValueError, match="2 given for 11 task"):
        manual_dirs(names, ["/a", "/b"])
    with pytest.raises(ValueError, match="mix of NAME=PATH and plain entries"):
        manual_dirs(["esc50", "gtzan"], ["esc50=/e", "/g"])
    with pytest.raises(ValueError, match="'fsdd' is none of the tasks or builders"):
        manual_dirs(["esc50"], ["fsdd=/f"])
