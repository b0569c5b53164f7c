"""`tf.distribute` training (TensorFlow backend): MirroredStrategy on two logical CPUs equals the
single-device step; MultiWorkerMirroredStrategy with two local worker processes stays in sync.

The CPU is split into two logical devices when this module is imported, before TensorFlow runs
anything (pytest imports every test module before running any test). Run as a script, this
module is one multi-worker training process (see `_worker`).
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from matpac_keras.distribute import split_host_cpu, training_scope
from matpac_keras.optimizers import AdamW
from tests.pretrainer_tiny import (
    EQUIVALENCE_OPTIMIZERS,
    assert_same_step,
    equivalence_optimizer,
    numpy_values,
    tiny_batch,
    tiny_pretrainer,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute: TensorFlow backend"
)
REPO = pathlib.Path(__file__).resolve().parents[1]

if keras.backend.backend() == "tensorflow" and __name__ != "__main__":
    try:
        split_host_cpu(2)
    except RuntimeError:
        pass  # TensorFlow already started in this process: the test below says so


def _two_cpus() -> list[str]:
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.fail(
            "TensorFlow ran before this module could split the CPU in two "
            f"(devices: {devices}); run this module in its own process"
        )
    return devices[:2]


def _one_step(model, batch) -> dict:
    """One step on the whole batch through `fit`, which splits it across replicas (Keras's TF
    `train_on_batch` would give every replica the whole batch)."""
    history = model.fit(batch, batch_size=len(batch), epochs=1, shuffle=False, verbose=0)
    return {key: values[0] for key, values in history.history.items()}


@pytest.mark.parametrize("optimizer", EQUIVALENCE_OPTIMIZERS)
def test_mirrored_step_equals_single_device(optimizer):
    devices = _two_cpus()
    batch = tiny_batch(batch_size=4, seed=11)
    single = tiny_pretrainer(seed=3)
    single.step.assign(5)  # past step 0, so that the teacher EMA runs
    start = numpy_values(single.weights)
    single.compile(optimizer=equivalence_optimizer(optimizer))
    single_logs = _one_step(single, batch)

    with training_scope("mirrored", devices=devices) as strategy:
        assert strategy.num_replicas_in_sync == 2
        mirrored = tiny_pretrainer(seed=3)  # the same mask seed: the same global-batch masks
        mirrored.set_weights(start)
        mirrored.compile(optimizer=equivalence_optimizer(optimizer))
    mirrored_logs = _one_step(mirrored, batch)

    # (The collapse monitors are per-replica values averaged over the replicas.)
    assert_same_step(mirrored, single, mirrored_logs, single_logs)
    assert int(keras.ops.convert_to_numpy(mirrored.step)) == 6


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_keeps_workers_identical(tmp_path):
    ports = _free_ports(2)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.distribute_tf_test", "--index", str(i)]
            + ["--ports", *map(str, ports), "--out", str(tmp_path / f"worker{i}.npz")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, output in zip(workers, outputs, strict=True):
        assert w.returncode == 0, output[-3000:]
    results = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    assert int(results[0]["step"]) == int(results[1]["step"]) == 3
    assert results[0]["names"].tolist() == results[1]["names"].tolist()
    for i in range(len(results[0]["names"])):
        np.testing.assert_array_equal(results[0][f"w{i}"], results[1][f"w{i}"])
    assert not np.array_equal(results[0]["w0"], results[0]["initial0"])  # it trained


def _worker(index: int, ports: list[int], out: str) -> None:
    """One worker of a 2-process MultiWorkerMirroredStrategy run: 3 steps of global batch 4."""
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}
    )
    import tensorflow as tf

    with training_scope("multi_worker"):  # created before any other TensorFlow op
        model = tiny_pretrainer(seed=3)
        model.step.assign(5)
        model.compile(optimizer=AdamW(learning_rate=1e-3))
    initial = numpy_values(model.weights)
    data = tf.data.Dataset.from_tensor_slices(tiny_batch(batch_size=12, seed=index)).batch(4)
    model.fit(data, epochs=1, verbose=0)
    weights = numpy_values(model.weights)
    np.savez(
        out,
        step=int(keras.ops.convert_to_numpy(model.step)) - 5,
        names=np.array([v.path for v in model.weights]),
        **{f"w{i}": w for i, w in enumerate(weights)},
        **{f"initial{i}": w for i, w in enumerate(initial)},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ports", type=int, nargs=2, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    _worker(args.index, args.ports, args.out)
