"""A whole pretraining run from a config: build or resume, fit, checkpoint, export, probe.

`train(config, workdir)` is what `matpac-train` runs. The workdir holds:
  checkpoints/ckpt-<step>.npz  everything needed to continue (see `checkpoint.py`)
  metrics.jsonl, tensorboard/  the logged metrics (see `metrics_log.py`)
  config.json                  the config of the latest start
  config.<step>.json           the config that trained up to <step>, kept when a resumed run
                               changed it (config.allow_config_change)
  backbone.keras               the student encoder, at the end (for `matpac-embed`)
  probe.json                   with `evaluate.linear_probe`: the demo's probe accuracies
Started again on the same workdir, a run resumes from its newest checkpoint. Its config must be
the one that checkpoint recorded (but for `UNCHECKED_FIELDS` and `UNCHECKED_GROUPS`: verbosity,
TensorBoard, checkpoints kept, init_from, the probe's evaluate.*): a run with other values is
refused, naming the fields, unless `config.allow_config_change`, which continues with the new
values (a longer `train.epochs` extends a finished run; the schedules follow the new length) and
keeps the recorded config as `config.<step>.json` beside `config.json`, so that config.json
never records values that did not train. With `config.init_from`, a new run starts from a
checkpoint (`init_from.py`), whose architecture its checkpoints record; a workdir that has
checkpoints resumes them instead, with that architecture, and ignores `init_from` (saying so).
"""

import copy
import dataclasses
import errno
import json
import os
import pathlib
from collections.abc import Callable

import keras
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from matpac_keras.distribute import training_scope
from matpac_keras.errors import InputError
from matpac_keras.training import checkpoint
from matpac_keras.training.callbacks import TrainingMonitor, TrainingProgress
from matpac_keras.training.data_source import TrainingData
from matpac_keras.training.experiment import (
    build_backbone,
    build_optimizer,
    build_pretrainer,
    check_budget,
    check_config,
    seed_everything,
)
from matpac_keras.training.init_from import InitSource, apply_architecture, read_init_source
from matpac_keras.training.metrics_log import MetricsWriter
from matpac_keras.workdir_lock import workdir_lock

# Errors of a full, read-only, forbidden or failing file system while writing the run's files.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
)


@dataclasses.dataclass
class TrainResult:
    """How a run ended: its last step, newest checkpoint, failure message (None if it
    finished), the exported backbone, the probe accuracies (with evaluate.linear_probe), and
    the data summary (clips found, used and dropped by reason)."""

    step: int
    total_steps: int
    checkpoint: pathlib.Path | None
    failure: str | None = None
    backbone_path: pathlib.Path | None = None
    probe: dict | None = None
    data_summary: str | None = None


class WriteError(InputError):
    """Writing a checkpoint, the metrics or the encoder failed (disk full, read-only, ...); the
    message names the file, the reason and the last good checkpoint."""


def _write_json(path: pathlib.Path, value) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def train(
    config: ConfigDict,
    workdir: str | os.PathLike,
    source=None,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Runs (or resumes) the pretraining of `config` in `workdir`.

    Args:
        config: the run's config (see `configs/matpac.py`). `data.num_examples` None: the
            usable clips of the source, counted now (the schedules follow it).
        workdir: the run's folder; one run at a time holds it (`workdir_lock`).
        source: None (read `config.data.source`), or a Python object replacing it: an
            `inputs.InMemoryCorpus` (equal-length clips made in memory), a `tf.data.Dataset`
            of TFDS-style examples (dicts whose "audio" is a 1-D 16 kHz waveform, int16 or
            float; iterated once per epoch, so it must give the same examples each time for a
            resumed run to see an uninterrupted run's batches), a prepared TFDS builder or a
            list of audio files.
        announce: called with what the run starts from (`config.init_from`: what was loaded
            and what starts fresh, the architecture fields it changed; or that a resumed run
            ignores it; a config change allowed by `config.allow_config_change`), as these
            lines are logged, then with the data line (`data: <clips found, used, dropped>`)
            before the first step, and again after the run if clips were dropped while read;
            `matpac-train` prints them.

    Raises:
        InputError: a bad config, source or workdir (`WorkdirLockedError`: another run holds
            it), a failing input pipeline, or `WriteError`.
    """
    check_config(config, source)
    with workdir_lock(workdir):
        workdir = pathlib.Path(workdir)
        try:
            return _train(config, workdir, source, announce or (lambda line: None))
        except OSError as error:
            if error.errno not in _WRITE_ERRNOS:
                raise
            raise _write_error(error, workdir) from error


def _write_error(error: OSError, workdir: pathlib.Path) -> WriteError:
    checkpoint.remove_partial_files(workdir)
    latest = checkpoint.latest_checkpoint(workdir)
    kept = f"{latest} (intact)" if latest is not None else "none written yet"
    where = error.filename if error.filename is not None else workdir
    return WriteError(
        f"{where}: cannot write: {error.strerror or error}. Last good checkpoint: {kept}. "
        "Free space (or make the folder writable) and run the same command again to resume."
    )


def _starting_point(
    config: ConfigDict, latest, say
) -> tuple[ConfigDict, InitSource | None, dict | None]:
    """(the run's config, the InitSource to load or None, the record of the checkpoint the run
    started from, kept in its checkpoints' metadata): a new run with init_from takes that
    checkpoint's architecture; a resumed one the architecture its checkpoints record, and
    ignores init_from."""
    if latest is not None:
        recorded = checkpoint.read_metadata(latest).get("init_from")
        if config.get("init_from") is not None:
            say(
                f"resuming from {latest}: config.init_from {config.init_from} ignored (the "
                "workdir's checkpoints continue the run)"
            )
        if recorded is not None:
            config, _ = apply_architecture(config, recorded["model"])
        return config, None, recorded
    if config.get("init_from") is None:
        return config, None, None
    start = read_init_source(config)
    say(start.describe())
    config, changes = apply_architecture(config, start.model)
    say(changes)
    return config, start, start.record()


def _train(config: ConfigDict, workdir: pathlib.Path, source, announce) -> TrainResult:
    def say(line: str) -> None:
        logging.info("%s", line)
        announce(line)

    seed_everything(config.seed, config.deterministic)
    checkpoint.remove_partial_files(workdir)
    latest = checkpoint.latest_checkpoint(workdir)
    config, start, recorded = _starting_point(config, latest, say)
    backbone_arguments = recorded["backbone"] if recorded is not None else {}
    trained = None if latest is None else checkpoint.read_metadata(latest).get("config")
    changes = config_changes(trained, config)  # before the source is counted
    if changes:
        _allow_config_change(config, changes, trained, latest, workdir, say)
    data = TrainingData(config, source)
    if config.data.num_examples is None:  # count the source: the schedules follow it
        config = copy.deepcopy(config)
        config.data.num_examples = data.inventory.usable
        if config.data.num_examples is None:
            raise InputError(
                "config.data.num_examples: the source's length is unknown (a tf.data.Dataset of "
                "unknown cardinality): set it to its number of clips"
            )
        recount = [c for c in config_changes(trained, config) if c not in changes]
        if recount:  # the source's count differs from the one the checkpoints trained on
            _allow_config_change(config, recount, trained, latest, workdir, say)
    counted = data.inventory.summary()
    announce(f"data: {counted}")  # before the steps (logged by TrainingData)
    budget = check_budget(
        config, config.data.num_examples, data.inventory.usable, data.inventory.summary()
    )
    logging.info(
        "%d clips per epoch, %d steps of %d",
        config.data.num_examples,
        budget.total_steps,
        config.train.global_batch_size,
    )
    with training_scope(config.train.distribution):
        pretrainer = build_pretrainer(config, budget, backbone_arguments)
        pretrainer.compile(
            optimizer=build_optimizer(config.optim, budget),
            steps_per_execution=config.train.get("steps_per_execution", 1),
            jit_compile=_or_auto(config.train.get("jit_compile")),
        )
        metadata, step, starting_weights = {}, 0, None
        if latest is not None:
            metadata = checkpoint.restore_checkpoint(latest, pretrainer)
            step = metadata["step"]
            logging.info("resuming from %s (step %d of %d)", latest, step, budget.total_steps)
        elif start is not None:
            start.load(pretrainer)
            if config.evaluate.linear_probe:  # the probe compares the encoder it started from
                starting_weights = [np.array(w) for w in pretrainer.backbone.get_weights()]
        _write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
        result = TrainResult(step, budget.total_steps, latest)
        if step < budget.total_steps:
            result = _fit(
                config, workdir, pretrainer, data, budget.total_steps, step, metadata, recorded
            )
        result.data_summary = data.inventory.summary()
        if result.data_summary != counted:  # clips dropped while read (TFDS: too short)
            say(f"data: {result.data_summary}")
        if result.failure is not None:
            return result
    result.backbone_path = workdir / "backbone.keras"
    temporary = workdir / "backbone.tmp.keras"
    try:
        pretrainer.backbone.save(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, result.backbone_path)
    if config.evaluate.linear_probe:
        from matpac_keras.training.probe import compare_with_random_init, load_probe_data

        probe_data = load_probe_data(config)
        keras.utils.set_random_seed(config.seed)  # the initialisation the run started from
        random_init = build_backbone(config.model, **backbone_arguments)
        starting_encoder = None
        if starting_weights is not None:  # the checkpoint's encoder, before this run
            starting_encoder = build_backbone(config.model, **backbone_arguments)
            starting_encoder.set_weights(starting_weights)
        result.probe = compare_with_random_init(
            pretrainer.backbone, random_init, probe_data, config.seed, starting_encoder
        )
        _write_json(workdir / "probe.json", result.probe)
    return result


# Fields a resumed run may change freely: how it reports and keeps, not what it trains (and the
# probe after training, evaluate.*).
UNCHECKED_FIELDS = frozenset(
    {"allow_config_change", "init_from", "train.verbose", "train.tensorboard"}
    | {"train.keep_checkpoints"}
)
UNCHECKED_GROUPS = ("evaluate.",)


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(trained: dict | None, config: ConfigDict) -> list[str]:
    """'field: old -> new' for each field of `config` that differs from `trained` (the config
    recorded in the workdir's newest checkpoint, None: nothing trained yet), but for
    UNCHECKED_FIELDS, UNCHECKED_GROUPS and an uncounted data.num_examples (None: counted
    later)."""
    if trained is None:
        return []
    old, new = _flat(trained), _flat(json.loads(config.to_json_best_effort()))
    changes = []
    for field in sorted(old.keys() | new.keys()):
        if field in UNCHECKED_FIELDS or field.startswith(UNCHECKED_GROUPS):
            continue
        if field == "data.num_examples" and new.get(field) is None:
            continue
        if old.get(field, "<unset>") != new.get(field, "<unset>"):
            changes.append(
                f"{field}: {old.get(field, '<unset>')!r} -> {new.get(field, '<unset>')!r}"
            )
    return changes


def _allow_config_change(config, changes, trained: dict, latest, workdir: pathlib.Path, say):
    """Refuses a run whose config differs from the one its checkpoints trained with, unless
    config.allow_config_change, which keeps that config as config.<step>.json and says so."""
    step = checkpoint.read_metadata(latest)["step"]
    if not config.get("allow_config_change", False):
        raise InputError(
            f"config: differs from the config that trained {workdir} up to step {step} "
            f"({'; '.join(changes)}): use another --workdir, or set "
            "--config.allow_config_change=True to continue this run with the new values"
        )
    kept = workdir / f"config.{step}.json"
    _write_json(kept, trained)
    say(
        f"config changed at step {step} ({'; '.join(changes)}): the config that trained steps "
        f"up to {step} is kept as {kept}"
    )


def _or_auto(jit_compile: bool | None):
    """config.train.jit_compile for `compile`: None is Keras's "auto"."""
    return "auto" if jit_compile is None else jit_compile


def _fit(config, workdir, pretrainer, data, total_steps: int, start: int, metadata: dict, recorded):
    data.start(metadata)
    writer = MetricsWriter(workdir, start, config.train.tensorboard)
    static = {
        "config": json.loads(config.to_json_best_effort()),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "total_steps": total_steps,
    }
    if recorded is not None:  # the checkpoint the run started from: its architecture, for resumes
        static["init_from"] = recorded
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
            # the bar shows PROGRESS_METRICS (a line every log_every steps into a file)
            callbacks=[monitor, TrainingProgress(every=config.train.log_every)],
            verbose=config.train.verbose,
            shuffle=False,
        )
    except Exception as error:
        if data.error is not None and data.error is not error:  # re-raised by tf.data
            raise data.error from None
        raise
    finally:
        data.close()
        writer.close()
    newest = checkpoint.latest_checkpoint(workdir)
    return TrainResult(monitor.step, total_steps, newest, monitor.failure)
