"""The temporal-support sweep of `matpac-evaluate --temporal_support=0.5,1,2,4,6.08`.

Per task and temporal support (TS): every split embedded with windows of that TS (one every
hop: `EmbeddingExtractor`), cached per window, hop and aggregate; the probe protocol of the
options; the cost of the embedding; one row. Written into the output folder:

- `temporal_support.csv`: one row per task and TS (`CSV_COLUMNS`). `temporal_support_s` and
  `hop_s` are the values used, once rounded to whole patch columns (0.5 -> 0.48); `mean` and
  `ci95` the score in percent, mean and 95 % CI half-width over the runs (blank for one run);
  `gflop_per_clip_second` the analytic encoder FLOPs (`flops.encoder_flops`: patch embedding +
  blocks) of one window over the hop: the cost per second of a long clip;
  `split_gflop_per_clip_second` the same count over the windows that the measured split's clips
  are actually cut into (shorter last windows, clips shorter than a window), over their audio;
  `ms_per_clip_second` and `peak_memory_mb` measured on this machine when embedding the measured
  split (`split`: the test split, or the first fold of fold tasks), warm (`evaluation/cost.py`);
  `features` and `protocol` as in results.csv.
- `temporal_support.png`: per task, the score with its CI against the TS, and the cost (GFLOP
  per clip second, and the measured ms per clip second) on second axes. Matplotlib's Agg canvas:
  no display needed.

Both are checked before any work (refused if they exist, unless `overwrite`) and written
atomically. The log ends with, per task, the cheapest TS (by GFLOP per clip second) whose mean
lies within the 95 % CI of the best mean.
"""

import csv
import dataclasses
import io
import math
import os

from matpac_keras.evaluation import features, runner, tasks, tfds_source
from matpac_keras.evaluation.cost import Cost, measure
from matpac_keras.evaluation.protocol import TaskScores, evaluate_task
from matpac_keras.evaluation.statistics import confidence_interval
from matpac_keras.flops import encoder_flops
from matpac_keras.frontend import num_frames
from matpac_keras.outputs import atomic_output, check_output, check_writable_folder

CSV_COLUMNS = (
    "task",
    "temporal_support_s",
    "hop_s",
    "metric",
    "mean",
    "ci95",
    "gflop_per_clip_second",
    "ms_per_clip_second",
    "peak_memory_mb",
    "aggregate",
    "window_frames",
    "hop_frames",
    "runs",
    "scores",
    "split",
    "split_gflop_per_clip_second",
    "features",
    "protocol",
)


@dataclasses.dataclass(frozen=True)
class Window:
    """An extractor's windows: temporal support and hop in seconds as used (whole patch
    columns), the aggregate, and the window and hop in frames."""

    temporal_support: float
    hop: float
    aggregate: str
    frames: int
    hop_frames: int

    @classmethod
    def of(cls, extractor) -> "Window":
        return cls(
            extractor.temporal_support,
            extractor.hop,
            extractor.aggregate,
            extractor.chunk_frames,
            extractor.hop_frames,
        )


@dataclasses.dataclass
class SweepRow:
    """One task at one temporal support: scores and costs."""

    scores: TaskScores
    window: Window
    gflop_per_clip_second: float
    split: str
    split_gflop_per_clip_second: float
    cost: Cost
    features: str = ""  # the model file (or its random init) the embeddings came from
    protocol: str = ""  # e.g. "paper", with any overridden options

    def summary(self, ci_method: str) -> tuple[float, float]:
        """(mean, CI half-width) in percent; the half-width is NaN for one run."""
        mean, half = confidence_interval(self.scores.runs, method=ci_method)
        return 100 * mean, 100 * half


def paths(output_dir: str) -> tuple[str, str]:
    """The paths of `temporal_support.csv` and `temporal_support.png` in `output_dir`."""
    return tuple(os.path.join(output_dir, f"temporal_support.{ext}") for ext in ("csv", "png"))


def measured_split(task: tasks.Task) -> str:
    """The split whose embedding is timed: the test split, or a fold task's first fold."""
    return task.folds[0] if task.folds else task.test


def _clip_flops(extractor, samples: int) -> float:
    """Analytic encoder FLOPs of the windows a clip of `samples` samples is cut into."""
    frames = num_frames(samples)
    return sum(encoder_flops(extractor.backbone, n) for _, n in extractor.windows(frames))


def sweep_step(task, builder, options, extractor, log=print) -> SweepRow:
    """One task at one extractor's temporal support: features (cached), probes, cost."""
    from matpac_keras.embedding import bucketed_embeddings

    def embed(waveforms):
        return bucketed_embeddings(extractor, waveforms)

    splits = runner.task_features(task, builder, options, embed, log, extractor)
    scores = evaluate_task(
        task, splits, tfds_source.num_classes(builder, task), options.probe, options.runs
    )
    split, seconds = measured_split(task), runner.input_seconds(task, options)

    def batches():
        for batch in tfds_source.clip_batches(builder, split, task):
            yield [features.fit_length(w, seconds) for w in batch.waveforms]

    # Warmed up (the split embedded once, untimed) even if its features were just computed: a
    # pass right after the features' own measured up to 3x slower here (FSDD, TensorFlow).
    cost = measure(embed, batches)
    split_flops = sum(_clip_flops(extractor, len(w)) for batch in batches() for w in batch)
    window_flops = encoder_flops(extractor.backbone, extractor.chunk_frames)
    return SweepRow(
        scores,
        Window.of(extractor),
        gflop_per_clip_second=window_flops / extractor.hop / 1e9,
        split=split,
        split_gflop_per_clip_second=split_flops / cost.clip_seconds / 1e9,
        cost=cost,
        features=options.label,
        protocol=options.protocol,
    )


def sweep(options: runner.Options, log=print) -> list[SweepRow]:
    """Runs the sweep of `options.temporal_support`; writes the CSV and the plot; returns the
    rows. The outputs, the model and the temporal supports are checked before any dataset is
    built."""
    task_list = [tasks.get_task(name) for name in options.tasks]
    for path in paths(options.output_dir):
        check_output(path, overwrite=options.overwrite)
    check_writable_folder(options.cache)
    backbone = runner.load_model_backbone(options)
    steps = options.windows(backbone)
    rows = []
    for i, task in enumerate(task_list):
        manual_dir = options.manual_dirs[i] if options.manual_dirs else None
        builder = tfds_source.prepared_builder(task, options.data_dir, manual_dir)
        for support, hop in steps:
            extractor = runner.make_extractor(options, backbone, support, hop)
            log(
                f"{task.name}: temporal support {support:g} s -> {extractor.chunk_frames} frames "
                f"({extractor.temporal_support:g} s), hop {extractor.hop:g} s, "
                f"{extractor.aggregate}"
            )
            rows.append(sweep_step(task, builder, options, extractor, log))
    csv_path = write(rows, options.output_dir, options.ci_method, options.overwrite)
    log(markdown(rows, options.ci_method))
    for line in cheapest_lines(rows, options.ci_method):
        log(line)
    log(f"wrote {csv_path} and {paths(options.output_dir)[1]}")
    return rows


def _number(value: float, digits: int = 4) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def to_csv(rows: list[SweepRow], ci_method: str = "t") -> str:
    """The sweep table as CSV (`CSV_COLUMNS`), one row per task and temporal support."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        mean, half = row.summary(ci_method)
        writer.writerow(
            [
                row.scores.task,
                f"{row.window.temporal_support:g}",
                f"{row.window.hop:g}",
                row.scores.metric,
                _number(mean),
                _number(half),
                _number(row.gflop_per_clip_second, 6),
                _number(row.cost.ms_per_clip_second, 3),
                _number(row.cost.peak_memory_mb, 1),
                row.window.aggregate,
                row.window.frames,
                row.window.hop_frames,
                len(row.scores.runs),
                ";".join(f"{100 * x:.4f}" for x in row.scores.runs),
                row.split,
                _number(row.split_gflop_per_clip_second, 6),
                row.features,
                row.protocol,
            ]
        )
    return out.getvalue()


def markdown(rows: list[SweepRow], ci_method: str = "t") -> str:
    """The sweep as a markdown table."""
    lines = [
        "| task | temporal support (s) | hop (s) | metric | mean ± 95% CI | GFLOP per clip s "
        "| split GFLOP per clip s | ms per clip s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mean, half = row.summary(ci_method)
        score = f"{mean:.1f}" if math.isnan(half) else f"{mean:.1f} ± {half:.1f}"
        lines.append(
            f"| {row.scores.task} | {row.window.temporal_support:g} | {row.window.hop:g} | "
            f"{row.scores.metric} | {score} | {row.gflop_per_clip_second:.4g} | "
            f"{row.split_gflop_per_clip_second:.4g} | {row.cost.ms_per_clip_second:.3g} | "
            f"{row.cost.peak_memory_mb:.1f} |"
        )
    return "\n".join(lines) + "\n"


def cheapest_within_ci(rows: list[SweepRow], ci_method: str = "t") -> dict:
    """Per task: (best row, cheapest row whose mean is within the best's 95 % CI), the best by
    mean score, the cheapest by GFLOP per clip second (ties: the shorter TS). With one run the
    CI is unknown: only a tie with the best qualifies."""
    chosen = {}
    for task in dict.fromkeys(row.scores.task for row in rows):
        own = [row for row in rows if row.scores.task == task]
        best = max(own, key=lambda row: row.summary(ci_method)[0])
        best_mean, half = best.summary(ci_method)
        floor = best_mean - (0.0 if math.isnan(half) else half)
        near = [row for row in own if row.summary(ci_method)[0] >= floor]
        cheapest = min(
            near, key=lambda row: (row.gflop_per_clip_second, row.window.temporal_support)
        )
        chosen[task] = (best, cheapest)
    return chosen


def cheapest_lines(rows: list[SweepRow], ci_method: str = "t") -> list[str]:
    """One line per task naming the cheapest temporal support within the CI of the best."""
    lines = []
    for task, (best, cheapest) in cheapest_within_ci(rows, ci_method).items():
        mean, half = best.summary(ci_method)
        interval = "" if math.isnan(half) else f" ± {half:.1f}"
        lines.append(
            f"{task}: cheapest temporal support within the 95% CI of the best "
            f"({best.window.temporal_support:g} s: {mean:.1f}{interval}): "
            f"{cheapest.window.temporal_support:g} s (hop {cheapest.window.hop:g} s, "
            f"{cheapest.summary(ci_method)[0]:.1f}, "
            f"{cheapest.gflop_per_clip_second:.4g} GFLOP per clip second)"
        )
    return lines


def plot(rows: list[SweepRow], path, ci_method: str = "t") -> None:
    """Writes the PNG at `path` (any name): per task, score ± CI against the temporal support,
    GFLOP per clip second and measured ms per clip second on second axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(row.scores.task for row in rows))
    figure = Figure(figsize=(7.5, 3.6 * len(names)), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, task in zip(figure.subplots(len(names), 1, squeeze=False)[:, 0], names, strict=True):
        own = sorted(
            (row for row in rows if row.scores.task == task),
            key=lambda r: r.window.temporal_support,
        )
        x = [row.window.temporal_support for row in own]
        means, halves = zip(*(row.summary(ci_method) for row in own), strict=True)
        axes.errorbar(
            x,
            means,
            yerr=[0 if math.isnan(h) else h for h in halves],
            marker="o",
            capsize=4,
            color="C0",
            label=f"{own[0].scores.metric}, mean ± 95% CI",
        )
        axes.set_xlabel("temporal support (s)")
        axes.set_ylabel(f"{own[0].scores.metric} (%)", color="C0")
        axes.set_title(f"{task} ({own[0].window.aggregate} of windows; hop = {_hops(own)})")
        flops = axes.twinx()
        flops.plot(
            x, [row.gflop_per_clip_second for row in own], "s--", color="C1", label="GFLOP / clip s"
        )
        flops.set_ylabel("GFLOP per clip second (analytic)", color="C1")
        wall = axes.twinx()
        wall.spines["right"].set_position(("axes", 1.16))
        wall.plot(
            x, [row.cost.ms_per_clip_second for row in own], "^:", color="C2", label="ms / clip s"
        )
        wall.set_ylabel("ms per clip second (measured)", color="C2")
        handles = [h for a in (axes, flops, wall) for h in a.get_legend_handles_labels()[0]]
        axes.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
            ncol=3,
            fontsize="small",
        )
    figure.savefig(path, format="png", dpi=110)


def _hops(rows: list[SweepRow]) -> str:
    hops = {row.window.hop for row in rows}
    if all(row.window.hop_frames == row.window.frames for row in rows):
        return "temporal support"
    return ", ".join(f"{h:g} s" for h in sorted(hops))


def write(rows: list[SweepRow], output_dir: str, ci_method: str, overwrite: bool) -> str:
    """Writes `temporal_support.csv` and `.png` into `output_dir`, each atomically; with
    `overwrite=False` existing ones are refused before either is written. Returns the CSV's
    path."""
    csv_path, png_path = paths(output_dir)
    if not overwrite:
        for path in (csv_path, png_path):
            check_output(path)
    with atomic_output(csv_path, overwrite=overwrite) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(to_csv(rows, ci_method))
    with atomic_output(png_path, overwrite=overwrite) as temporary:
        plot(rows, temporary, ci_method)
    return csv_path
