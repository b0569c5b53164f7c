"""The MATPAC training step on the TensorFlow backend, including `tf.distribute` replicas.

With several replicas (MirroredStrategy, MultiWorkerMirroredStrategy), each replica draws its
rows of the global batch's mask noise, differentiates `loss / replicas`, and the gradients
are summed across replicas here, before clipping: Keras's TF optimizer would clip each
replica's partial gradient and only then sum (the wrong global norm). The optimizer, which
sums what it is given across replicas again, then gets each replica's 1/replicas share of the
clipped global gradient, so its sum restores it (exactly for power-of-two replica counts, to
a rounding error otherwise); its own clipping then sees a norm below the threshold.
"""

import keras
import tensorflow as tf

from matpac_keras.optimizers import clip_coefficient


def train_step(model, data) -> dict:
    optimizer = model.optimizer
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    with tf.GradientTape() as tape:
        outputs = model.training_outputs(data, context.replica_id_in_sync_group, replicas)
        loss = optimizer.scale_loss(outputs["loss"])
        if replicas > 1:
            loss = loss / replicas
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    if replicas > 1:
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    extras = model.pre_update(grads)
    if replicas > 1:
        grads = _replica_share(grads, optimizer, extras["grad_norm"], replicas)
    optimizer.apply(grads, variables)
    return _with_batch_axis_across_workers(model.post_update(outputs, **extras))


def _with_batch_axis_across_workers(logs: dict) -> dict:
    """Keras reduces the logs of a multi-worker run with `strategy.reduce(MEAN, v, axis=0)`,
    which fails on scalars: give them a length-1 axis there (the reduction removes it)."""
    strategy = tf.distribute.get_strategy()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multi_worker and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices):
        return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def _replica_share(grads, optimizer, grad_norm, replicas: int) -> list:
    """Clips the summed gradients at the optimizer's global norm, then divides by `replicas`."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if inner.clipnorm or inner.clipvalue:
        raise ValueError(
            "with several replicas only `global_clipnorm` clipping is supported; got "
            f"clipnorm={inner.clipnorm}, clipvalue={inner.clipvalue}"
        )
    scale = 1.0 / replicas
    if inner.global_clipnorm:
        scale = clip_coefficient(grad_norm, inner.global_clipnorm) * scale
    return [g * keras.ops.cast(scale, g.dtype) for g in grads]
