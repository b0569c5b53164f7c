"""Schedules (SPEC sections 4 and 5): learning rate, annealing ramps, epochs -> steps."""

import math

import keras
import numpy as np
import pytest

from matpac_keras.optimizers import AdamW
from matpac_keras.schedules import (
    StepBudget,
    WarmupCosineDecay,
    exponential_decay,
    linear_ramp,
    step_budget,
    steps_for_epochs,
)


def _value(x) -> float:
    return float(keras.ops.convert_to_numpy(x))


def _reference_lr(step, peak, warmup, total, final):
    if step < warmup:
        return peak * step / warmup
    progress = min((step - warmup) / (total - warmup), 1.0)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("final", [0.0, 1e-6])
def test_warmup_cosine_decay_values(final):
    schedule = WarmupCosineDecay(
        3e-4, warmup_steps=100, total_steps=1000, final_learning_rate=final
    )
    for step in (0, 1, 50, 99, 100, 101, 550, 999, 1000, 5000):
        expected = _reference_lr(step, 3e-4, 100, 1000, final)
        assert _value(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-10), step
    assert _value(schedule(0)) == 0.0
    assert _value(schedule(100)) == pytest.approx(3e-4, rel=1e-6)  # the peak
    assert _value(schedule(1000)) == pytest.approx(final, abs=1e-12)


def test_warmup_cosine_decay_serialises_and_drives_the_optimizer():
    schedule = WarmupCosineDecay(1e-3, warmup_steps=4, total_steps=10)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupCosineDecay)
    assert restored.get_config() == schedule.get_config()
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer = AdamW(learning_rate=restored)
    for step in range(6):
        expected = _reference_lr(step, 1e-3, 4, 10, 0.0)
        assert _value(optimizer.learning_rate) == pytest.approx(expected, rel=1e-5, abs=1e-12)
        optimizer.apply([np.full(3, 0.1, "float32")], [variable])


def test_warmup_cosine_decay_rejects_bad_lengths():
    with pytest.raises(ValueError, match="warmup_steps=10, total_steps=10"):
        WarmupCosineDecay(1e-3, warmup_steps=10, total_steps=10)


def test_linear_ramp_and_exponential_decay():
    # The fixture run at step 5 of 10: tau_t 0.055, encoder EMA 0.945, head EMA 0.9.
    assert _value(linear_ramp(5, 0.04, 0.07, 10)) == pytest.approx(0.055, rel=1e-6)
    assert _value(linear_ramp(5, 0.9, 0.99, 10)) == pytest.approx(0.945, rel=1e-6)
    assert _value(linear_ramp(5, 0.8, 1.0, 10)) == pytest.approx(0.9, rel=1e-6)
    assert _value(linear_ramp(0, 0.04, 0.07, 10)) == pytest.approx(0.04, rel=1e-6)
    assert _value(linear_ramp(25, 0.04, 0.07, 10)) == pytest.approx(0.07, rel=1e-6)  # held
    for step in (0, 1, 1000, 230_000, 294_816):  # float64 reference; float32 pow is 0.4% off
        assert _value(exponential_decay(step, 0.1, 0.99997)) == pytest.approx(
            0.1 * 0.99997**step, rel=2e-6
        )


def test_paper_step_budget():
    # The official config (matpac.yaml): max_update 294,816, warmup_updates 19,654, tau_t over
    # 9,827 steps: 300, 20 and 10 epochs of 2,012,615 clips at a global batch of 2048.
    assert step_budget(2_012_615, 2048) == StepBudget(
        total_steps=294_816, warmup_steps=19_654, teacher_temperature_steps=9_827
    )
    # SPEC section 5 quotes 2,012,215 clips; 300 epochs of those are 294,758.06 batches.
    assert steps_for_epochs(2_012_215, 2048, 300) == 294_758
    assert steps_for_epochs(1000, 64, 1.5) == 23  # floor(1500 / 64)


def test_steps_for_epochs_rejects_bad_input():
    with pytest.raises(ValueError, match="global_batch_size=0"):
        steps_for_epochs(100, 0, 1)


@pytest.mark.parametrize("warmup", [0, 3])
def test_warmup_cosine_decay_equals_keras_cosine_decay_with_warmup(warmup):
    """Fine-tuning used Keras's `CosineDecay` with a warm-up; the one schedule gives its values."""
    total, peak = 12, 2e-3
    if warmup:
        keras_schedule = keras.optimizers.schedules.CosineDecay(
            0.0, total - warmup, warmup_target=peak, warmup_steps=warmup
        )
    else:
        keras_schedule = keras.optimizers.schedules.CosineDecay(peak, total)
    schedule = WarmupCosineDecay(peak, warmup_steps=warmup, total_steps=total)
    for step in range(total + 3):
        assert _value(schedule(step)) == pytest.approx(
            _value(keras_schedule(step)), rel=1e-5, abs=1e-10
        ), step


def test_finetuning_schedule_clamps_to_a_valid_run():
    from matpac_keras.evaluation.finetune import warmup_cosine

    schedule = warmup_cosine(1e-3, total=5, warmup=10)  # warm-up longer than the run
    assert (schedule.warmup_steps, schedule.total_steps) == (4, 5)
    assert warmup_cosine(1e-3, total=0, warmup=0).get_config()["total_steps"] == 1
