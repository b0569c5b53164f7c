"""Multi-device training set-up: `tf.distribute` strategies (TensorFlow backend) and
`keras.distribution.DataParallel` (JAX backend).

Build, compile and fit the pretrainer inside `training_scope(kind)`. The training step itself
handles replicas (see `matpac_keras/train_steps/tensorflow_step.py`); under JAX the step is one
global SPMD computation, so batch means, the gradient norm and the centre are global as is.
TensorFlow is imported only by the TensorFlow kinds.
"""

import contextlib
import os

import keras

KINDS = ("single", "mirrored", "multi_worker", "data_parallel")
_BACKEND_OF_KIND = {"mirrored": "tensorflow", "multi_worker": "tensorflow", "data_parallel": "jax"}


def split_host_cpu(num_devices: int) -> None:
    """Exposes the host CPU as `num_devices` devices (trial runs and tests without GPUs).

    Must run before the backend starts: on TensorFlow before any op, on JAX before any
    computation (it raises otherwise).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    elif backend == "jax":
        import jax

        jax.config.update("jax_num_cpu_devices", num_devices)
    else:
        raise NotImplementedError(f"no multi-device CPU set-up for the {backend} backend")


def local_devices(device_type: str | None = None) -> list:
    """The devices training would use here: GPUs if any, else CPUs (backend device names)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for kind in [device_type] if device_type else ["GPU", "CPU"]:
            devices = tf.config.list_logical_devices(kind.upper())
            if devices:
                return [d.name for d in devices]
        return []
    if keras.backend.backend() == "torch":  # Keras has no distribution API there
        import torch

        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if device_type is None:
            return gpus or ["cpu:0"]
        return {"GPU": gpus, "CPU": ["cpu:0"]}.get(device_type.upper(), [])
    try:
        return keras.distribution.list_devices(device_type)
    except RuntimeError:  # JAX: no platform of that type here
        return []


def default_dtype_policy() -> str:
    """The dtype policy `model.dtype="auto"` means here: "mixed_bfloat16" where training runs
    on GPUs or TPUs (bf16 needs no loss scaling, and tensor cores run it at full rate),
    "float32" on CPUs (which gain little from it, and XLA:CPU has no float16 dot product)."""
    accelerated = any(local_devices(kind) for kind in ("GPU", "TPU"))
    return "mixed_bfloat16" if accelerated else "float32"


@contextlib.contextmanager
def training_scope(kind: str = "single", devices: list | None = None):
    """Context to build, compile and fit the model in, for one kind of parallelism.

    kind: "single" (one device, any backend); "mirrored" (TensorFlow: MirroredStrategy over
        `devices`, default all local GPUs or CPUs); "multi_worker" (TensorFlow:
        MultiWorkerMirroredStrategy, configured by the TF_CONFIG environment variable, created
        before any other TensorFlow op); "data_parallel" (JAX: DataParallel over `devices`,
        default all devices of all processes; with KERAS_DISTRIBUTION_JOB_ADDRESSES,
        KERAS_DISTRIBUTION_NUM_PROCESSES > 1 and KERAS_DISTRIBUTION_PROCESS_ID set, it first
        joins those hosts with `keras.distribution.initialize()`, before JAX computes anything;
        each process then feeds its own 1/num_processes of the global batch).
    Yields the strategy / distribution (None for "single"). The global batch is split evenly
    over the replicas: make it a multiple of their number.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    needed = _BACKEND_OF_KIND.get(kind)
    if needed and keras.backend.backend() != needed:
        raise ValueError(
            f"kind={kind!r} needs KERAS_BACKEND={needed}; the backend is "
            f"{keras.backend.backend()!r}"
        )
    if kind == "single":
        yield None
    elif kind == "data_parallel":
        if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
            keras.distribution.initialize()  # join the hosts named by KERAS_DISTRIBUTION_*
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield distribution
    else:
        import tensorflow as tf

        if kind == "mirrored":
            strategy = tf.distribute.MirroredStrategy(devices or local_devices())
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            yield strategy
