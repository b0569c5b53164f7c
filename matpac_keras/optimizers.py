"""AdamW exactly as PyTorch computes it, with PyTorch's global-norm gradient clipping."""

import keras
from keras import ops


def global_norm(tensors) -> "keras.KerasTensor":
    """l2 norm of all tensors together (None entries skipped), as `clip_grad_norm_` computes it:
    the norm of the per-tensor norms, in float32."""
    norms = [
        ops.sqrt(ops.sum(ops.square(ops.cast(t, "float32")))) for t in tensors if t is not None
    ]
    return ops.sqrt(ops.sum(ops.square(ops.stack(norms))))


def clip_coefficient(norm, max_norm: float):
    """PyTorch's `clip_grad_norm_` factor: `min(max_norm / (norm + 1e-6), 1)`."""
    return ops.minimum(max_norm / (norm + 1e-6), 1.0)


@keras.saving.register_keras_serializable(package="matpac_keras")
class AdamW(keras.optimizers.Optimizer):
    """`torch.optim.AdamW` (the official run's optimizer), step for step, on every backend.

    Per variable, at step t (1-based), with decoupled weight decay applied first:
        p <- p * (1 - lr * weight_decay)
        m <- beta_1 * m + (1 - beta_1) * g;   v <- beta_2 * v + (1 - beta_2) * g^2
        p <- p - lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)

    Why not `keras.optimizers.AdamW`: Keras folds the bias corrections into the step size and
    adds epsilon to the *uncorrected* `sqrt(v)`, i.e. it uses `eps_hat = eps * sqrt(1 - beta_2^t)`
    (the Adam paper's "epsilon hat" form). With eps = 1e-6 and beta_2 = 0.95 that is a 4.5x
    smaller epsilon at t = 1, and the two disagree wherever |g| is near epsilon: ~3e-4 absolute
    on a weight after one lr-1e-3 step, far above the fixtures' 1e-5. Global-norm clipping also
    follows PyTorch (`max_norm / (norm + 1e-6)`, norm of per-tensor norms).

    Weight decay applies to every trainable variable, as in the official run; exclude some with
    `exclude_from_weight_decay(...)`.

    Layer-wise learning-rate decay (fine-tuning, BEiT / MAE): `lr_multipliers` maps variable
    paths to a factor m; such a variable steps with the learning rate `lr * m`, its weight decay
    included (`p <- p * (1 - lr * m * weight_decay)`). Scaling gradients would not do: Adam
    normalises them away.

    Args:
        learning_rate: float or `LearningRateSchedule`. Defaults to 3e-4.
        beta_1, beta_2: floats. Moment decay rates. Default to 0.9 and 0.95 (SPEC section 5).
        epsilon: float. Added to the bias-corrected `sqrt(v)`. Defaults to 1e-6.
        weight_decay: float. Decoupled weight decay. Defaults to 0.05.
        global_clipnorm: float or None. Clip the gradients' global norm. Defaults to 3.0.
        lr_multipliers: dict {variable path: multiplier} or None; missing paths use 1.
            Defaults to None (every variable at the learning rate).
        **kwargs: other `keras.optimizers.Optimizer` arguments (name, ...).
    """

    def __init__(
        self,
        learning_rate=3e-4,
        beta_1: float = 0.9,
        beta_2: float = 0.95,
        epsilon: float = 1e-6,
        weight_decay: float = 0.05,
        global_clipnorm: float | None = 3.0,
        lr_multipliers: dict[str, float] | None = None,
        name: str = "adamw",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            global_clipnorm=global_clipnorm,
            name=name,
            **kwargs,
        )
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.lr_multipliers = dict(lr_multipliers) if lr_multipliers else None
        self._clip_scale = None  # this step's clipping factor, between clipping and update

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        # By index: under TensorFlow, update_step sees the tf.Variable, which has no path.
        multipliers = self.lr_multipliers or {}
        self._scales = [float(multipliers.get(v.path, 1.0)) for v in var_list]

    def _apply_weight_decay(self, variables):
        if self.lr_multipliers is None:  # Keras applies it, at the learning rate
            return super()._apply_weight_decay(variables)
        # else in update_step, at each variable's own rate

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, dtype)
        if self.lr_multipliers is not None:
            lr = lr * self._scales[index]
            if self.weight_decay and self._use_weight_decay(variable):
                self.assign_sub(variable, variable * ops.cast(self.weight_decay, dtype) * lr)
        if self._clip_scale is not None:  # the clipping, applied here (see _clip_gradients)
            gradient = ops.multiply(gradient, ops.cast(self._clip_scale, gradient.dtype))
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign(
            v, ops.add(ops.multiply(v, self.beta_2), (1 - self.beta_2) * ops.square(gradient))
        )
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), self.epsilon)
        self.assign_sub(variable, ops.multiply(lr / bias_1, ops.divide(m, denominator)))

    def _clip_gradients(self, grads):
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        scale = clip_coefficient(global_norm(grads), self.global_clipnorm)
        if _one_replica():
            # No clipped copy of every gradient: `update_step` multiplies each gradient by the
            # factor as it uses it (the same product, so the same numbers), and an eager
            # backend (torch) or TensorFlow's graph executor never holds a second full set.
            self._clip_scale = scale
            return grads
        return [None if g is None else ops.multiply(g, ops.cast(scale, g.dtype)) for g in grads]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:  # the factor belongs to this step only
            self._clip_scale = None

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "lr_multipliers": self.lr_multipliers,
        }


def _one_replica() -> bool:
    """Whether the optimizer runs outside a `tf.distribute` strategy. Under one, `update_step`
    runs in the cross-replica context (merge_call), where a tensor of one replica's clipping
    must not be read: there the gradients are clipped first, as Keras does."""
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    return not tf.distribute.has_strategy()
