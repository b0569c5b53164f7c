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

from matpac_keras.evaluation import finetune
from matpac_keras.evaluation.classifier import MatpacClassifier

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
    assert isinstance(model, MatpacClassifier) and model.num_classes == 10


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
