"""The linear-evaluation protocol on precomputed embeddings: splits, folds, runs, scores.

For each run (seed `first_seed + r`): for each evaluation (each held-out fold, or the official
test split) train a probe, pick its best validation epoch, score the test clips; the run's score
is the mean over evaluations. The runs' scores give mean +- CI (statistics.py).
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tqdm
from absl import logging

from matpac_keras.evaluation import metrics
from matpac_keras.evaluation.probe import ProbeConfig, ProbeData, predict, train_probe
from matpac_keras.evaluation.tasks import Task


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Repetitions and validation split of a task's evaluation.

    runs: int. Probes trained per evaluation, with seeds first_seed ... first_seed + runs - 1.
    valid_fraction: float. Share of the training clips held out for validation where the task
        has no validation split (drawn per run with the run's seed).
    """

    runs: int = 5
    first_seed: int = 0
    valid_fraction: float = 0.1

    def __post_init__(self):
        if self.runs < 1:
            raise ValueError(f"runs must be positive; got {self.runs}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1); got {self.valid_fraction}")


@dataclasses.dataclass
class TaskScores:
    """Scores of one task: `runs[r]` is run r's score, the mean of `per_evaluation[r]`."""

    task: str
    metric: str
    seeds: list[int]
    runs: list[float]
    per_evaluation: list[list[float]]
    evaluations: list[str]
    best_epochs: list[list[int]]


def score(
    task: Task, labels: np.ndarray, logits: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """The task's metric of `logits` for `labels` (and `mask`); masked mAP leaves out classes
    annotated in no clip (their AP is undefined)."""
    if task.metric == "accuracy":
        return metrics.accuracy(labels, logits)
    if mask is None:
        return metrics.mean_average_precision(labels, logits)
    kept = mask.any(axis=0)
    return metrics.mean_average_precision(labels[:, kept], logits[:, kept], mask[:, kept])


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, valid) indices of a seeded random split; round(fraction * n) >= 1 valid."""
    if n < 2:
        raise ValueError(f"cannot hold out validation clips from {n} training clip(s)")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(n - 1, max(1, round(fraction * n)))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def hold_out(data: ProbeData, fraction: float, seed: int) -> tuple[ProbeData, ProbeData]:
    """(train, valid) of `data` split by `split_indices`."""
    train, valid = split_indices(len(data), fraction, seed)
    return data.subset(train), data.subset(valid)


def evaluations(
    task: Task, splits: dict[str, ProbeData], fraction: float, seed: int
) -> list[tuple[str, ProbeData, ProbeData, ProbeData]]:
    """(name, train, valid, test) of each evaluation of one run."""
    missing = [s for s in task.splits if s not in splits]
    if missing:
        raise ValueError(f"{task.name}: missing split(s) {missing}")
    if task.folds:
        out = []
        for fold in task.folds:
            pool = ProbeData.concatenate([splits[f] for f in task.folds if f != fold])
            train, valid = hold_out(pool, fraction, seed)
            out.append((fold, train, valid, splits[fold]))
        return out
    if task.valid is None:
        train, valid = hold_out(splits[task.train], fraction, seed)
    else:
        train, valid = splits[task.train], splits[task.valid]
    return [(task.test, train, valid, splits[task.test])]


def _warn_degenerate(task: Task, name: str, data: ProbeData) -> None:
    if task.metric != "map":
        return
    mask = np.ones(data.labels.shape, bool) if data.mask is None else data.mask
    unannotated = np.flatnonzero(~mask.any(axis=0))
    if len(unannotated):
        logging.warning(
            "%s %s: %d class(es) annotated in no clip are left out of the mAP: %s",
            task.name,
            name,
            len(unannotated),
            unannotated.tolist()[:10],
        )
    no_positive = np.flatnonzero(mask.any(axis=0) & ~(data.labels.astype(bool) & mask).any(axis=0))
    if len(no_positive):
        logging.warning(
            "%s %s: %d class(es) without a positive clip score AP 0 (as scikit-learn): %s",
            task.name,
            name,
            len(no_positive),
            no_positive.tolist()[:10],
        )


def evaluate_task(
    task: Task,
    splits: dict[str, ProbeData],
    num_classes: int,
    probe_config: ProbeConfig,
    run_config: RunConfig,
    on_probe: Callable[[str, int, keras.Model], None] | None = None,
) -> TaskScores:
    """Trains and scores `run_config.runs` probes per evaluation of `task` (a progress bar
    counts the probes on a terminal). `on_probe(evaluation, seed, probe)` is given each trained
    probe (its best epoch's weights), e.g. to keep one."""
    seeds = [run_config.first_seed + r for r in range(run_config.runs)]
    per_eval, epochs, names = [], [], []
    total = len(seeds) * max(1, len(task.folds))
    with tqdm.tqdm(total=total, desc=f"{task.name} probes", unit="probe", disable=None) as bar:
        for seed in seeds:
            scores, best = [], []
            for name, train, valid, test in evaluations(
                task, splits, run_config.valid_fraction, seed
            ):
                if seed == seeds[0]:
                    names.append(name)
                    _warn_degenerate(task, name, test)
                model, epoch = train_probe(
                    train,
                    valid,
                    num_classes,
                    probe_config,
                    seed,
                    metric=lambda d, logits: score(task, d.labels, logits, d.mask),
                )
                scores.append(score(task, test.labels, predict(model, test.x), test.mask))
                best.append(epoch)
                if on_probe is not None:
                    on_probe(name, seed, model)
                bar.update()
            per_eval.append(scores)
            epochs.append(best)
            logging.info(
                "%s seed %d: %s (best epochs %s)",
                task.name,
                seed,
                " ".join(f"{s:.4f}" for s in scores),
                " ".join(str(e + 1) for e in best),
            )
    return TaskScores(
        task=task.name,
        metric=task.metric,
        seeds=seeds,
        runs=[float(np.mean(s)) for s in per_eval],
        per_evaluation=per_eval,
        evaluations=names,
        best_epochs=epochs,
    )
