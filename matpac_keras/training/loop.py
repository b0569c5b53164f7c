"""A whole pretraining run from a config: build or resume, fit, checkpoint, export, probe.

`train(config, workdir)` is what `matpac-train` runs. The workdir holds:
  checkpoints/ckpt-<step>.npz  everything needed to continue (see `checkpoint.py`)
  metrics.jsonl, tensorboard/  the logged metrics (see `metrics_log.py`)
  config.json                  the config of the latest start
  backbone.keras               the student encoder, at the end (for `matpac-embed`)
  probe.json                   with `evaluate.linear_probe`: the demo's probe accuracies
Started again on the same workdir, a run resumes from its newest checkpoint, with the config it
is given then (a longer `train.epochs` extends a finished run; the schedules follow the new
length).
"""

import dataclasses
import json
import os
import pathlib

import keras
from absl import logging
from ml_collections import ConfigDict

from matpac_keras.distribute import training_scope
from matpac_keras.training import checkpoint
from matpac_keras.training.callbacks import TrainingMonitor
from matpac_keras.training.data_source import TrainingData
from matpac_keras.training.experiment import (
    build_backbone,
    build_optimizer,
    build_pretrainer,
    check_config,
    run_budget,
    seed_everything,
)
from matpac_keras.training.metrics_log import MetricsWriter


@dataclasses.dataclass
class TrainResult:
    """How a run ended: its last step, newest checkpoint, failure message (None if it
    finished), the exported backbone, and the probe accuracies (demo only)."""

    step: int
    total_steps: int
    checkpoint: pathlib.Path | None
    failure: str | None = None
    backbone_path: pathlib.Path | None = None
    probe: dict | None = None


def _write_json(path: pathlib.Path, value) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def train(config: ConfigDict, workdir: str | os.PathLike) -> TrainResult:
    """Runs (or resumes) the pretraining of `config` in `workdir`."""
    check_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed, config.deterministic)
    budget = run_budget(config)
    with training_scope(config.train.distribution):
        pretrainer = build_pretrainer(config, budget)
        pretrainer.compile(optimizer=build_optimizer(config.optim, budget))
        checkpoint.remove_partial_files(workdir)
        latest = checkpoint.latest_checkpoint(workdir)
        metadata, start = {}, 0
        if latest is not None:
            metadata = checkpoint.restore_checkpoint(latest, pretrainer)
            start = metadata["step"]
            logging.info("resuming from %s (step %d of %d)", latest, start, budget.total_steps)
        _write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
        result = TrainResult(start, budget.total_steps, latest)
        if start < budget.total_steps:
            result = _fit(config, workdir, pretrainer, budget.total_steps, start, metadata)
        if result.failure is not None:
            return result
    result.backbone_path = workdir / "backbone.keras"
    temporary = workdir / "backbone.tmp.keras"
    pretrainer.backbone.save(temporary)
    os.replace(temporary, result.backbone_path)
    if config.evaluate.linear_probe:
        from matpac_keras.demo.evaluate import compare_with_random_init

        keras.utils.set_random_seed(config.seed)  # the initialisation the run started from
        result.probe = compare_with_random_init(
            pretrainer.backbone, build_backbone(config.model), config
        )
        _write_json(workdir / "probe.json", result.probe)
    return result


def _fit(config, workdir, pretrainer, total_steps: int, start: int, metadata: dict):
    data = TrainingData(config, metadata)
    writer = MetricsWriter(workdir, start, config.train.tensorboard)
    static = {
        "config": json.loads(config.to_json_best_effort()),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "total_steps": total_steps,
    }
    monitor = TrainingMonitor(
        os.fspath(workdir),
        start,
        total_steps,
        config.train.log_every,
        config.train.checkpoint_every,
        config.train.keep_checkpoints,
        writer,
        lambda step: {**static, **data.position(step)},
    )
    try:
        pretrainer.fit(
            data.batches(start, total_steps - start),
            epochs=1,
            steps_per_epoch=total_steps - start,
            callbacks=[monitor],
            verbose=config.train.verbose,
            shuffle=False,
        )
    finally:
        writer.close()
    newest = checkpoint.latest_checkpoint(workdir)
    return TrainResult(monitor.step, total_steps, newest, monitor.failure)
