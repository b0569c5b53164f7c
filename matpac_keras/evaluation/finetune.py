"""End-to-end fine-tuning of a MATPAC backbone on a TFDS task: what `matpac-finetune` runs.

Reads the task's splits into memory (TensorFlow-only, through TFDS), trains a MatpacAudioClassifier
on random crops with MixUp (finetune_data.py) and SpecAugment-style masking (classifier.py),
AdamW with layer-wise learning-rate decay (layerwise.py) and a warm-up + cosine schedule, keeps
the weights of the lowest validation loss, then scores the test clips whole with the task's
metric: each clip's log-mel, zero-padded to a multiple of the crop length, is cut into crops
whose mean pooled features go through the head (`MatpacAudioClassifier.clip_logits`), so a clip
shorter than a crop is seen as in training, zero padding included in the time mean.

Writes into the workdir: `classifier.keras`, `classifier.labels.json` (its class names, for
`matpac-export --head`), `history.csv` (per-epoch losses), `results.json`; each atomically, and
only after checking, before any model or data is read, that none exists (unless `overwrite`).
One run per workdir (matpac_keras.workdir_lock). Holds the audio of the task in memory: fine
for FSDD, ESC-50, UrbanSound8K and GTZAN. AudioSet (2 M clips) has its own recipe, streamed,
counted in steps and resumable: `matpac_keras/training/audioset_finetune.py`.
"""

import json
import os
import sys

import keras
import numpy as np

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.config_ranges import FINETUNING, check_ranges
from matpac_keras.errors import InputError
from matpac_keras.evaluation import protocol, tasks, tfds_source
from matpac_keras.evaluation.finetune_data import CropBatches, targets_of
from matpac_keras.evaluation.layerwise import lr_multipliers
from matpac_keras.evaluation.probe import KeepBest, masked_binary_crossentropy
from matpac_keras.head_labels import labels_path, save_head_labels
from matpac_keras.model_path import check_model_path
from matpac_keras.optimizers import AdamW
from matpac_keras.outputs import atomic_output, check_output, remove_stale_temporaries
from matpac_keras.schedules import WarmupCosineDecay
from matpac_keras.workdir_lock import workdir_lock


def read_split(builder, split: str, task: tasks.Task):
    """(waveforms, labels, mask) of a whole split, in memory."""
    waves, labels, masks = [], [], []
    for batch in tfds_source.clip_batches(builder, split, task):
        waves += batch.waveforms
        labels.append(batch.labels)
        masks.append(batch.mask)
    mask = None if masks[0] is None else np.concatenate(masks)
    return waves, np.concatenate(labels), mask


def task_splits(builder, task: tasks.Task, fold: str | None, valid_fraction: float, seed: int):
    """{"train", "valid", "test"}: (waveforms, labels, mask) per split, as the probe splits them
    (fold tasks: `fold` is the test fold)."""
    if task.folds:
        test = read_split(builder, fold, task)
        others = [read_split(builder, f, task) for f in task.folds if f != fold]
        waves = [w for part in others for w in part[0]]
        labels = np.concatenate([p[1] for p in others])
        mask = None if others[0][2] is None else np.concatenate([p[2] for p in others])
        pool = (waves, labels, mask)
    else:
        test = read_split(builder, task.test, task)
        pool = read_split(builder, task.train, task)
    if not task.folds and task.valid is not None:
        return {"train": pool, "valid": read_split(builder, task.valid, task), "test": test}
    train_rows, valid_rows = protocol.split_indices(len(pool[0]), valid_fraction, seed)

    def take(rows):
        waves, labels, mask = pool
        return [waves[i] for i in rows], labels[rows], None if mask is None else mask[rows]

    return {"train": take(train_rows), "valid": take(valid_rows), "test": test}


def make_backbone(config):
    """The pre-trained backbone of `config.model`, else a new `config.backbone` variant."""
    from matpac_keras.backbone import MatpacBackbone
    from matpac_keras.saving import load_backbone

    if config.model:
        return load_backbone(config.model)
    overrides = {k: v for k, v in config.backbone_overrides.items() if v is not None}
    backbone = MatpacBackbone.from_variant(config.backbone, **overrides)
    backbone.build(None)
    return backbone


def warmup_cosine(learning_rate: float, total: int, warmup: int) -> WarmupCosineDecay:
    """The pretraining schedule (`WarmupCosineDecay`, to 0) for `total` steps, `warmup` of them
    warm-up, both clamped to a valid run (at least 1 step, warm-up shorter than the run)."""
    total = max(1, total)
    return WarmupCosineDecay(learning_rate, max(0, min(total - 1, warmup)), total)


def schedule(config, steps_per_epoch: int):
    """Linear warm-up to `config.learning_rate`, then cosine decay to 0."""
    return warmup_cosine(
        config.learning_rate,
        config.epochs * steps_per_epoch,
        config.warmup_epochs * steps_per_epoch,
    )


def build_optimizer(model: MatpacAudioClassifier, config, learning_rate) -> AdamW:
    """AdamW (`config.weight_decay`, `clip_norm`, `layer_decay`) at `learning_rate` (a float or
    schedule); biases, norms and the cls token do not decay: only the 2-D kernels do."""
    optimizer = AdamW(
        learning_rate,
        beta_2=0.999,  # Adam's default, as fine-tuning recipes (BEiT, MAE) use
        epsilon=1e-8,
        weight_decay=config.weight_decay,
        global_clipnorm=config.clip_norm or None,
        lr_multipliers=lr_multipliers(model, config.layer_decay),
    )
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if len(v.shape) != 2]
    )
    return optimizer


def loss_for(task: tasks.Task):
    if task.mask_key:
        return masked_binary_crossentropy
    if task.multi_label:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.CategoricalCrossentropy(from_logits=True)


OUTPUTS = ("classifier.keras", "classifier.labels.json", "history.csv", "results.json")


def check_config(config) -> tasks.Task:
    """The config's task, after checking the fields read before training (InputError naming
    the field, FileNotFoundError for a missing model)."""
    if config.task == "audioset":  # streamed and resumable: configs/finetune.py:audioset
        raise InputError(
            "config.task='audioset': fine-tuned by matpac_keras.training.audioset_finetune "
            "(matpac-finetune --config=configs/finetune.py:audioset)"
        )
    try:
        task = tasks.get_task(config.task)
    except ValueError as error:  # an unknown name
        raise InputError(f"config.task: {error}") from None
    if task.folds and config.fold not in task.folds:
        raise InputError(
            f"config.fold must be one of {task.folds} for {task.name}: {config.fold!r}"
        )
    if config.model:
        check_model_path(config.model, "config.model")
    check_ranges(config, FINETUNING)
    if config.crop_frames % 16:
        raise InputError(f"config.crop_frames={config.crop_frames}: must be a multiple of 16")
    return task


def _atomic_json(path: str, content: dict, overwrite: bool) -> None:
    with atomic_output(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, default=str)


def finetune(config, workdir: str, log=print, overwrite: bool = False) -> dict:
    """Fine-tunes on `config.task`; writes the workdir files; returns the results dict.

    Holds the workdir lock (a second run on the same workdir is refused, naming the holder).
    Before any model or data is read, the outputs (OUTPUTS) are checked: refused if one exists,
    unless `overwrite`, or if the workdir cannot be written. Then the model is loaded and
    checked, then the data read. Each output is written atomically.
    """
    task = check_config(config)
    with workdir_lock(workdir):
        for name in OUTPUTS:
            remove_stale_temporaries(workdir, name)  # left by a killed run; ours under the lock
        paths = {
            name: str(check_output(os.path.join(workdir, name), overwrite)) for name in OUTPUTS
        }
        return _finetune(config, task, paths, log, overwrite)


def _finetune(config, task: tasks.Task, paths: dict, log, overwrite: bool) -> dict:
    keras.utils.set_random_seed(config.seed)
    try:
        backbone = make_backbone(config)
    except ValueError as error:  # InputError included: corrupt, or not a MATPAC model
        raise InputError(f"config.model {error}") from error
    if not 0 < config.crop_frames <= backbone.max_frames or config.crop_frames % 16:
        raise InputError(
            f"config.crop_frames={config.crop_frames}: a multiple of 16 up to {backbone.max_frames}"
        )
    builder = tfds_source.prepared_builder(task, config.data_dir, config.manual_dir)
    num_classes = tfds_source.num_classes(builder, task)
    splits = task_splits(builder, task, config.fold, config.valid_fraction, config.seed)
    log(", ".join(f"{name} {len(s[0])}" for name, s in splits.items()) + " clips")

    model = MatpacAudioClassifier(
        backbone,
        num_classes,
        dropout=config.dropout,
        erase_factor=config.erase_factor,
        num_erasures=config.num_erasures,
        labels=tfds_source.label_names(builder, task, num_classes),
        multi_label=task.multi_label,
        crop_frames=config.crop_frames,  # clip_logits, matpac-tag and export score by crops
    )
    model.build(None)

    def batches(name, training):
        waves, labels, mask = splits[name]
        return CropBatches(
            waves,
            targets_of(labels, mask, num_classes),
            config.crop_frames,
            config.batch_size,
            training=training,
            mixup_alpha=config.mixup_alpha if training else 0.0,
            seed=config.seed,
        )

    train, valid = batches("train", True), batches("valid", False)
    optimizer = build_optimizer(model, config, schedule(config, len(train)))
    model.compile(optimizer=optimizer, loss=loss_for(task))
    keep_best = KeepBest(None, config.patience or None)
    # The per-epoch log goes to a temporary file, renamed to history.csv when training ends.
    with atomic_output(paths["history.csv"], overwrite=overwrite) as history:
        model.fit(
            train,
            validation_data=valid,
            epochs=config.epochs,
            callbacks=[keep_best, keras.callbacks.CSVLogger(os.fspath(history))],
            verbose=1 if sys.stdout.isatty() else 2,
        )
    model_path = paths["classifier.keras"]
    with atomic_output(model_path, overwrite=overwrite) as temporary:
        model.save(temporary)
    activation = "sigmoid" if task.multi_label else "softmax"  # the head outputs logits
    save_head_labels(model_path, list(model.labels), activation, overwrite=overwrite)

    waves, labels, mask = splits["test"]
    logits = model.clip_logits(waves, batch_size=config.embed_batch_size)
    test_score = protocol.score(task, labels, logits, mask)
    results = {
        "task": task.name,
        "metric": task.metric,
        "test_score": test_score,
        "test_split": config.fold if task.folds else task.test,
        "best_epoch": keep_best.best_epoch + 1,  # 1-based, as in the probe tables
        "num_clips": {name: len(s[0]) for name, s in splits.items()},
        "model": model_path,
        "config": config.to_dict(),
    }
    _atomic_json(paths["results.json"], results, overwrite)
    log(f"{task.name} {results['test_split']}: test {task.metric} {100 * test_score:.2f}%")
    log(f"wrote {model_path} (labels {labels_path(model_path)}), {paths['results.json']}")
    return results
