"""Downstream metrics in numpy: accuracy, average precision, macro (masked) mAP.

`mean_average_precision` equals scikit-learn's `average_precision_score(average="macro")`,
tied scores included (one precision/recall point per distinct score); a class without positives
scores 0, as in scikit-learn. The masked variant (OpenMIC, whose clips are annotated for only
some instruments) computes each class's AP over the clips where that class is annotated.
"""

import numpy as np


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of clips whose highest score is their label.

    Args:
        labels: int [N] class indices, or one-hot [N, C].
        scores: float [N, C] logits or probabilities.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"expected labels [N] and scores [N, C]; got {labels.shape}, {scores.shape}"
        )
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(scores.argmax(axis=1) == labels))


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one class: sum over distinct score thresholds, highest first, of
    (recall gain) x precision. Ties form one threshold. 0 when there is no positive.

    Args:
        targets: [N] binary (bool or 0/1) ground truth.
        scores: float [N], higher means more likely positive.
    """
    targets = np.asarray(targets).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if targets.ndim != 1 or targets.shape != scores.shape:
        raise ValueError(f"expected targets and scores [N]; got {targets.shape}, {scores.shape}")
    if len(targets) == 0:
        raise ValueError("average precision of an empty set")
    order = np.argsort(-scores, kind="stable")
    scores, targets = scores[order], targets[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(targets)[last_of_tie]
    if true_pos[-1] == 0:
        return 0.0
    precision = true_pos / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0, true_pos]) / true_pos[-1]
    return float(np.sum(recall_gain * precision))


def mean_average_precision(
    targets: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Macro mAP: the mean over classes of each class's average precision.

    Args:
        targets: [N, C] binary ground truth.
        scores: float [N, C].
        mask: optional bool [N, C]. Class c's AP uses only the clips where `mask[:, c]` is
            true (a class annotated nowhere is an error).
    """
    targets = np.asarray(targets)
    scores = np.asarray(scores)
    if targets.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(f"expected targets and scores [N, C]; got {targets.shape}, {scores.shape}")
    if mask is None:
        mask = np.ones(targets.shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != targets.shape:
        raise ValueError(f"mask shape {mask.shape} differs from targets shape {targets.shape}")
    empty = np.flatnonzero(~mask.any(axis=0))
    if len(empty):
        raise ValueError(f"classes {empty.tolist()} are masked out in every clip")
    return float(
        np.mean(
            [
                average_precision(targets[mask[:, c], c], scores[mask[:, c], c])
                for c in range(targets.shape[1])
            ]
        )
    )
