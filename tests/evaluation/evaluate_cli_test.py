"""`matpac-evaluate` end to end: TFDS builders' dummy data and real FSDD recordings.

Reads TFDS (TensorFlow): run once, under TensorFlow. One test evaluates all 3,000 real FSDD
recordings in-process; the command-line test (run twice: the second run reads the cached
embeddings) builds 60 of them (speaker jackson, repetitions 0-1 test and 5-8 train: the official
index rule) to stay well under a minute.
"""

import csv
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.evaluation import runner
from matpac_keras.evaluation.probe import PRESETS, ProbeConfig
from matpac_keras.evaluation.protocol import RunConfig
from matpac_keras.evaluation.tasks import TASKS

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]


def save_tiny_model(folder: pathlib.Path, max_frames: int = 64) -> str:
    """A tiny backbone (D 32, 2 blocks) saved as `folder/tiny.keras`; returns its path."""
    path = folder / "tiny.keras"
    MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=max_frames).save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


def _read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_builder_dummy_data(task, tiny_model, tmp_path):
    options = runner.Options(
        tasks=(task,),
        output_dir=str(tmp_path / "out"),
        model=tiny_model,
        data_dir=str(tmp_path / "tfds"),
        manual_dirs=(str(ROOT / "matpac_datasets" / TASKS[task].builder / "dummy_data"),),
        probe=ProbeConfig(max_epochs=2),
        runs=RunConfig(runs=1),
    )
    messages = []
    [row] = runner.evaluate(options, log=messages.append)
    assert row.scores.task == task and len(row.scores.runs) == 1
    assert all(0 <= s <= 1 for s in row.scores.runs)
    [table] = _read_csv(tmp_path / "out" / "results.csv")
    assert table["task"] == task and table["metric"] == TASKS[task].metric
    assert float(table["mean"]) == pytest.approx(100 * row.scores.runs[0], abs=1e-3)
    cached = os.listdir(tmp_path / "out" / "embeddings")
    assert len(cached) == 1 and cached[0].startswith(f"{task}-model-precise-full-")
    assert any("features written" in m for m in messages)


def test_evar_options_with_log_mel_statistics(tmp_path):
    options = runner.Options(
        tasks=("gtzan",),
        output_dir=str(tmp_path / "out"),
        source="logmel_stats",
        input_length="evar",
        data_dir=str(tmp_path / "tfds"),
        manual_dirs=(str(ROOT / "matpac_datasets/gtzan/dummy_data"),),
        probe=dataclasses.replace(PRESETS["evar"], max_epochs=2),
        runs=runner.RUN_PRESETS["evar"],
        protocol="evar",
    )
    [row] = runner.evaluate(options, log=lambda message: None)
    assert row.scores.seeds == [42, 43, 44] and row.features == "logmel_stats"
    [cached] = os.listdir(tmp_path / "out" / "embeddings")
    assert cached.startswith("gtzan-logmel_stats-na-evar-")
    with np.load(tmp_path / "out" / "embeddings" / cached) as stored:
        key = json.loads(str(stored["key"]))
        assert stored["train/x"].shape[1] == 160
    assert (key["seconds"], key["input_length"], key["source"]) == (30.0, "evar", "logmel_stats")


def test_all_fsdd_recordings(tiny_model, fsdd_dir, tmp_path):
    options = runner.Options(
        tasks=("spoken_digit",),
        output_dir=str(tmp_path / "out"),
        model=tiny_model,
        data_dir=str(tmp_path / "tfds"),
        manual_dirs=(str(fsdd_dir),),
        probe=ProbeConfig(max_epochs=2),
        runs=RunConfig(runs=1),
    )
    messages = []
    [row] = runner.evaluate(options, log=messages.append)
    assert "spoken_digit: train 2700, test 300 clips, 160 dims" in messages
    assert 0 <= row.scores.runs[0] <= 1


def _jackson_subset(fsdd_dir, folder):
    """60 FSDD recordings: speaker jackson, repetitions 0-1 (test) and 5-8 (train)."""
    folder.mkdir()
    for digit in range(10):
        for index in (0, 1, 5, 6, 7, 8):
            shutil.copy(fsdd_dir / f"{digit}_jackson_{index}.wav", folder)
    return folder


def test_cli_on_real_fsdd_subset_and_cache_reuse(tiny_model, fsdd_dir, tmp_path):
    manual = _jackson_subset(fsdd_dir, tmp_path / "fsdd")
    command = [
        sys.executable, "-m", "matpac_keras.cli.evaluate", "--task=matpac_spoken_digit",
        f"--model={tiny_model}", f"--data_dir={tmp_path / 'tfds'}", f"--manual_dir={manual}",
        "--max_epochs=3", "--runs=2", "--protocol=evar",
    ]  # fmt: skip
    out = pathlib.Path(tiny_model[: -len(".keras")] + "_eval")  # the default --output_dir
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "spoken_digit: train 40, test 20 clips, 160 dims" in first.stdout
    assert "features written" in first.stdout
    [row] = _read_csv(out / "results.csv")
    assert (row["task"], row["runs"], row["seeds"]) == ("spoken_digit", "2", "42;43")
    assert row["protocol"] == "evar max_epochs=3 runs=2"
    [cache] = (out / "embeddings").iterdir()
    stamp = cache.stat().st_mtime_ns
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 1 and refused.stdout == ""  # results.md exists: no work done
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: {out / 'results.md'}: already exists (pass --overwrite to replace it)"
    )
    second = subprocess.run(
        [*command, "--overwrite"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "cached features read" in second.stdout and "features written" not in second.stdout
    assert cache.stat().st_mtime_ns == stamp
    assert "| spoken_digit | accuracy |" in second.stdout
    assert _read_csv(out / "results.csv") == [row]  # same features, seeds: the same scores
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", "results.csv", "results.md"]


def test_cli_errors_name_the_argument(tmp_path):
    command = [sys.executable, "-m", "matpac_keras.cli.evaluate", "--task=esc50",
               f"--output_dir={tmp_path}", f"--model={tmp_path / 'missing.keras'}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "--model" in result.stderr
    assert "missing.keras': no such file" in result.stderr and "Traceback" not in result.stderr


def test_help_and_task_groups():
    """--help names the groups and each task's download; a group expands before the checks."""
    command = [sys.executable, "-m", "matpac_keras.cli.evaluate"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT, env=env)
    for text in ("--task=matpac_plusplus", "mtg_top50", "github.com/MTG/mtg-jamendo-dataset"):
        assert text in shown.stdout
    downloads = shown.stdout.split("Manual downloads")[1].split("flags:")[0].splitlines()
    named = [line.split()[0] for line in downloads if line.startswith("  ") and line[2] != " "]
    for task in TASKS:  # every task's download has a line (`mtg_*` stands for the four)
        assert any(task == n or (n[-1] == "*" and task.startswith(n[:-1])) for n in named), task
    args = ["--task=matpac_plusplus", "--features=logmel_stats", "--manual_dir=a,b"]
    refused = subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "Error: --manual_dir: 2 given for 11 task(s): give one path per task in --task's order, "
        "or NAME=PATH entries (NAME a task or its builder)"
    )


def test_bad_options_and_missing_data(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="unknown task 'esc51'"):
        runner.Options(tasks=("esc51",), output_dir=str(tmp_path), source="logmel_stats")
    with pytest.raises(ValueError, match="a model file is needed"):
        runner.Options(tasks=("esc50",), output_dir=str(tmp_path))
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="model.pt'.*expected a .keras file"):
        runner.Options(tasks=("esc50",), output_dir=str(tmp_path), model=str(weights))
    with pytest.raises(ValueError, match="--manual_dir: 1 given for 2 task"):
        runner.Options(
            tasks=("esc50", "gtzan"), output_dir=str(tmp_path), model=tiny_model, manual_dirs=("a",)
        )
    unprepared = runner.Options(
        tasks=("gtzan",), output_dir=str(tmp_path), model=tiny_model, data_dir=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match="matpac_gtzan is not prepared.*pass --manual_dir"):
        runner.evaluate(unprepared)
    missing = dataclasses.replace(unprepared, manual_dirs=(str(tmp_path / "nowhere"),))
    with pytest.raises(FileNotFoundError, match="nowhere' is not a directory"):
        runner.evaluate(missing)


def test_outputs_and_model_are_checked_before_any_dataset(tiny_model, tmp_path):
    """Each error comes before TFDS is reached (the dataset is not prepared in `tfds`)."""
    from matpac_keras.errors import InputError
    from matpac_keras.outputs import OutputError

    out, tfds_dir = tmp_path / "out", tmp_path / "tfds"
    base = runner.Options(
        tasks=("gtzan",), output_dir=str(out), model=tiny_model, data_dir=str(tfds_dir)
    )
    out.mkdir()
    (out / "results.md").write_text("an earlier evaluation")
    with pytest.raises(OutputError, match=f"{out / 'results.md'}: already exists"):
        runner.evaluate(base)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(OutputError, match=f"{notes} is a file, not a folder"):
        runner.evaluate(dataclasses.replace(base, output_dir=str(notes / "out")))
    with pytest.raises(OutputError, match=f"{notes}/cache: {notes} is a file"):
        runner.evaluate(dataclasses.replace(base, overwrite=True, cache_dir=str(notes / "cache")))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match=f"--model {corrupt}: "):
        runner.evaluate(dataclasses.replace(base, overwrite=True, model=str(corrupt)))
    probe = tmp_path / "probe.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(probe)
    with pytest.raises(InputError, match=f"--model {probe}: holds a Sequential"):
        runner.evaluate(dataclasses.replace(base, overwrite=True, model=str(probe)))
    assert not tfds_dir.exists() and os.listdir(out) == ["results.md"]
    with pytest.raises(FileNotFoundError, match="matpac_gtzan is not prepared"):
        runner.evaluate(dataclasses.replace(base, overwrite=True))  # all checks pass: TFDS


def test_cache_file_is_written_atomically(tmp_path):
    from matpac_keras.evaluation import features
    from matpac_keras.evaluation.probe import ProbeData

    path = str(tmp_path / "cache" / "gtzan-model-precise-full-0123.npz")
    splits = {"train": ProbeData(np.ones((3, 4), "float32"), np.arange(3), None)}
    features.save(path, splits, {"k": 1})
    features.save(path, splits, {"k": 2})  # another key: replaced
    assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]  # no temporary left
    assert features.load(path, {"k": 1}) is None
    np.testing.assert_array_equal(features.load(path, {"k": 2})["train"].x, splits["train"].x)


def test_saved_classifier_tags_as_its_probe_scored(tiny_model, fsdd_dir, tmp_path):
    """`save_classifiers`: the first run's probe (standardised, as --protocol=evar) on the
    model, as a classifier preset; tagging the test recordings with it gives that run's score."""
    from matpac_keras.saving import load_classifier
    from matpac_keras.tagging import tag_files

    manual = _jackson_subset(fsdd_dir, tmp_path / "fsdd")
    options = runner.Options(
        tasks=("spoken_digit",),
        output_dir=str(tmp_path / "out"),
        model=tiny_model,
        data_dir=str(tmp_path / "tfds"),
        manual_dirs=(str(manual),),
        probe=dataclasses.replace(PRESETS["evar"], max_epochs=5),
        runs=RunConfig(runs=2),
        save_classifiers=str(tmp_path / "classifiers"),
    )
    messages = []
    [row] = runner.evaluate(options, log=messages.append)
    path = tmp_path / "classifiers" / "spoken_digit"
    assert f"spoken_digit: wrote classifier {path} (the probe of test, seed 0)" in messages
    classifier = load_classifier(path)
    assert classifier.labels == tuple(str(d) for d in range(10)) and not classifier.multi_label
    test = sorted(str(p) for p in manual.glob("*_jackson_[01].wav"))
    tags = tag_files(classifier, test)
    predicted = [int(tags.labels[i]) for i in tags.probabilities.argmax(axis=1)]
    truth = [int(os.path.basename(p)[0]) for p in test]
    accuracy = np.mean(np.array(predicted) == np.array(truth))
    assert accuracy == pytest.approx(row.scores.per_evaluation[0][0], abs=1e-9)
    with pytest.raises(runner.InputError, match="--save_classifiers: .* needs --features=model"):
        dataclasses.replace(options, mode="fast")
    with pytest.raises(Exception, match="already exists"):  # checked before any work
        runner.evaluate(dataclasses.replace(options, output_dir=str(tmp_path / "again")))
