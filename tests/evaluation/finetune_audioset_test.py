"""`matpac-finetune --config=configs/finetune.py:audioset_tiny` on the AudioSet builder's dummy
data: outputs, class-balanced weights, and a run interrupted after a checkpoint and started
again ending with the checkpoints, metrics and score of an uninterrupted one, bit for bit.

Reads TFDS (TensorFlow): run once, under TensorFlow. The uninterrupted run is the command line;
the interrupted one and its restart run in-process (imports paid once), the first stopped by an
exception raised right after it logged step 3, one step past its checkpoint at step 2, as a
kill would leave it.
Bit-exact equality is expected: every random draw is a function of (seed, step) (sampler,
crops, MixUp) or a variable in the checkpoint (the masking layers' seed states), and TensorFlow
on CPU computes the same batch the same way (the recipe's `deterministic` option asks for
deterministic ops where they are not: GPUs).
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from matpac_keras.errors import InputError
from matpac_keras.evaluation import audioset_source
from matpac_keras.evaluation.balanced_sampling import LabelIndex, clip_weights
from matpac_keras.head_labels import load_head_labels
from matpac_keras.training import audioset_finetune
from matpac_keras.training.checkpoint import list_checkpoints, read_checkpoint
from matpac_keras.training.metrics_log import MetricsWriter, read_metrics
from tests.cli.run_cli import run_cli

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]
DUMMY = ROOT / "matpac_datasets/audioset/dummy_data"
SPEECH, MUSIC, GUSH = "/m/09x0r", "/m/04rlf", "/t/dd00088"


def _config(data_dir, manual_dir=None):
    spec = importlib.util.spec_from_file_location("finetune_config", ROOT / "configs/finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("audioset_tiny")
    config.data_dir = str(data_dir)
    config.manual_dir = None if manual_dir is None else str(manual_dir)
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The dummy data, prepared (as ArrayRecord) by the recipe's own data path."""
    data_dir = tmp_path_factory.mktemp("tfds")
    audioset_source.open_audioset(str(data_dir), str(DUMMY))
    return data_dir


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """An uninterrupted run of the command: (workdir, results, its output lines)."""
    workdir = tmp_path_factory.mktemp("reference")
    command = [
        sys.executable, "-m", "matpac_keras.cli.finetune",
        "--config=configs/finetune.py:audioset_tiny", f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    return workdir, results, done.stdout.splitlines()


def test_outputs_and_the_classifier(reference, data_dir):
    workdir, results, lines = reference
    assert sorted(p.name for p in workdir.iterdir()) == [
        ".lock", "checkpoints", "classifier.keras", "classifier.labels.json", "label_index.npz",
        "metrics.jsonl", "results.json",
    ]  # fmt: skip
    assert np.isfinite(results["test_score"]) and 0 <= results["test_score"] <= 1
    assert results["num_clips"] == {"balanced_train": 3, "unbalanced_train": 2, "eval": 3}
    assert results["steps"] == 6 and [e["step"] for e in results["evaluations"]] == [3, 6]
    assert results["evaluations"][-1]["eval_map"] == results["test_score"]
    assert [s for s, _ in list_checkpoints(workdir)] == [2, 4, 6]
    assert "training on 5 clips (balanced_train, unbalanced_train), 3 of 527 classes" in lines[1]
    assert lines[-1] == (
        f"wrote {workdir / 'classifier.keras'} (labels {workdir / 'classifier.labels.json'}), "
        f"{workdir / 'results.json'}"
    )

    from matpac_keras.saving import load_classifier  # as matpac-tag and matpac-export read it

    model = load_classifier(workdir / "classifier.keras")
    assert model.num_classes == len(model.labels) == 527 and model.multi_label
    assert (model.pooling, model.head_norm is not None, model.backbone.max_frames) == (
        "freq_mean",
        True,
        64,
    )
    assert (model.labels[0], model.labels[-1]) == ("Firecracker", "Whimper (dog)")  # mid order
    assert load_head_labels(workdir / "classifier.keras").activation == "sigmoid"
    from matpac_keras.tagging import tag_files

    clip = str(DUMMY / "audio/eval/-1nilez17Dg.ogg")
    tags = tag_files(model, [clip])
    assert tags.probabilities.shape == (1, 527) and tags.labels == model.labels
    # matpac-tag itself: the same probabilities, sigmoid (multi-label) by default
    out = workdir.parent / "tags.npz"
    tagged = run_cli("tag", f"--model={workdir / 'classifier.keras'}", f"--output={out}", clip)
    assert tagged.stdout.strip().splitlines()[-1] == (
        f"tagged 1 clips with 527 labels (sigmoid); wrote {out}"
    )
    with np.load(out) as written:
        np.testing.assert_allclose(written["probabilities"], tags.probabilities, atol=1e-6)


def test_class_balanced_weights_on_the_dummy_data(reference, data_dir):
    """Speech labels 4 training clips, Music 2, Gush 1 (matpac_datasets/make_dummy_data.py):
    w = sum over a clip's labels of 1 / count."""
    workdir = reference[0]
    index = LabelIndex.load(workdir / audioset_source.LABEL_INDEX_FILE)
    assert (index.splits, index.sizes) == (("balanced_train", "unbalanced_train"), (3, 2))
    clips = audioset_source.AudioSetClips(audioset_source.open_audioset(str(data_dir), None))
    ytids = [
        ex["ytid"].decode() for split, size in zip(index.splits, index.sizes, strict=True)
        for ex in clips.records(split, range(size), audio=False)
    ]  # fmt: skip
    expected = {
        "--PJHxphWEs": 1 / 4 + 1 / 1,  # Speech, Gush
        "-0Bb2bxG4eU": 1 / 2,  # Music
        "-0hY1dfB4k8": 1 / 4,  # Speech
        "--4gqARaEJE": 1 / 2 + 1 / 4,  # Music, Speech
        "--BfvyPmVMo": 1 / 4,  # Speech
    }
    weights = dict(zip(ytids, clip_weights(index), strict=True))
    assert weights == pytest.approx(expected)
    counts = dict(zip(clips.vocabulary, index.counts(), strict=True))
    assert (counts[SPEECH], counts[MUSIC], counts[GUSH], sum(counts.values())) == (4, 2, 1, 7)


class _Killed(Exception):
    pass


def _assert_same_state(path_a, path_b) -> None:
    """Two checkpoints of one step hold bit-identical arrays. Variables are matched by position,
    as `restore_checkpoint` matches them (their names differ by Keras's uniquifying suffixes,
    the runs sharing a process)."""
    (meta_a, arrays_a), (meta_b, arrays_b) = read_checkpoint(path_a), read_checkpoint(path_b)
    for key in ("step", "data_position", "sampler"):
        assert meta_a[key] == meta_b[key], key
    for group in ("model", "optimizer"):
        assert len(arrays_a[group]) == len(arrays_b[group])
        for name, a, b in zip(
            arrays_a[group], arrays_a[group].values(), arrays_b[group].values(), strict=True
        ):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(
    reference, data_dir, tmp_path, monkeypatch
):
    workdir = tmp_path / "run"
    write = MetricsWriter.write

    def write_then_die(self, step, values):
        write(self, step, values)
        if step == 3 and "loss" in values:
            raise _Killed

    monkeypatch.setattr(MetricsWriter, "write", write_then_die)
    with pytest.raises(_Killed):
        audioset_finetune.finetune_audioset(_config(data_dir), str(workdir), lambda _: None)
    monkeypatch.undo()
    assert [s for s, _ in list_checkpoints(workdir)] == [2]
    assert [r["step"] for r in read_metrics(workdir)][-2:] == [3, 3]  # rows past the checkpoint
    lines = []
    results = audioset_finetune.finetune_audioset(_config(data_dir), str(workdir), lines.append)
    assert any(line.startswith("resuming from") and "(step 2)" in line for line in lines)
    assert not any(line.startswith("counting the labels") for line in lines)  # cached
    reference_dir, reference_results = reference[0], reference[1]
    ours, theirs = list_checkpoints(workdir), list_checkpoints(reference_dir)
    assert [s for s, _ in ours] == [s for s, _ in theirs] == [2, 4, 6]
    for (_, mine), (_, uninterrupted) in zip(ours, theirs, strict=True):
        _assert_same_state(mine, uninterrupted)
    metadata, _ = read_checkpoint(list_checkpoints(workdir)[-1][1])
    assert metadata["sampler"]["step"] == 6 and metadata["data_position"] == {"step": 6}
    assert read_metrics(workdir) == read_metrics(reference_dir)
    assert results["test_score"] == reference_results["test_score"]


def test_a_finished_run_is_refused_unless_overwrite(reference, data_dir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    (workdir / ".lock").unlink()
    with pytest.raises(InputError, match="results.json: already exists"):
        audioset_finetune.finetune_audioset(_config(data_dir), str(workdir))
    lines = []
    again = audioset_finetune.finetune_audioset(
        _config(data_dir), str(workdir), lines.append, overwrite=True
    )  # nothing left to train: the outputs again, from the step-6 checkpoint
    assert again["test_score"] == reference[1]["test_score"]
    assert any(line.startswith("resuming from") and "(step 6)" in line for line in lines)


def test_an_unknown_label_is_an_error_naming_it(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    csv = manual / "balanced_train_segments.csv"
    csv.write_text(csv.read_text().replace(GUSH, "/m/not_a_class"))
    config = _config(tmp_path / "tfds", manual)
    with pytest.raises(InputError, match=r"--PJHxphWEs \(balanced_train\): label '/m/not_a_class'"):
        audioset_finetune.finetune_audioset(config, str(tmp_path / "run"), lambda _: None)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_tfrecord_dataset_is_refused_naming_the_conversion(tmp_path):
    from matpac_datasets import builder_testing
    from matpac_datasets.audioset.audioset_dataset_builder import Builder

    builder = builder_testing.prepare(Builder, DUMMY, str(tmp_path))  # TFDS's default format
    with pytest.raises(
        InputError, match="tfds convert_format --dataset_version_dir=.*array_record"
    ):
        audioset_source.open_audioset(str(tmp_path), None)
    assert builder.info.file_format.value == "tfrecord"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("task", "esc50", "config.task='esc50': this recipe fine-tunes on 'audioset'"),
        ("train_splits", "balanced_train,eval", "config.train_splits='balanced_train,eval'"),
        ("warmup_steps", 6, "config.warmup_steps=6 must be below config.steps=6"),
        ("checkpoint_every", 3, "config.checkpoint_every=3 must be a multiple of"),
        ("steps", 0, r"config.steps=0: must be in \[1, inf\)"),
        ("crop_frames", 40, "config.crop_frames=40: must be a multiple of 16"),
    ],
)
def test_config_errors_name_the_field_before_any_work(field, value, message, tmp_path):
    config = _config(tmp_path / "tfds")
    config.log_every = 2 if field == "checkpoint_every" else config.log_every
    config[field] = value
    with pytest.raises(InputError, match=message):
        audioset_finetune.finetune_audioset(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
