"""Schedules as functions of the training step (SPEC sections 4 and 5).

Everything but the learning rate is a plain function of the pretrainer's own `step` counter:
the EMA decays, the teacher temperature tau_t and the MATPAC++ temperature. The learning rate is
a `LearningRateSchedule`, evaluated by the optimizer at its own iteration count.
"""

import dataclasses
import math

import keras
from keras import ops


def linear_ramp(step, start: float, end: float, num_steps: int):
    """`start + (end - start) * min(step / num_steps, 1)`: temperature and EMA annealing."""
    progress = ops.minimum(ops.cast(step, "float32") / float(max(num_steps, 1)), 1.0)
    return start + (end - start) * progress


def exponential_decay(step, start: float, rate: float):
    """`start * rate**step`: the MATPAC++ soft-assignment temperature.

    Computed as `exp(step * log(rate))` with the log in float64: `rate` itself rounded to
    float32 (0.99997 -> 0.9999700189) would be off by 0.4% after the 230k steps it takes the
    official temperature to reach 1e-4.
    """
    return start * ops.exp(ops.cast(step, "float32") * math.log(rate))


@keras.saving.register_keras_serializable(package="matpac_keras")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak_learning_rate`, then cosine decay to `final_learning_rate`.

    `lr(s) = peak * s / warmup_steps` for `s < warmup_steps`, then
    `final + (peak - final) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2`, held at
    `final` after `total_steps` (fairseq's `cosine` scheduler with `warmup_init_lr = 0`, which
    the official run used: warm-up 19,654 of 294,816 updates).

    Args:
        peak_learning_rate: float. The learning rate at the end of the warm-up.
        warmup_steps: int. Optimizer steps of linear warm-up.
        total_steps: int. Optimizer steps of the whole run (warm-up included).
        final_learning_rate: float. The learning rate at `total_steps`. Defaults to 0.

    Example:
    >>> schedule = WarmupCosineDecay(3e-4, warmup_steps=19654, total_steps=294816)
    >>> optimizer = matpac_keras.optimizers.AdamW(learning_rate=schedule)
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        final_learning_rate: float = 0.0,
    ):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps < total_steps; got warmup_steps={warmup_steps}, "
                f"total_steps={total_steps}"
            )
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_learning_rate = final_learning_rate

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak, final = self.peak_learning_rate, self.final_learning_rate
        warmup = peak * step / float(max(self.warmup_steps, 1))
        progress = (step - self.warmup_steps) / float(self.total_steps - self.warmup_steps)
        progress = ops.clip(progress, 0.0, 1.0)
        cosine = final + (peak - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final_learning_rate": self.final_learning_rate,
        }


@dataclasses.dataclass(frozen=True)
class StepBudget:
    """A run's length in optimizer steps (what the schedules take)."""

    total_steps: int
    warmup_steps: int
    teacher_temperature_steps: int


def steps_for_epochs(num_examples: int, global_batch_size: int, epochs: float) -> int:
    """Optimizer steps in which `epochs` passes over `num_examples` are seen at this batch size.

    `floor(epochs * num_examples / global_batch_size)`: an epoch counts as a fractional number
    of batches, as the official run's figures do (SPEC section 5).
    """
    if num_examples < 1 or global_batch_size < 1 or epochs < 0:
        raise ValueError(
            f"need num_examples >= 1, global_batch_size >= 1 and epochs >= 0; got "
            f"num_examples={num_examples}, global_batch_size={global_batch_size}, epochs={epochs}"
        )
    if float(epochs).is_integer():
        return int(epochs) * num_examples // global_batch_size  # exact integer arithmetic
    return math.floor(epochs * num_examples / global_batch_size)


def step_budget(
    num_examples: int,
    global_batch_size: int,
    epochs: float = 300,
    warmup_epochs: float = 20,
    teacher_temperature_epochs: float = 10,
) -> StepBudget:
    """Converts the paper's epoch figures (300 epochs, 20 warm-up, 10 for tau_t) to steps."""
    return StepBudget(
        total_steps=steps_for_epochs(num_examples, global_batch_size, epochs),
        warmup_steps=steps_for_epochs(num_examples, global_batch_size, warmup_epochs),
        teacher_temperature_steps=steps_for_epochs(
            num_examples, global_batch_size, teacher_temperature_epochs
        ),
    )
