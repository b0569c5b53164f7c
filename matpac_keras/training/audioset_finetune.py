"""Fine-tuning on AudioSet, resumable: what `matpac-finetune --config=configs/finetune.py:audioset`
runs (TensorFlow needed: TFDS reads the clips; the model trains on any Keras backend).

The recipe (`configs/finetune.py` gives the numbers):
- data: the `matpac_audioset` builder's training splits that are present (`train_splits`,
  balanced_train and unbalanced_train by default), read by random access
  (`evaluation/audioset_source.py`: never the whole split in memory); targets multi-hot over
  the 527 classes in the authors' head order (MIDs sorted; an unknown MID is an error);
- class-balanced sampling (`evaluation/balanced_sampling.py`): clip i drawn with replacement
  with probability proportional to sum over its labels c of 1 / count(c) (PSLA's weights, as
  AST and Audio-MAE sample AudioSet), label counts from one pass over the training splits,
  cached in the workdir as `label_index.npz`;
- batches (`evaluation/finetune_stream.py`): `crop_frames`-frame random crops, MixUp
  (`mixup_alpha`); in the model, SpecAugment-style rectangle masking (`erase_factor`,
  `num_erasures`);
- the authors' AudioSet head: `MatpacAudioClassifier(pooling="freq_mean", head_norm=True)`
  (BatchNorm without affine, then Dense, on the frequency-averaged time mean), with the 527
  labels and `multi_label=True`; a backbone whose position grid is shorter than `crop_frames`
  (the pre-trained 608-frame ones) is widened to it (sin-cos positions: same weights);
- multi-label binary cross-entropy on the logits; AdamW with layer-wise learning-rate decay and
  a linear warm-up + cosine schedule over `steps` (training is counted in steps: an epoch means
  nothing under weighted sampling with replacement);
- the test score: macro mAP (`evaluation/metrics.py`) over the `test_split` clips (eval), each
  scored whole by `clip_logits` (precise mode, chunks of the backbone's `max_frames`, as the
  authors' head), every `eval_every` steps and at the end.

The workdir holds, as pretraining's (`loop.py`):
  checkpoints/ckpt-<step>.npz  model, optimizer, step and sampler state (`checkpoint.py`)
  metrics.jsonl                the loss every `log_every` steps, `eval_map` every `eval_every`
  label_index.npz              the training clips' labels (the sampling weights' source)
  classifier.keras, classifier.labels.json, results.json   at the end
A run killed at any point and started again with the same command continues from its newest
checkpoint: the batch of step s is a pure function of (seed, s), so the sampler's state is the
step, and the run ends with the weights of an uninterrupted one. `results.json` marks a finished
run: another run on that workdir is refused unless `overwrite` (which rewrites the outputs from
the newest checkpoint, training first up to `steps`; a fresh start needs a fresh workdir).

Why random access rather than a stream of the splits through a shuffle buffer: on AudioSet the
weights span three orders of magnitude (their mean is 527 / 2 M, while a clip of a class of a
hundred training clips weighs over 1 / 100), so rejection sampling of a stream keeps a few
percent of the clips it reads and decodes; duplicating each streamed clip a Poisson number of
times keeps an epoch's I/O but puts the dozens of copies of a rare-class clip within one
shuffle buffer (correlated batches, gigabytes of buffered audio to spread them); and a stream
resumes by re-reading its epoch up to the checkpoint (hours on 2 M clips). Reading the drawn
clips by index reads only what trains, draws exactly what `WeightedRandomSampler` draws,
resumes at once and holds only the batches in flight (plus 8 bytes of weights per clip).
"""

import json
import os
import pathlib

import keras
import numpy as np
from absl import logging

from matpac_keras.audio import pcm16_to_float
from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.class_mappings import task_labels
from matpac_keras.config_ranges import AUDIOSET_FINETUNING, check_ranges
from matpac_keras.errors import InputError
from matpac_keras.evaluation import audioset_source, finetune, metrics
from matpac_keras.evaluation.balanced_sampling import WeightedSampler, clip_weights
from matpac_keras.evaluation.finetune_stream import BalancedCropBatches
from matpac_keras.head_labels import labels_path, save_head_labels
from matpac_keras.model_path import check_model_path
from matpac_keras.outputs import atomic_output, check_output, remove_stale_temporaries
from matpac_keras.training import checkpoint
from matpac_keras.training.callbacks import TrainingMonitor, TrainingProgress, check_intervals
from matpac_keras.training.experiment import seed_everything
from matpac_keras.training.metrics_log import MetricsWriter, read_metrics
from matpac_keras.workdir_lock import workdir_lock

TASK = "audioset"
RESULTS = "results.json"  # written last: marks a finished run
OUTPUTS = ("classifier.keras", "classifier.labels.json", RESULTS)


def train_splits(config) -> tuple[str, ...]:
    """The training splits `config.train_splits` names ("a,b")."""
    names = tuple(s.strip() for s in str(config.train_splits).split(",") if s.strip())
    allowed = tuple(s for s in audioset_source.SPLITS if s != config.test_split)
    if not names or any(s not in allowed for s in names):
        raise InputError(
            f"config.train_splits={config.train_splits!r}: a comma-separated list of {allowed}"
        )
    return names


def check_config(config) -> tuple[str, ...]:
    """The training splits, after checking the fields read before training (InputError naming
    the field, FileNotFoundError for a missing model)."""
    if config.task != TASK:
        raise InputError(f"config.task={config.task!r}: this recipe fine-tunes on {TASK!r}")
    if config.test_split not in audioset_source.SPLITS:
        raise InputError(
            f"config.test_split={config.test_split!r}: one of {audioset_source.SPLITS}"
        )
    splits = train_splits(config)
    if config.model:
        check_model_path(config.model, "config.model")
    check_ranges(config, AUDIOSET_FINETUNING)
    if config.crop_frames % 16:
        raise InputError(f"config.crop_frames={config.crop_frames}: must be a multiple of 16")
    if config.warmup_steps >= config.steps:
        raise InputError(
            f"config.warmup_steps={config.warmup_steps} must be below config.steps={config.steps}"
        )
    check_intervals(config.log_every, config.checkpoint_every, "config.")
    return splits


def with_max_frames(backbone: MatpacBackbone, frames: int) -> MatpacBackbone:
    """`backbone`, or when its position grid spans fewer than `frames` frames, a copy whose
    grid spans them, with the same weights: the sin-cos positions are computed for any grid,
    and a narrower grid is the first columns of a wider one (the authors' AudioSet model takes
    992 frames; their pre-trained encoders 608)."""
    if frames <= backbone.max_frames:
        return backbone
    if backbone.stored_positions:
        raise InputError(
            f"config.model: its positions are a stored table of {backbone.max_frames} frames, "
            f"shorter than config.crop_frames={frames}"
        )
    wider = MatpacBackbone.from_config({**backbone.get_config(), "max_frames": frames})
    wider.set_weights(backbone.get_weights())
    return wider


def finetune_audioset(config, workdir: str, log=print, overwrite: bool = False) -> dict:
    """Fine-tunes (or resumes fine-tuning) on AudioSet; writes the workdir files; returns the
    results dict.

    Holds the workdir lock. Before any model or data is read: the config is checked, and a
    finished run's `results.json` is refused unless `overwrite`.
    """
    splits = check_config(config)
    with workdir_lock(workdir):
        for name in OUTPUTS:
            remove_stale_temporaries(workdir, name)  # left by a killed run; ours under the lock
        # A killed run may have written the classifier but not the results: it is redone.
        paths = {
            name: str(check_output(os.path.join(workdir, name), overwrite or name != RESULTS))
            for name in OUTPUTS
        }
        checkpoint.remove_partial_files(workdir)
        return _finetune(config, splits, pathlib.Path(workdir), paths, log)


def _finetune(config, splits: tuple[str, ...], workdir: pathlib.Path, paths: dict, log) -> dict:
    seed_everything(config.seed, config.deterministic)
    clips = audioset_source.AudioSetClips(
        audioset_source.open_audioset(config.data_dir, config.manual_dir)
    )
    present = tuple(s for s in splits if s in clips.splits)
    if not present or config.test_split not in clips.splits:
        raise InputError(
            f"{clips.builder.data_dir}: holds the splits {sorted(clips.splits)}; training needs "
            f"one of {splits} (config.train_splits), testing {config.test_split!r}"
        )
    if present != splits:
        log(f"not in the dataset: {', '.join(s for s in splits if s not in present)}")
    index = audioset_source.cached_label_index(clips, present, workdir, log)
    sampler = WeightedSampler(clip_weights(index), config.seed)
    log(
        f"training on {index.num_clips} clips ({', '.join(present)}), "
        f"{int((index.counts() > 0).sum())} of {index.num_classes} classes present; testing on "
        f"{clips.splits[config.test_split]} ({config.test_split})"
    )

    model = _classifier(config)
    schedule = finetune.warmup_cosine(config.learning_rate, config.steps, config.warmup_steps)
    model.compile(
        optimizer=finetune.build_optimizer(model, config, schedule),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    start = _resume(workdir, model, sampler, log)
    tested = None
    if start < config.steps:
        tested = _fit(config, workdir, model, clips, index, sampler, start)
    step = max(start, config.steps)
    if tested is None or tested[0] != step:
        tested = (step, test_score(model, clips, config))

    model_path = paths["classifier.keras"]
    with atomic_output(model_path, overwrite=True) as temporary:
        model.save(temporary)
    save_head_labels(model_path, list(model.labels), "sigmoid", overwrite=True)
    results = {
        "task": TASK,
        "metric": "map",
        "test_score": tested[1],
        "test_split": config.test_split,
        "steps": step,
        "train_splits": list(present),
        "num_clips": {
            **dict(zip(present, index.sizes, strict=True)),
            config.test_split: clips.splits[config.test_split],
        },
        "evaluations": [
            {"step": row["step"], "eval_map": row["eval_map"]}
            for row in read_metrics(workdir)
            if "eval_map" in row
        ],
        "model": model_path,
        "config": config.to_dict(),
    }
    with atomic_output(paths[RESULTS], overwrite=True) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=str)
    log(f"{TASK} {config.test_split} after {step} steps: mAP {100 * tested[1]:.2f}%")
    log(f"wrote {model_path} (labels {labels_path(model_path)}), {paths[RESULTS]}")
    return results


def _classifier(config) -> MatpacAudioClassifier:
    try:
        backbone = finetune.make_backbone(config)
    except ValueError as error:  # InputError included: corrupt, or not a MATPAC model
        raise InputError(f"config.model {error}") from error
    labels = task_labels(TASK)
    model = MatpacAudioClassifier(
        with_max_frames(backbone, config.crop_frames),
        len(labels),
        pooling="freq_mean",
        head_norm=True,
        dropout=config.dropout,
        erase_factor=config.erase_factor,
        num_erasures=config.num_erasures,
        labels=labels,
        multi_label=True,
    )
    model.build(None)
    return model


def _resume(workdir: pathlib.Path, model, sampler: WeightedSampler, log) -> int:
    """Restores the newest checkpoint, if any; returns its step (0 for a fresh run)."""
    latest = checkpoint.latest_checkpoint(workdir)
    if latest is None:
        return 0
    metadata = checkpoint.restore_checkpoint(latest, model)
    start = metadata["step"]
    log(f"resuming from {latest} (step {start})")
    saved, now = metadata.get("sampler", {}), sampler.state(start)
    if saved != now:
        logging.warning("the sampler differs from the checkpoint's (%s, now %s)", saved, now)
    return start


class PeriodicTest(keras.callbacks.Callback):
    """Every `every` global steps, the test mAP (`score(model)`) into the metrics file; kept
    in `last` as (step, mAP). Put it before the `TrainingMonitor`, so that a checkpoint at a
    step follows its test row (a run killed between the two redoes the test)."""

    def __init__(self, score, start_step: int, every: int, writer: MetricsWriter):
        super().__init__()
        self.score, self.start_step, self.every, self.writer = score, start_step, every, writer
        self.last = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if self.every and step % self.every == 0:
            self.last = (step, self.score(self.model))
            self.writer.write(step, {"eval_map": self.last[1]})


def _fit(config, workdir, model, clips, index, sampler, start: int):
    """Trains steps `start + 1 .. config.steps`; returns the last periodic test (step, mAP)."""
    writer = MetricsWriter(workdir, start, config.tensorboard)
    static = {"config": json.loads(config.to_json_best_effort())}
    monitor = TrainingMonitor(
        os.fspath(workdir),
        start,
        config.steps,
        config.log_every,
        config.checkpoint_every,
        config.keep_checkpoints,
        writer,
        lambda step: {**static, "data_position": {"step": step}, "sampler": sampler.state(step)},
    )
    tests = PeriodicTest(lambda m: test_score(m, clips, config), start, config.eval_every, writer)
    batches = BalancedCropBatches(
        index,
        clips.waveforms,
        sampler,
        config.crop_frames,
        config.batch_size,
        config.mixup_alpha,
        start,
        config.steps - start,
        workers=config.workers,
        max_queue_size=2 * config.workers,
    )
    try:
        model.fit(
            batches,
            epochs=1,
            shuffle=False,
            callbacks=[tests, monitor, TrainingProgress(("loss",), every=config.log_every)],
            verbose=1,
        )
    finally:
        writer.close()
    if monitor.failure is not None:
        newest = checkpoint.latest_checkpoint(workdir)
        raise InputError(
            f"training stopped: {monitor.failure}; newest good checkpoint: {newest or 'none'} "
            "(a lower config.learning_rate may help; the same command resumes from it)"
        )
    return tests.last


def test_score(model: MatpacAudioClassifier, clips, config) -> float:
    """Macro mAP of the `config.test_split` clips, each scored whole (`clip_logits`), read
    `config.test_clips` at a time."""
    targets, logits = [], []
    for waveforms, batch_targets in clips.test_batches(config.test_split, config.test_clips):
        waveforms = [pcm16_to_float(w) for w in waveforms]
        logits.append(model.clip_logits(waveforms, batch_size=config.embed_batch_size))
        targets.append(batch_targets)
    return metrics.mean_average_precision(np.concatenate(targets), np.concatenate(logits))
