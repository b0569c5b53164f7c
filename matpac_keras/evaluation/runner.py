"""Linear evaluation of one feature source on TFDS tasks: what `matpac-evaluate` runs.

Before any dataset is built: the outputs are checked (results.md and results.csv refused if
they exist, unless `overwrite`; the output and cache folders writable) and the model is loaded
(an error naming --model if it is missing or not a MATPAC model). Then per task: prepare the
TFDS dataset, read or compute (and cache) the features of every split, run the probe protocol,
and collect a table row. TensorFlow-only, through TFDS.

With `temporal_support` (a sweep), `evaluation/temporal_support.py` runs instead: the same
features (cached per window, hop and aggregate), probes and checks, once per temporal support.
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from matpac_keras.embedding import AGGREGATES, window_frames
from matpac_keras.errors import InputError
from matpac_keras.evaluation import features, report, tasks, tfds_source
from matpac_keras.evaluation.probe import PRESETS, ProbeConfig, probe_weights
from matpac_keras.evaluation.protocol import RunConfig, evaluate_task
from matpac_keras.model_path import check_model_path
from matpac_keras.outputs import atomic_output, check_output, check_writable_folder

RUN_PRESETS = {"paper": RunConfig(), "evar": RunConfig(runs=3, first_seed=42)}


@dataclasses.dataclass(frozen=True)
class Options:
    """What to evaluate and how (the flags of `matpac-evaluate`).

    tasks: task names (tasks.py). source: "model", "random_init" or "logmel_stats".
    model: the .keras file or preset directory (not needed for "logmel_stats").
    manual_dirs: one per task, or `NAME=PATH` entries (`tasks.manual_dirs`), or None.
    cache_dir: embedding cache, default `<output_dir>/embeddings`.
    overwrite: replace existing results.md and results.csv (and saved classifiers).
    save_classifiers: None, or a folder that receives, per task, `<task>/`: a
        MatpacAudioClassifier preset (the model's backbone + the probe of the first run and
        evaluation, its standardisation folded into the Dense layer, the task's labels), which
        `matpac-tag` and `matpac-export` take. Needs source "model", mode "precise" and
        input_length "full": the classifier scores the precise embedding of whole clips.
    """

    tasks: tuple[str, ...]
    output_dir: str
    model: str | None = None
    source: str = "model"
    init_seed: int = 0
    data_dir: str | None = None
    manual_dirs: tuple[str, ...] | None = None
    cache_dir: str | None = None
    mode: str = "precise"
    input_length: str = "full"
    embed_batch_size: int = 16
    probe: ProbeConfig = PRESETS["paper"]
    runs: RunConfig = RUN_PRESETS["paper"]
    protocol: str = "paper"
    ci_method: str = "t"
    overwrite: bool = False
    save_classifiers: str | None = None
    temporal_support: tuple[float, ...] = ()
    hop: tuple[float, ...] = ()
    aggregate: str = "mean"

    def __post_init__(self):
        for name in self.tasks:
            try:
                tasks.get_task(name)
            except ValueError as error:  # an unknown name
                raise InputError(f"--task {error}") from None
        if self.source not in features.SOURCES:
            raise InputError(f"source must be one of {features.SOURCES}; got {self.source!r}")
        if self.input_length not in features.INPUT_LENGTHS:
            raise InputError(f"input_length must be one of {features.INPUT_LENGTHS}")
        if self.source != "logmel_stats":
            if not self.model:
                raise InputError(f"--model: a model file is needed for source={self.source!r}")
            check_model_path(self.model, "--model")
        if self.save_classifiers is not None and (
            self.source,
            self.mode,
            self.input_length,
        ) != ("model", "precise", "full"):
            raise InputError(
                "--save_classifiers: a classifier scores the precise embedding of whole clips "
                "of a model: it needs --features=model --mode=precise --input_length=full; got "
                f"{self.source}, {self.mode}, {self.input_length}"
            )
        if self.manual_dirs is not None:
            try:
                resolved = tasks.manual_dirs(self.tasks, self.manual_dirs)
            except ValueError as error:
                raise InputError(f"--manual_dir: {error}") from None
            object.__setattr__(self, "manual_dirs", resolved)  # one entry (or None) per task
        self._check_windows()

    def _check_windows(self) -> None:
        """The sweep's options (their ranges need the model: `windows`)."""
        if not self.temporal_support:
            if self.hop or self.aggregate != "mean":
                raise InputError("--hop and --aggregate need --temporal_support")
            return
        if self.source == "logmel_stats":
            raise InputError("--temporal_support needs a model: not --features=logmel_stats")
        if self.save_classifiers is not None:
            raise InputError(
                "--save_classifiers: a classifier scores the precise embedding; it cannot be "
                "saved from a --temporal_support sweep"
            )
        if len(self.hop) not in (0, 1, len(self.temporal_support)):
            raise InputError(
                f"--hop: {len(self.hop)} given for {len(self.temporal_support)} temporal "
                "supports (give one for all, or one per temporal support)"
            )
        if self.aggregate not in AGGREGATES:
            raise InputError(f"--aggregate must be one of {AGGREGATES}; got {self.aggregate!r}")

    def windows(self, backbone) -> list[tuple[float, float | None]]:
        """(temporal support, hop) in seconds of each sweep step, checked for `backbone`.

        Raises:
            InputError: a value out of range for the model (the message names the flag).
        """
        hops = self.hop or (None,)
        hops = hops * len(self.temporal_support) if len(hops) == 1 else hops
        steps = list(zip(self.temporal_support, hops, strict=True))
        for support, hop in steps:
            try:
                window_frames(backbone, support, hop, prefix="--")
            except ValueError as error:
                raise InputError(str(error)) from None
        return steps

    @property
    def cache(self) -> str:
        """The embedding cache folder."""
        return self.cache_dir or os.path.join(self.output_dir, "embeddings")

    @property
    def label(self) -> str:
        """How the features are named in the table."""
        if self.source == "model":
            return os.fspath(self.model)
        if self.source == "random_init":
            return f"random_init({self.model}, seed {self.init_seed})"
        return "logmel_stats"


def source_key(options: Options) -> dict:
    """The part of the cache key that identifies the features' source."""
    if options.source == "logmel_stats":
        return {"source": "logmel_stats", "mode": "na"}
    key = {"source": options.source, "model_sha256": features.file_sha256(options.model)}
    if options.source == "random_init":
        key["init_seed"] = options.init_seed
    return {**key, "mode": options.mode}


def load_model_backbone(options: Options):
    """The MATPAC encoder of `options.model` (None for "logmel_stats").

    Raises:
        InputError: the file does not load as a MATPAC model (the message names --model).
    """
    if options.source == "logmel_stats":
        return None
    from matpac_keras.saving import load_backbone

    try:
        return load_backbone(options.model)
    except ValueError as error:  # InputError included: corrupt, or not a MATPAC model
        raise InputError(f"--model {error}") from error


def make_extractor(options: Options, backbone, temporal_support=None, hop=None):
    """The EmbeddingExtractor of `options` (and of one sweep step's window) on `backbone`, or
    on its architecture at random initialisation (`init_seed`) for source "random_init"."""
    import keras

    from matpac_keras.embedding import EmbeddingExtractor

    if options.source == "random_init":
        keras.utils.set_random_seed(options.init_seed)
        backbone = backbone.__class__.from_config(backbone.get_config())
        backbone.build(None)
    return EmbeddingExtractor(
        backbone,
        mode=options.mode,
        batch_size=options.embed_batch_size,
        temporal_support=temporal_support,
        hop=hop,
        aggregate=options.aggregate if temporal_support is not None else "mean",
    )


def make_embedder(options: Options, backbone=None) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Waveforms -> features [N, D] for `options.source` (loads the model unless given)."""
    if options.source == "logmel_stats":
        from matpac_keras.evaluation.baselines import logmel_statistics

        return logmel_statistics
    from matpac_keras.embedding import bucketed_embeddings

    if backbone is None:
        backbone = load_model_backbone(options)
    extractor = make_extractor(options, backbone)
    return lambda waves: bucketed_embeddings(extractor, waves)


class _LazyEmbedder:
    """Builds the embedder (of an already loaded backbone) on first use."""

    def __init__(self, options: Options, backbone=None):
        self.options = options
        self.backbone = backbone
        self.embed = None

    def __call__(self, waveforms):
        if self.embed is None:
            self.embed = make_embedder(self.options, self.backbone)
        return self.embed(waveforms)


def input_seconds(task: tasks.Task, options: Options) -> float | None:
    """EVAR's unit_sec of `task` with input_length "evar" (None: whole clips)."""
    return task.evar_seconds if options.input_length == "evar" else None


def task_features(
    task: tasks.Task,
    builder,
    options: Options,
    embedder: Callable,
    log=print,
    extractor=None,
) -> dict:
    """Every split's features of `task`, from the cache or computed (and then cached).

    `extractor`: a sweep step's EmbeddingExtractor, whose window, hop and aggregate then enter
    the cache key (`features.window_key`)."""
    seconds = input_seconds(task, options)
    if options.input_length == "evar" and seconds is None:
        log(f"{task.name}: no EVAR unit_sec, embedding whole clips")
    key = {
        **source_key(options),
        **({} if extractor is None else features.window_key(extractor)),
        "tfds": task.tfds_name,
        "tfds_version": str(builder.info.version),
        "input_length": options.input_length,
        "seconds": seconds,
    }
    path = features.cache_path(options.cache, task.name, key)
    splits = features.load(path, key)
    if splits is not None:
        log(f"{task.name}: cached features read from {path}")
        return splits
    batches = {s: tfds_source.clip_batches(builder, s, task) for s in task.splits}
    totals = {s: builder.info.splits[s].num_examples for s in task.splits}
    splits = features.compute(batches, embedder, seconds, totals)
    features.save(path, splits, key)
    log(f"{task.name}: features written to {path}")
    return splits


def check_outputs(options: Options) -> None:
    """Before the work: results.md / results.csv new (or `overwrite`), folders writable."""
    for path in report.paths(options.output_dir):
        check_output(path, overwrite=options.overwrite)
    check_writable_folder(options.cache)
    for name in options.tasks if options.save_classifiers is not None else ():
        path = classifier_path(options, tasks.get_task(name))
        check_output(path, overwrite=options.overwrite, folder=True, flag="--save_classifiers")


def classifier_path(options: Options, task: tasks.Task) -> str:
    """Where `save_classifiers` puts the classifier of `task`."""
    return os.path.join(options.save_classifiers, task.name)


def save_classifier(backbone, probe, builder, task: tasks.Task, path: str, overwrite: bool):
    """Writes `backbone` + `probe` (its standardisation folded in) as a MatpacAudioClassifier
    preset with the task's labels, atomically."""
    from matpac_keras.audio_classifier import (
        MatpacAudioClassifier,
        MatpacAudioClassifierPreprocessor,
    )

    kernel, bias = probe_weights(probe)
    num_classes = kernel.shape[1]
    model = MatpacAudioClassifier(
        backbone,
        num_classes,
        preprocessor=MatpacAudioClassifierPreprocessor(),
        labels=tfds_source.label_names(builder, task, num_classes),
        multi_label=task.multi_label,
    )
    model.output_dense.set_weights([kernel.astype("float32"), bias.astype("float32")])
    with atomic_output(path, overwrite=overwrite, folder=True) as temporary:
        model.save_to_preset(os.fspath(temporary))


class _FirstProbe:
    """Keeps the first probe `evaluate_task` trains (first seed, first evaluation)."""

    def __init__(self):
        self.kept = None

    def __call__(self, name: str, seed: int, probe) -> None:
        if self.kept is None:
            self.kept = (name, seed, probe)


def evaluate(options: Options, log=print) -> list[report.Row]:
    """Evaluates every task; writes results.md and results.csv; returns the rows.

    The outputs and the model are checked before any TFDS dataset is built or read.
    """
    task_list = [tasks.get_task(name) for name in options.tasks]
    check_outputs(options)
    embedder = _LazyEmbedder(options, load_model_backbone(options))
    rows = []
    for i, task in enumerate(task_list):
        manual_dir = options.manual_dirs[i] if options.manual_dirs else None
        builder = tfds_source.prepared_builder(task, options.data_dir, manual_dir)
        splits = task_features(task, builder, options, embedder, log)
        sizes = ", ".join(f"{s} {len(d)}" for s, d in splits.items())
        log(f"{task.name}: {sizes} clips, {next(iter(splits.values())).x.shape[1]} dims")
        first = _FirstProbe()
        scores = evaluate_task(
            task,
            splits,
            tfds_source.num_classes(builder, task),
            options.probe,
            options.runs,
            on_probe=first,
        )
        rows.append(report.Row(scores, options.label, options.protocol))
        if options.save_classifiers is not None:
            name, seed, probe = first.kept
            path = classifier_path(options, task)
            save_classifier(embedder.backbone, probe, builder, task, path, options.overwrite)
            log(f"{task.name}: wrote classifier {path} (the probe of {name}, seed {seed})")
    md_path, csv_path = report.write(
        rows, options.output_dir, options.ci_method, overwrite=options.overwrite
    )
    log(report.markdown(rows, options.ci_method))
    log(f"wrote {md_path} and {csv_path}")
    return rows
