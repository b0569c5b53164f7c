"""Linear evaluation of one feature source on TFDS tasks: what `matpac-evaluate` runs.

Per task: prepare the TFDS dataset, read or compute (and cache) the features of every split,
run the probe protocol, and collect a table row. TensorFlow-only, through TFDS.
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from matpac_keras.evaluation import features, report, tasks, tfds_source
from matpac_keras.evaluation.probe import PRESETS, ProbeConfig
from matpac_keras.evaluation.protocol import RunConfig, evaluate_task

RUN_PRESETS = {"paper": RunConfig(), "evar": RunConfig(runs=3, first_seed=42)}


@dataclasses.dataclass(frozen=True)
class Options:
    """What to evaluate and how (the flags of `matpac-evaluate`).

    tasks: task names (tasks.py). source: "model", "random_init" or "logmel_stats".
    model: the .keras file (not needed for "logmel_stats"). manual_dirs: per task, or None.
    cache_dir: embedding cache, default `<output_dir>/embeddings`.
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

    def __post_init__(self):
        for name in self.tasks:
            tasks.get_task(name)  # raises for an unknown name
        if self.source not in features.SOURCES:
            raise ValueError(f"source must be one of {features.SOURCES}; got {self.source!r}")
        if self.input_length not in features.INPUT_LENGTHS:
            raise ValueError(f"input_length must be one of {features.INPUT_LENGTHS}")
        if self.source != "logmel_stats":
            if not self.model:
                raise ValueError(f"--model: a model file is needed for source={self.source!r}")
            if not os.path.isfile(self.model):
                raise FileNotFoundError(f"--model {self.model!r}: no such file")
            if not self.model.endswith(".keras"):
                raise ValueError(f"--model {self.model!r}: expected a .keras file")
        if self.manual_dirs is not None and len(self.manual_dirs) != len(self.tasks):
            raise ValueError(
                f"--manual_dir: {len(self.manual_dirs)} given for {len(self.tasks)} task(s)"
            )

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


def make_embedder(options: Options) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Waveforms -> features [N, D] for `options.source` (loads the model)."""
    if options.source == "logmel_stats":
        from matpac_keras.evaluation.baselines import logmel_statistics

        return logmel_statistics
    import keras

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.saving import load_backbone

    backbone = load_backbone(options.model)
    if options.source == "random_init":
        keras.utils.set_random_seed(options.init_seed)
        backbone = backbone.__class__.from_config(backbone.get_config())
        backbone.build(None)
    extractor = EmbeddingExtractor(backbone, mode=options.mode, batch_size=options.embed_batch_size)
    return lambda waves: features.bucketed_embeddings(extractor, waves)


class _LazyEmbedder:
    """Builds the embedder on first use: a fully cached evaluation never loads the model."""

    def __init__(self, options: Options):
        self.options = options
        self.embed = None

    def __call__(self, waveforms):
        if self.embed is None:
            self.embed = make_embedder(self.options)
        return self.embed(waveforms)


def task_features(
    task: tasks.Task, builder, options: Options, embedder: Callable, log=print
) -> dict:
    """Every split's features of `task`, from the cache or computed (and then cached)."""
    seconds = task.evar_seconds if options.input_length == "evar" else None
    if options.input_length == "evar" and seconds is None:
        log(f"{task.name}: no EVAR unit_sec, embedding whole clips")
    key = {
        **source_key(options),
        "tfds": task.tfds_name,
        "tfds_version": str(builder.info.version),
        "input_length": options.input_length,
        "seconds": seconds,
    }
    cache_dir = options.cache_dir or os.path.join(options.output_dir, "embeddings")
    path = features.cache_path(cache_dir, task.name, key)
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


def evaluate(options: Options, log=print) -> list[report.Row]:
    """Evaluates every task; writes results.md and results.csv; returns the rows."""
    task_list = [tasks.get_task(name) for name in options.tasks]
    embedder = _LazyEmbedder(options)
    rows = []
    for i, task in enumerate(task_list):
        manual_dir = options.manual_dirs[i] if options.manual_dirs else None
        builder = tfds_source.prepared_builder(task, options.data_dir, manual_dir)
        splits = task_features(task, builder, options, embedder, log)
        sizes = ", ".join(f"{s} {len(d)}" for s, d in splits.items())
        log(f"{task.name}: {sizes} clips, {next(iter(splits.values())).x.shape[1]} dims")
        scores = evaluate_task(
            task, splits, tfds_source.num_classes(builder, task), options.probe, options.runs
        )
        rows.append(report.Row(scores, options.label, options.protocol))
    md_path, csv_path = report.write(rows, options.output_dir, options.ci_method)
    log(report.markdown(rows, options.ci_method))
    log(f"wrote {md_path} and {csv_path}")
    return rows
