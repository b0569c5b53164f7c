"""Result tables: mean +- 95% CI per task, as markdown and CSV (scores in percent), beside the
published MATPAC++ score of the task where there is one (`PUBLISHED`)."""

import csv
import dataclasses
import io
import math
import os

from matpac_keras.evaluation.protocol import TaskScores
from matpac_keras.evaluation.statistics import confidence_interval
from matpac_keras.outputs import atomic_output, check_output

CSV_COLUMNS = (
    "task",
    "metric",
    "features",
    "protocol",
    "runs",
    "mean",
    "ci95",
    "ci_method",
    "scores",
    "seeds",
    "best_epochs",
    "published_matpac_plusplus",
    "published_matpac_plusplus_ci95",
)


@dataclasses.dataclass(frozen=True)
class Published:
    """A paper's linear-probe scores: task -> (mean, 95% CI half-width or None), in percent."""

    source: str
    scores: dict[str, tuple[float, float | None]]


# Published linear-probe scores, by model. `magnatagatune` is the filtered split's task (the
# papers do not say which MTT split they use). No MTG-Jamendo score is published in a source we
# could read: MATPAC++'s Table 1 (also assets/table_results.png in github.com/aurianworld/matpac,
# whose README has no other table) has only these 7 tasks, so mtg_* rows are left blank.
PUBLISHED = {
    "MATPAC++": Published(
        "MATPAC++ (Quelennec et al., arXiv 2508.12709) Table 1, mean ± 95% CI; the same table is "
        "github.com/aurianworld/matpac assets/table_results.png",
        {
            "openmic": (85.6, 0.1),
            "nsynth": (76.8, 0.2),
            "gtzan": (87.6, 0.0),
            "magnatagatune": (40.8, 0.1),
            "fsd50k": (56.1, 0.1),
            "esc50": (93.1, 0.1),
            "urbansound8k": (89.7, 0.3),
        },
    ),
    "MATPAC": Published(
        "MATPAC (Quelennec et al., ICASSP 2025, arXiv 2502.12031) Table II, n_tau = 10 "
        "(SPEC section 7; no CI given there)",
        {
            "openmic": (85.3, None),
            "nsynth": (74.3, None),
            "gtzan": (85.3, None),
            "magnatagatune": (41.1, None),
            "fsd50k": (55.2, None),
            "esc50": (93.5, None),
            "urbansound8k": (89.4, None),
        },
    ),
}
SHOWN = "MATPAC++"  # the published column of the tables


@dataclasses.dataclass
class Row:
    """One table row: a task's scores with what produced them."""

    scores: TaskScores
    features: str  # the model file (or baseline) the embeddings came from
    protocol: str  # e.g. "paper" or "evar", with any overridden options

    def summary(self, ci_method: str) -> tuple[float, float]:
        """(mean, CI half-width) in percent."""
        mean, half = confidence_interval(self.scores.runs, method=ci_method)
        return 100 * mean, 100 * half


def _best_epochs(scores: TaskScores) -> list[str]:
    """Per run, the 1-based best epoch (mean over folds for fold tasks)."""
    return [f"{1 + sum(e) / len(e):g}" for e in scores.best_epochs]


def _pm(mean: float, half: float | None) -> str:
    return f"{mean:.1f}" if half is None or math.isnan(half) else f"{mean:.1f} ± {half:.1f}"


def published(task: str, model: str = SHOWN) -> tuple[float, float | None] | None:
    """`model`'s published (mean, CI half-width) for `task`, or None where there is none."""
    return PUBLISHED[model].scores.get(task)


def markdown(rows: list[Row], ci_method: str = "t") -> str:
    """A markdown table: task, metric, mean +- CI, the published MATPAC++ score (blank where
    none is published), runs, per-run scores and best epochs, features, protocol."""
    interval = "t(0.975, n-1)·s/√n" if ci_method == "t" else "1.96·s/√n"
    lines = [
        f"Scores in %, mean ± 95% CI over runs ({interval}; runs differ in probe seed and, "
        "without a validation split, in the held-out clips).",
        "",
        f"| task | metric | mean ± 95% CI | {SHOWN} (published) | runs | per run | best epochs "
        "| features | protocol |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.scores
        per_run = " ".join(f"{100 * x:.2f}" for x in s.runs)
        paper = published(s.task)
        lines.append(
            f"| {s.task} | {s.metric} | {_pm(*row.summary(ci_method))} | "
            f"{_pm(*paper) if paper else ''} | {len(s.runs)} | "
            f"{per_run} | {' '.join(_best_epochs(s))} | {row.features} | {row.protocol} |"
        )
    lines += ["", f"Published: {PUBLISHED[SHOWN].source}."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row], ci_method: str = "t") -> str:
    """The same table as CSV, full precision; per-run scores and seeds separated by ';'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        s = row.scores
        mean, half = row.summary(ci_method)
        paper_mean, paper_half = published(s.task) or ("", None)
        writer.writerow(
            [
                s.task,
                s.metric,
                row.features,
                row.protocol,
                len(s.runs),
                f"{mean:.4f}",
                "" if math.isnan(half) else f"{half:.4f}",
                ci_method,
                ";".join(f"{100 * x:.4f}" for x in s.runs),
                ";".join(str(x) for x in s.seeds),
                ";".join(_best_epochs(s)),
                paper_mean,
                "" if paper_half is None else paper_half,
            ]
        )
    return out.getvalue()


def paths(output_dir: str) -> tuple[str, str]:
    """The paths of `results.md` and `results.csv` in `output_dir`."""
    return os.path.join(output_dir, "results.md"), os.path.join(output_dir, "results.csv")


def write(
    rows: list[Row], output_dir: str, ci_method: str = "t", overwrite: bool = True
) -> tuple[str, str]:
    """Writes `results.md` and `results.csv` into `output_dir`; returns their paths.

    Each file is written atomically (matpac_keras.outputs); with `overwrite=False` existing
    ones are refused (OutputError) before either is written.
    """
    targets = paths(output_dir)
    if not overwrite:
        for path in targets:
            check_output(path)
    texts = markdown(rows, ci_method), to_csv(rows, ci_method)
    for path, text in zip(targets, texts, strict=True):
        with atomic_output(path, overwrite=overwrite) as temporary:
            with open(temporary, "w", encoding="utf-8") as f:
                f.write(text)
    return targets
