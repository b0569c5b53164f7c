"""`matpac-finetune` end to end on real FSDD recordings, and fold handling on ESC-50 dummy data.

Reads TFDS (TensorFlow): run once, under TensorFlow; the backend-generic training steps are in
classifier_test.py. 60 of the 3,000 recordings, as in evaluate_cli_test.py.
"""

import csv
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.evaluation import finetune
from matpac_keras.head_labels import HeadLabels, load_head_labels

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tiny_config():
    spec = importlib.util.spec_from_file_location("finetune_config", ROOT / "configs/finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny")


def test_cli_on_real_fsdd_subset(fsdd_dir, tmp_path):
    manual = tmp_path / "fsdd"
    manual.mkdir()
    for digit in range(10):
        for index in (0, 1, 5, 6, 7, 8):
            shutil.copy(fsdd_dir / f"{digit}_jackson_{index}.wav", manual)
    workdir = tmp_path / "run"
    command = [
        sys.executable, "-m", "matpac_keras.cli.finetune", "--config=configs/finetune.py:tiny",
        f"--workdir={workdir}", f"--config.manual_dir={manual}",
        f"--config.data_dir={tmp_path / 'tfds'}", "--config.mixup_alpha=0.4",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["num_clips"] == {"train": 36, "valid": 4, "test": 20}
    assert 0 <= results["test_score"] <= 1 and results["config"]["mixup_alpha"] == 0.4
    with open(workdir / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 2
    assert results["best_epoch"] == 1 + int(np.argmin([float(r["val_loss"]) for r in history]))
    model = keras.saving.load_model(workdir / "classifier.keras", compile=False)
    assert isinstance(model, MatpacAudioClassifier) and model.num_classes == 10
    labels = load_head_labels(workdir / "classifier.keras")  # for matpac-export --head
    assert labels == HeadLabels(tuple(str(d) for d in range(10)), "softmax")
    assert sorted(p.name for p in workdir.iterdir()) == [
        ".lock", "classifier.keras", "classifier.labels.json", "history.csv", "results.json",
    ]  # fmt: skip
    assert f"wrote {workdir / 'classifier.keras'}" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == (
        f"Error: {workdir / 'classifier.keras'}: already exists (pass --overwrite to replace it)"
    )


def test_fold_task_holds_out_the_test_fold(tmp_path):
    config = _tiny_config()
    config.task = "esc50"
    config.fold = "fold2"
    config.epochs = 1
    config.manual_dir = str(ROOT / "matpac_datasets/esc50/dummy_data")
    config.data_dir = str(tmp_path / "tfds")
    results = finetune.finetune(config, str(tmp_path / "run"), log=lambda message: None)
    # dummy ESC-50: fold1 2 clips, folds 2-5 one each -> test 1, train + valid 5
    assert results["test_split"] == "fold2"
    assert results["num_clips"] == {"train": 4, "valid": 1, "test": 1}
    config.fold = "fold6"
    with pytest.raises(ValueError, match="config.fold must be one of"):
        finetune.finetune(config, str(tmp_path / "run2"))


def test_config_errors_name_the_field(tmp_path):
    config = _tiny_config()
    config.task = "esc51"
    with pytest.raises(ValueError, match="unknown task 'esc51'"):
        finetune.check_config(config)
    config.task = "spoken_digit"
    config.model = str(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="config.model .*missing.keras': no such file"):
        finetune.check_config(config)
    config.model = None
    config.valid_fraction = 1.0
    with pytest.raises(ValueError, match="config.valid_fraction"):
        finetune.check_config(config)
    assert finetune.check_config(_tiny_config()).name == "spoken_digit"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch_size", 0, r"config.batch_size=0: must be in \[1, inf\)"),
        ("epochs", -1, r"config.epochs=-1: must be in \[1, inf\)"),
        ("learning_rate", 0.0, r"config.learning_rate=0.0: must be in \(0, inf\)"),
        ("layer_decay", 1.5, r"config.layer_decay=1.5: must be in \(0, 1\]"),
        ("dropout", 1.0, r"config.dropout=1.0: must be in \[0, 1\)"),
        ("crop_frames", 0, r"config.crop_frames=0: must be in \[16, 65536\]"),
        ("crop_frames", 40, "config.crop_frames=40: must be a multiple of 16"),
        ("embed_batch_size", 0, r"config.embed_batch_size=0: must be in \[1, inf\)"),
        ("mixup_alpha", -0.1, r"config.mixup_alpha=-0.1: must be in \[0, inf\)"),
    ],
)
def test_numeric_fields_are_checked_before_any_work(field, value, message, tmp_path):
    from matpac_keras.errors import InputError

    config = _tiny_config()
    config[field] = value
    with pytest.raises(InputError, match=message):
        finetune.finetune(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_outputs_are_checked_under_the_lock_before_the_data(tmp_path):
    from matpac_keras.outputs import OutputError
    from matpac_keras.workdir_lock import WorkdirLockedError, workdir_lock

    config = _tiny_config()
    config.data_dir = str(tmp_path / "tfds")  # nothing prepared, no manual_dir
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
    stale = workdir / ".tmp-classifier.keras.123-abcdefgh.keras"  # a killed run's
    stale.write_bytes(b"half")
    with pytest.raises(OutputError, match=f"{workdir / 'results.json'}: already exists"):
        finetune.finetune(config, str(workdir))
    assert not stale.exists() and not (tmp_path / "tfds").exists()
    with workdir_lock(workdir):
        with pytest.raises(WorkdirLockedError, match=f"in use by pid {os.getpid()} on"):
            finetune.finetune(config, str(workdir), overwrite=True)
    with pytest.raises(FileNotFoundError, match="matpac_spoken_digit is not prepared"):
        finetune.finetune(config, str(workdir), overwrite=True)  # the checks pass: TFDS
    assert (workdir / "results.json").read_text() == "{}"
