"""The sharded embedding layout (`embedding_shards`): manifest checks, atomic shards, index,
reading back. Pure NumPy and files: backend-independent."""

import csv
import json

import numpy as np
import pytest

from matpac_keras.embedding import ClipEmbeddings
from matpac_keras.embedding_shards import (
    EmbeddingShards,
    read_shards,
    shard_arrays,
    shard_name,
    shard_ranges,
)
from matpac_keras.outputs import OutputError

pytestmark = pytest.mark.single_backend

PATHS = [f"clips/{i}.wav" for i in range(5)]


def _clip(rng, steps: int, layers: bool = False) -> ClipEmbeddings:
    frames = rng.normal(size=(steps, 4)).astype("float32")
    layer_frames = rng.normal(size=(2, steps, 4)).astype("float32") if layers else None
    return ClipEmbeddings(
        frames.mean(0), frames, None if not layers else layer_frames.mean(1), layer_frames
    )


def test_shard_ranges_and_names():
    assert shard_ranges(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert shard_ranges(0, 3) == []
    assert shard_name(2, 13) == "shard-00002-of-00013.npz"
    with pytest.raises(ValueError, match="shard_size"):
        shard_ranges(4, 0)


def test_frames_stored_unpadded_with_offsets():
    rng = np.random.default_rng(0)
    clips = [_clip(rng, 3, layers=True), _clip(rng, 1, layers=True)]
    arrays = shard_arrays([(7, "b", clips[1]), (6, "a", clips[0])], [(8, "c", "unreadable")])
    assert list(arrays["files"]) == ["a", "b"] and list(arrays["input_index"]) == [6, 7]
    np.testing.assert_array_equal(arrays["frame_offsets"], [0, 3, 4])
    np.testing.assert_array_equal(arrays["frames"][3:], clips[1].frames)
    np.testing.assert_array_equal(arrays["layer_frames"][:, :3], clips[0].layer_frames)
    np.testing.assert_array_equal(arrays["layers"][1], clips[1].layers)
    assert list(arrays["skipped_index"]) == [8] and list(arrays["errors"]) == ["unreadable"]


def test_job_written_resumed_indexed_and_read_back(tmp_path):
    rng = np.random.default_rng(1)
    clips = [_clip(rng, steps) for steps in (3, 2, 4, 1, 2)]
    folder = tmp_path / "out"
    shards = EmbeddingShards.open(folder, PATHS, 2, {"model": "m"})
    assert json.loads((folder / "manifest.json").read_text())["num_inputs"] == 5
    shards.write(0, [(0, PATHS[0], clips[0]), (1, PATHS[1], clips[1])], [])
    with pytest.raises(ValueError, match="shard 1 holds inputs 2..3"):
        shards.write(1, [(3, PATHS[3], clips[3])], [])
    shards.write(1, [(3, PATHS[3], clips[3])], [(2, PATHS[2], "too short")])
    with pytest.raises(OutputError, match="1 of 3 shards are not written yet"):
        shards.write_index()
    resumed = EmbeddingShards.open(folder, PATHS, 2, {"model": "m"})
    assert resumed.pending() == [2]
    resumed.write(2, [(4, PATHS[4], clips[4])], [])
    with open(resumed.write_index(), newline="") as index:
        rows = list(csv.DictReader(index))
    assert [row["file"] for row in rows] == PATHS
    assert rows[2] == {"file": PATHS[2], "shard": "", "row": "", "error": "too short"}
    assert rows[3]["shard"] == "shard-00001-of-00003.npz" and rows[3]["row"] == "0"
    out = read_shards(folder)
    kept = [0, 1, 3, 4]
    np.testing.assert_array_equal(out["input_index"], kept)
    np.testing.assert_array_equal(out["embeddings"], np.stack([clips[i].embedding for i in kept]))
    for row, i in enumerate(kept):
        start, stop = out["frame_offsets"][row : row + 2]
        np.testing.assert_array_equal(out["frames"][start:stop], clips[i].frames)
    assert list(out["skipped"]) == [PATHS[2]]


def test_other_jobs_refused_unless_overwrite(tmp_path):
    folder = tmp_path / "out"
    EmbeddingShards.open(folder, PATHS, 2, {"model": "m", "mode": "precise"})
    with pytest.raises(OutputError, match=r"--output .*differs in mode \('precise' there"):
        EmbeddingShards.open(folder, PATHS, 2, {"model": "m", "mode": "fast"}, flag="--output")
    with pytest.raises(OutputError, match="the input list"):
        EmbeddingShards.open(folder, PATHS[::-1], 2, {"model": "m", "mode": "precise"})
    with pytest.raises(OutputError, match="shard_size"):
        EmbeddingShards.open(folder, PATHS, 3, {"model": "m", "mode": "precise"})
    (folder / "notes.txt").write_text("mine")
    again = EmbeddingShards.open(folder, PATHS, 3, {"model": "m"}, overwrite=True)
    assert again.count == 2 and (folder / "notes.txt").exists()
    assert json.loads((folder / "manifest.json").read_text())["shard_size"] == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_bytes(b"x")
    with pytest.raises(OutputError, match="holds no manifest.json"):
        EmbeddingShards.open(other, PATHS, 2, {})


def test_reading_an_unfinished_job_is_refused(tmp_path):
    EmbeddingShards.open(tmp_path / "out", PATHS, 2, {})
    with pytest.raises(OutputError, match="shard-00000-of-00003.npz is missing"):
        read_shards(tmp_path / "out")
    with pytest.raises(OutputError, match="no readable manifest.json"):
        read_shards(tmp_path / "nothing")
