"""A multinomial logistic-regression probe on frozen embeddings, in NumPy (any backend).

The demo's linear probe, and a quick, deterministic probe for evaluations: standardised
features (training mean and std), then the convex objective

    mean_i cross_entropy(softmax(x_i W + b), y_i) + l2 / 2 * ||W||^2     (b not penalised)

minimised to a tight gradient tolerance with L-BFGS in float64, so the result does not depend on
a learning rate or an iteration budget. It is scikit-learn's `LogisticRegression(C=1 / (n * l2))`
(multinomial, lbfgs), which the tests compare it with; `probe_accuracy` picks `l2` on a held-out
share of the training set, then refits on all of it.
"""

from dataclasses import dataclass

import numpy as np

_HISTORY = 10  # L-BFGS memory
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class LogisticRegression:
    """Softmax regression with an l2 penalty on the weights, fitted by L-BFGS.

    Args:
        l2: float. Penalty weight on ||W||^2 / 2 (per example: the loss is a mean). Defaults to
            1e-3.
        tolerance: float. Stop when the gradient's max-abs entry falls below it. Defaults to 1e-6.
        max_iterations: int. Defaults to 2000.

    Example:
    >>> probe = LogisticRegression(l2=1e-3).fit(train_x, train_y)
    >>> probe.accuracy(test_x, test_y)
    """

    def __init__(self, l2: float = 1e-3, tolerance: float = 1e-6, max_iterations: int = 2000):
        if l2 <= 0:
            raise ValueError(
                f"l2 must be positive (it makes the problem strictly convex); got {l2}"
            )
        self.l2 = l2
        self.tolerance = tolerance
        self.max_iterations = max_iterations

    def fit(self, features: np.ndarray, labels: np.ndarray, num_classes: int | None = None):
        """Fits on features [N, F] and integer labels [N]; returns self."""
        x, y = _check(features, labels)
        num_classes = int(y.max()) + 1 if num_classes is None else num_classes
        if y.max() >= num_classes:
            raise ValueError(f"labels go up to {y.max()}, beyond num_classes={num_classes}")
        self.mean = x.mean(axis=0)
        self.scale = np.maximum(x.std(axis=0), 1e-8)
        x = (x - self.mean) / self.scale
        one_hot = np.eye(num_classes)[y]
        shape = (x.shape[1] + 1, num_classes)  # weights, then the bias row

        def objective(params):
            w = params.reshape(shape)
            probs = _softmax(x @ w[:-1] + w[-1])
            loss = -np.mean(np.log(np.maximum(np.sum(probs * one_hot, axis=1), 1e-300)))
            loss += 0.5 * self.l2 * np.sum(w[:-1] ** 2)
            error = (probs - one_hot) / len(x)
            grad = np.concatenate([x.T @ error + self.l2 * w[:-1], error.sum(0)[None]])
            return loss, grad.ravel()

        params, self.iterations, self.converged = _lbfgs(
            objective, np.zeros(np.prod(shape)), self.tolerance, self.max_iterations
        )
        weights = params.reshape(shape)
        self.weights, self.bias = weights[:-1], weights[-1]
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes]."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return _softmax(x @ self.weights + self.bias)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(features), axis=1)

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(features) == np.asarray(labels)))


def _check(features, labels) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"need features [N, F] and labels [N]; got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("labels must be non-negative integers")
    if not np.all(np.isfinite(x)):
        raise ValueError("features hold non-finite values")
    return x, y.astype(np.int64)


def _lbfgs(objective, params, tolerance: float, max_iterations: int):
    """Minimises `objective(params) -> (value, gradient)`; returns (params, iterations, ok)."""
    value, grad = objective(params)
    steps, changes = [], []
    for iteration in range(max_iterations):
        if np.max(np.abs(grad)) < tolerance:
            return params, iteration, True
        # Two-loop recursion: direction = -H grad with the last _HISTORY curvature pairs.
        direction = -grad
        alphas = []
        for s, y in reversed(list(zip(steps, changes, strict=True))):
            alpha = s @ direction / (y @ s)
            direction = direction - alpha * y
            alphas.append(alpha)
        if steps:
            direction = direction * (steps[-1] @ changes[-1]) / (changes[-1] @ changes[-1])
        for (s, y), alpha in zip(zip(steps, changes, strict=True), reversed(alphas), strict=True):
            direction = direction + s * (alpha - y @ direction / (y @ s))
        if grad @ direction >= 0:  # not a descent direction: restart from steepest descent
            steps, changes, direction = [], [], -grad
        step = 1.0 if steps else 1.0 / max(np.linalg.norm(grad), 1.0)
        while True:
            candidate = params + step * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + _ARMIJO * step * (grad @ direction) or step < 1e-12:
                break
            step *= 0.5
        s, y = candidate - params, new_grad - grad
        if s @ y > 1e-12:
            steps, changes = (steps + [s])[-_HISTORY:], (changes + [y])[-_HISTORY:]
        params, value, grad = candidate, new_value, new_grad
    return params, max_iterations, bool(np.max(np.abs(grad)) < tolerance)


@dataclass
class ProbeResult:
    """Test accuracy, with the `l2` chosen on the validation share and its accuracy there."""

    accuracy: float
    l2: float
    validation_accuracy: float


def probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    l2_grid: tuple = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    validation_fraction: float = 0.25,
    seed: int = 0,
) -> ProbeResult:
    """Linear-probe test accuracy: `l2` picked on a stratified held-out share, then refitted.

    Ties in validation accuracy go to the larger `l2` (the simpler model).
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}")
    x, y = _check(train_features, train_labels)
    num_classes = int(max(y.max(), np.max(test_labels))) + 1
    rng = np.random.default_rng(seed)
    validation = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # stratified: the same share of every class
        members = rng.permutation(np.flatnonzero(y == label))
        validation[members[: int(round(validation_fraction * len(members)))]] = True
    if validation.all() or not validation.any():
        raise ValueError(f"{len(y)} training examples are too few to hold some out")
    scores = [
        LogisticRegression(l2)
        .fit(x[~validation], y[~validation], num_classes)
        .accuracy(x[validation], y[validation])
        for l2 in l2_grid
    ]
    best = max(range(len(l2_grid)), key=lambda i: (scores[i], l2_grid[i]))
    probe = LogisticRegression(l2_grid[best]).fit(x, y, num_classes)
    return ProbeResult(probe.accuracy(test_features, test_labels), l2_grid[best], scores[best])
