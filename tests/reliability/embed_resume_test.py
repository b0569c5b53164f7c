"""A resumed sharded `matpac-embed` (issue 25, items 1 and 2): refused when the model file
changed, and byte for byte the folder an uninterrupted run writes.

Subprocesses, as a user runs the command, with a tiny model and a few short clips of many
lengths (so the encoder sees batches of many shapes). The resume test runs on every backend.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.cli.run_cli import run_cli, save_tiny_backbone

RATE = 16000


def _clips(folder, count=12, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        samples = int(rng.uniform(0.2, 2.5) * RATE)
        noise = rng.standard_normal(samples) * 3000
        sf.write(folder / f"{i:02d}.wav", noise.astype(np.int16), RATE, subtype="PCM_16")
    return folder


def _args(model, output, clips):
    return [f"--model={model}", f"--output={output}/", "--shard_size=2", "--batch_size=2", clips]


def _same_folders(a, b):
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for path in sorted(a.iterdir()):
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name


@pytest.mark.single_backend
def test_resume_with_another_model_at_the_same_path_is_refused(tmp_path):
    model = save_tiny_backbone(tmp_path / "tiny.keras", 3, max_frames=64)
    clips = str(_clips(tmp_path / "clips", count=4))
    output = tmp_path / "out"
    run_cli("embed", *_args(model, output, clips))
    # What a run killed after its first shard leaves: shard 0 and the manifest.
    for path in output.iterdir():
        if path.name not in ("manifest.json", "shard-00000-of-00002.npz"):
            path.unlink()
    save_tiny_backbone(model, 4, max_frames=64)  # same path, same config, other weights
    refused = run_cli("embed", *_args(model, output, clips), ok=False)
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: --output {output}: holds another job's shards"), lines
    assert "the model's weights (fingerprint of its config and weights) (" in lines[-1]
    assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in output.iterdir()) == [
        "manifest.json",
        "shard-00000-of-00002.npz",
    ]


def test_run_killed_at_a_random_shard_resumes_to_the_same_bytes(tmp_path):
    model = save_tiny_backbone(tmp_path / "tiny.keras", 3, max_frames=64)
    clips = str(_clips(tmp_path / "clips"))
    whole = tmp_path / "whole"
    run_cli("embed", *_args(model, whole, clips))
    shards = len(list(whole.glob("shard-*.npz")))
    assert shards == 6
    kill_after = random.Random().randrange(1, shards)  # shards done before the kill
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "matpac_keras.cli.embed", *_args(model, output, clips)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(list(output.glob("shard-*.npz"))) < kill_after and process.poll() is None:
        assert time.monotonic() < deadline, "no shard written in 300 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(output.glob("shard-*.npz"))
    if len(done) == shards:  # finished before the kill: leave what a kill there leaves
        (output / "index.csv").unlink(missing_ok=True)
        for path in done[kill_after:]:
            path.unlink()
    done = len(list(output.glob("shard-*.npz")))
    assert not (output / "index.csv").exists()
    resumed = run_cli("embed", *_args(model, output, clips))
    assert f"resuming: {done} of {shards} shards already done" in resumed.stdout
    _same_folders(whole, output)  # every shard, the manifest and the index, byte for byte
    shutil.rmtree(output)
