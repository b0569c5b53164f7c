"""MATPAC's losses: latent prediction, centred classification and multiple-choice learning."""

from keras import ops

from matpac_keras.layers import l2_normalize


def prediction_loss(predicted, target):
    """Per token `2 - 2 * <l2n(predicted), l2n(target)>` over the last axis."""
    return 2.0 - 2.0 * ops.sum(l2_normalize(predicted) * l2_normalize(target), axis=-1)


def teacher_probabilities(teacher_logits, center, temperature):
    """Centred, sharpened teacher distribution `softmax((logits - C) / tau_t)`."""
    return ops.softmax((teacher_logits - center) / temperature, axis=-1)


def classification_loss(student_logits, teacher_probs, student_temperature: float):
    """Per token cross-entropy `-sum P_teacher * log_softmax(logits / tau_s)`."""
    log_probs = ops.log_softmax(student_logits / student_temperature, axis=-1)
    return -ops.sum(teacher_probs * log_probs, axis=-1)


def multiple_choice_loss(per_head_losses, temperature):
    """MATPAC++ loss over prediction heads [..., heads] -> [...] (SPEC section 4).

    While `temperature` > 1e-4: `sum softmax(-loss / T) * loss`, the soft assignment held
    constant (no gradient through it); afterwards the winner-takes-all `min` over heads, whose
    gradient reaches the argmin head only, even on ties (as `torch.min(dim)` in the official
    code; `ops.min` would split it between tied heads).
    """
    weights = ops.stop_gradient(ops.softmax(-per_head_losses / ops.maximum(temperature, 1e-4)))
    soft = ops.sum(weights * per_head_losses, axis=-1)
    best = ops.expand_dims(ops.argmin(per_head_losses, axis=-1), -1)
    hard = ops.take_along_axis(per_head_losses, best, axis=-1)[..., 0]
    return ops.where(temperature > 1e-4, soft, hard)


def center_update(center, teacher_output, momentum: float):
    """The next centre `momentum * C + (1 - momentum) * mean(teacher_output)` [1, 1, K].

    The mean runs over batch and tokens ([B, M, K] -> [1, 1, K]); `teacher_output` is the
    teacher's probabilities (the official code) or its logits (the paper, DINO).
    """
    batch_center = ops.mean(ops.cast(teacher_output, "float32"), axis=(0, 1), keepdims=True)
    return ops.add(ops.multiply(momentum, center), ops.multiply(1.0 - momentum, batch_center))
