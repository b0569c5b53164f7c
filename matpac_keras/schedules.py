"""Schedules as functions of the optimizer step (SPEC sections 4 and 5)."""

from keras import ops


def linear_ramp(step, start: float, end: float, num_steps: int):
    """`start + (end - start) * min(step / num_steps, 1)`: the annealing of temperatures and EMAs."""
    progress = ops.minimum(ops.cast(step, "float32") / float(max(num_steps, 1)), 1.0)
    return start + (end - start) * progress
