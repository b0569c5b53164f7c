"""JAX data parallelism (`keras.distribution.DataParallel`) on two host CPU devices: one step
on a global batch equals the single-device step.

The CPU is split into two devices when this module is imported, before JAX computes anything
(pytest imports every test module before running any test).
"""

import keras
import pytest

from matpac_keras.distribute import split_host_cpu, training_scope
from tests.pretrainer_tiny import (
    EQUIVALENCE_OPTIMIZERS,
    assert_same_step,
    equivalence_optimizer,
    numpy_values,
    tiny_batch,
    tiny_pretrainer,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution data parallelism: JAX backend"
)

if keras.backend.backend() == "jax":
    try:
        split_host_cpu(2)
    except RuntimeError:
        pass  # JAX already started in this process: the test below says so


def _two_devices() -> list[str]:
    devices = keras.distribution.list_devices("cpu")
    if len(devices) < 2:
        pytest.fail(
            "JAX computed something before this module could split the CPU in two "
            f"(devices: {devices}); run this module in its own process"
        )
    return devices[:2]


@pytest.mark.parametrize("optimizer", EQUIVALENCE_OPTIMIZERS)
def test_data_parallel_step_equals_single_device(optimizer):
    devices = _two_devices()
    batch = tiny_batch(batch_size=4, seed=11)
    single = tiny_pretrainer(seed=3)
    single.step.assign(5)  # past step 0, so that the teacher EMA runs
    start = numpy_values(single.weights)
    single.compile(optimizer=equivalence_optimizer(optimizer))
    single_logs = single.train_on_batch(batch, return_dict=True)

    with training_scope("data_parallel", devices=devices):
        parallel = tiny_pretrainer(seed=3)  # the same mask seed: the same global-batch masks
        parallel.set_weights(start)
        parallel.compile(optimizer=equivalence_optimizer(optimizer))
        parallel_logs = parallel.train_on_batch(batch, return_dict=True)
        sharding = parallel.backbone.cls_token.value.sharding
        assert len(sharding.device_set) == 2  # replicated on both devices

    assert_same_step(parallel, single, parallel_logs, single_logs)
    assert parallel_logs["teacher_perplexity"] == pytest.approx(
        single_logs["teacher_perplexity"], rel=1e-5
    )
    assert int(keras.ops.convert_to_numpy(parallel.step)) == 6
