"""Linear probe on frozen clip embeddings (SPEC section 7), on any Keras backend.

One Dense layer trained with Adam on full-batch numpy data (`model.fit` with validation data),
keeping the weights of the best validation epoch. `PRESETS["paper"]` is the MATPAC protocol
(batch 128, Adam 1e-4, best validation loss, raw embeddings); `PRESETS["evar"]` the recipe of
EVAR (nttcslab/eval-audio-repr, as configured for M2D): standardised embeddings, lr 3e-5, batch
200, PyTorch `nn.Linear` initialisation, L2 1e-8, best validation metric, 20 epochs patience.
The paper does not give its epoch budget: 200 epochs (EVAR's cap), keeping the best one.
Every field can be set on its own; both presets run the same code.
"""

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterator

import keras
import numpy as np
from keras import ops

SELECT_BY = ("loss", "metric")
INITS = ("keras", "torch")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How one probe is trained.

    learning_rate: float. Adam step size.
    batch_size: int. Training batch (fit uses min(batch, N)).
    max_epochs: int. Epochs at most.
    patience: int or None. Stop after this many epochs without a better validation score;
        None trains all `max_epochs` (the best epoch is still the one kept).
    select_by: "loss" (lowest validation loss, first one on ties) or "metric" (highest
        validation accuracy / mAP, the later one on ties, as EVAR).
    standardize: bool. Scale each embedding dimension by the training set's mean and std.
    weight_decay: float. L2 penalty on kernel and bias, as PyTorch Adam's `weight_decay`
        (gradient += weight_decay * w).
    init: "keras" (glorot-uniform kernel, zero bias) or "torch" (`nn.Linear`'s default:
        kernel and bias uniform in +-1/sqrt(fan_in)).
    """

    learning_rate: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 200
    patience: int | None = None
    select_by: str = "loss"
    standardize: bool = False
    weight_decay: float = 0.0
    init: str = "keras"

    def __post_init__(self):
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}; got {self.select_by!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}")
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError(f"learning_rate, batch_size and max_epochs must be positive: {self}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None; got {self.patience}")


PRESETS = {
    "paper": ProbeConfig(),
    "evar": ProbeConfig(
        learning_rate=3e-5,
        batch_size=200,
        max_epochs=200,
        patience=20,
        select_by="metric",
        standardize=True,
        weight_decay=1e-8,
        init="torch",
    ),
}


@dataclasses.dataclass
class ProbeData:
    """Embeddings and labels of one split.

    x: float32 [N, D]. labels: int [N] (single-label) or {0, 1} [N, C] (multi-label).
    mask: bool [N, C] or None: which labels are annotated (OpenMIC); others are ignored.
    """

    x: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype="float32")
        if self.x.ndim != 2 or len(self.labels) != len(self.x):
            raise ValueError(
                f"expected x [N, D] and N labels; got {self.x.shape} and {len(self.labels)}"
            )
        if self.mask is not None and np.shape(self.mask) != np.shape(self.labels):
            raise ValueError(f"mask {np.shape(self.mask)} != labels {np.shape(self.labels)}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, indices: np.ndarray) -> "ProbeData":
        mask = None if self.mask is None else self.mask[indices]
        return ProbeData(self.x[indices], self.labels[indices], mask)

    @staticmethod
    def concatenate(parts: list["ProbeData"]) -> "ProbeData":
        masks = [p.mask for p in parts]
        mask = None if masks[0] is None else np.concatenate(masks)
        return ProbeData(
            np.concatenate([p.x for p in parts]), np.concatenate([p.labels for p in parts]), mask
        )


@keras.saving.register_keras_serializable(package="matpac_keras")
def masked_binary_crossentropy(y_true, logits):
    """Sigmoid BCE over annotated labels only; `y_true` is [labels, mask] concatenated, [B, 2C].

    Per clip: sum of the annotated labels' BCE / C (so the batch mean is the masked mean scaled
    by the fraction of annotated labels, a constant Adam ignores).
    """
    logits = ops.convert_to_tensor(logits)
    labels, mask = ops.split(ops.cast(y_true, logits.dtype), 2, axis=-1)
    per_label = ops.maximum(logits, 0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(per_label * mask, axis=-1)


def _targets(data: ProbeData) -> np.ndarray:
    """What `fit` sees as y: class indices, multi-hot floats, or [labels, mask] for masked."""
    if data.labels.ndim == 1:
        return data.labels.astype("int32")
    labels = data.labels.astype("float32")
    if data.mask is None:
        return labels
    return np.concatenate([labels, data.mask.astype("float32")], axis=1)


def _loss(data: ProbeData):
    if data.labels.ndim == 1:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if data.mask is None:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return masked_binary_crossentropy


def build_probe(
    dim: int, num_classes: int, config: ProbeConfig, train_x: np.ndarray | None = None
) -> keras.Model:
    """Embedding [B, dim] -> logits [B, num_classes]: (standardisation +) one Dense layer."""
    layers = [keras.Input((dim,))]
    if config.standardize:
        if train_x is None:
            raise ValueError("standardize=True needs the training embeddings")
        std = train_x.std(axis=0, dtype="float64")
        std = np.where(std > 0, std, 1.0)  # constant dimensions pass through centred
        layers.append(
            keras.layers.Normalization(mean=train_x.mean(axis=0), variance=std**2, name="scaler")
        )
    if config.init == "torch":
        bound = 1 / math.sqrt(dim)
        kernel_init = keras.initializers.RandomUniform(-bound, bound)
        bias_init = keras.initializers.RandomUniform(-bound, bound)
    else:
        kernel_init, bias_init = "glorot_uniform", "zeros"
    l2 = keras.regularizers.L2(config.weight_decay / 2) if config.weight_decay else None
    layers.append(
        keras.layers.Dense(
            num_classes,
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            kernel_regularizer=l2,
            bias_regularizer=l2,
            name="linear",
        )
    )
    return keras.Sequential(layers, name="linear_probe")


def probe_weights(probe: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """The probe as one affine map, logits = x @ kernel + bias: (kernel [dim, n], bias [n]),
    float64, its standardisation (if any) folded in: W / std per input, b - (mean / std) @ W."""
    kernel, bias = (np.asarray(w, "float64") for w in probe.get_layer("linear").get_weights())
    if any(layer.name == "scaler" for layer in probe.layers):
        scaler = probe.get_layer("scaler")
        mean = np.asarray(ops.convert_to_numpy(scaler.mean), "float64").reshape(-1)
        std = np.sqrt(np.asarray(ops.convert_to_numpy(scaler.variance), "float64").reshape(-1))
        std = np.maximum(std, keras.config.epsilon())  # as Normalization divides
        kernel = kernel / std[:, None]
        bias = bias - mean @ kernel
    return kernel, bias


class KeepBest(keras.callbacks.Callback):
    """Tracks the best validation epoch, restores its weights at the end, stops early.

    `score` is None to use `logs["val_loss"]` (lower is better, earlier epoch on ties), or a
    function of the model returning a validation metric (higher is better, later on ties).
    """

    def __init__(self, score: Callable[[keras.Model], float] | None, patience: int | None):
        super().__init__()
        self.score = score
        self.patience = patience
        self.best = None
        self.best_epoch = -1
        self.best_weights = None
        self._wait = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.score is None:
            value = -float(logs["val_loss"])
            better = self.best is None or value > self.best
        else:
            value = float(self.score(self.model))
            better = self.best is None or value >= self.best
        if better:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class _RetracingWarnings(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function> triggered tf.function
    retracing" warnings: every probe run is a new Keras model, whose train and predict
    functions are new tf.functions, each traced once (and once more for a smaller last batch);
    TensorFlow counts those traces across the models and warns after five."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _expected_traces() -> Iterator[None]:
    """TensorFlow's retracing warnings dropped in the block (no-op under JAX and torch)."""
    logger, quiet = logging.getLogger("tensorflow"), _RetracingWarnings()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Logits [N, C] of a probe for embeddings [N, D]."""
    with _expected_traces():
        logits = model.predict(np.asarray(x, "float32"), batch_size=batch_size, verbose=0)
    return np.asarray(logits)


def train_probe(
    train: ProbeData,
    valid: ProbeData,
    num_classes: int,
    config: ProbeConfig,
    seed: int,
    metric: Callable[[ProbeData, np.ndarray], float] | None = None,
) -> tuple[keras.Model, int]:
    """Trains a probe; returns it with the best epoch's weights, and that epoch (0-based).

    `metric(valid, logits)` is required with `config.select_by == "metric"`.
    """
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"empty split: {len(train)} training, {len(valid)} validation clips")
    if config.select_by == "metric" and metric is None:
        raise ValueError("select_by='metric' needs a metric function")
    keras.utils.set_random_seed(seed)
    model = build_probe(train.x.shape[1], num_classes, config, train.x)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=_loss(train))
    score = None
    if config.select_by == "metric":
        score = lambda m: metric(valid, predict(m, valid.x))  # noqa: E731
    keep_best = KeepBest(score, config.patience)
    with _expected_traces():
        model.fit(
            train.x,
            _targets(train),
            batch_size=config.batch_size,
            epochs=config.max_epochs,
            shuffle=True,
            validation_data=(valid.x, _targets(valid)),
            validation_batch_size=4096,
            callbacks=[keep_best],
            verbose=0,
        )
    return model, keep_best.best_epoch
