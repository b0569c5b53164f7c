"""Backend-agnostic maths of a training step: teacher EMA and collapse monitors (SPEC 4)."""

from keras import ops

from matpac_keras.layers import l2_normalize


def teacher_ema_updates(student_values, teacher_values, decay) -> list:
    """New teacher values `decay * teacher + (1 - decay) * student`, tensor by tensor."""
    if len(student_values) != len(teacher_values):
        raise ValueError(
            f"{len(student_values)} student tensors for {len(teacher_values)} teacher tensors"
        )
    return [
        decay * ops.convert_to_tensor(teacher)
        + (1.0 - decay) * ops.cast(student, ops.convert_to_tensor(teacher).dtype)
        for student, teacher in zip(student_values, teacher_values, strict=True)
    ]


def _channel_std(z):
    """Mean over channels of the std over all tokens of the l2-normalised z [B, M, D], as the
    official `compute_var`: `sqrt(unbiased variance + 1e-6)`."""
    z = ops.reshape(l2_normalize(ops.cast(z, "float32")), (-1, ops.shape(z)[-1]))
    count = ops.cast(ops.shape(z)[0], "float32")
    variance = ops.var(z, axis=0) * count / (count - 1.0)
    return ops.mean(ops.sqrt(variance + 1e-6))


def collapse_monitors(z_hat_m, z_m, student_logits, teacher_probs) -> dict:
    """What a collapsing run shows first (SPEC section 4), as float32 scalars.

    z_hat_m_std, z_m_std: std of the normalised predictions / targets per channel, averaged.
    teacher_perplexity: exp(entropy) of the mean teacher distribution (K when uniform use).
    teacher_classes: distinct teacher argmax classes in the batch.
    argmax_agreement: share of tokens where the student's and teacher's argmax agree.
    """
    num_classes = ops.shape(teacher_probs)[-1]
    mean_probs = ops.mean(ops.reshape(teacher_probs, (-1, num_classes)), axis=0)
    safe = ops.where(mean_probs > 0, mean_probs, 1.0)
    entropy = -ops.sum(mean_probs * ops.log(safe))
    teacher_argmax = ops.reshape(ops.argmax(teacher_probs, axis=-1), (-1,))
    student_argmax = ops.reshape(ops.argmax(student_logits, axis=-1), (-1,))
    used = ops.max(ops.one_hot(teacher_argmax, num_classes, dtype="float32"), axis=0)
    agree = ops.cast(ops.equal(teacher_argmax, student_argmax), "float32")
    return {
        "z_hat_m_std": _channel_std(z_hat_m),
        "z_m_std": _channel_std(z_m),
        "teacher_perplexity": ops.exp(entropy),
        "teacher_classes": ops.sum(used),
        "argmax_agreement": ops.mean(agree),
    }
