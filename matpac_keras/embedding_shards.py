"""Sharded clip embeddings: a folder of `.npz` shards and an index, written one shard at a time.

`matpac-embed --output DIR/` and the Beam pipeline (`matpac_keras.beam`) write this layout, so a
job of millions of files holds one shard in memory, and a killed job started again skips the
shards it finished and ends with the same folder as an uninterrupted run:

    DIR/manifest.json              written first: the format, `shard_size`, the number of inputs,
                                   the SHA-256 of their list, and the options that computed
                                   the embeddings (model path and weights fingerprint, runtime,
                                   precision, mode, window...). A restart with other inputs or
                                   options (e.g. another model file at the same path) is
                                   refused, naming what differs.
    DIR/shard-00000-of-00003.npz   inputs [k N, (k + 1) N) of the list (N = shard_size), the
                                   embedded ones in input order:
                                     files [n], input_index [n] (position in the input list),
                                     embeddings [n, E] float32;
                                     with frames: frames [T, F*D], every clip's time steps one
                                       after the other (not padded), and frame_offsets [n + 1]:
                                       clip i is frames[frame_offsets[i]:frame_offsets[i + 1]];
                                     with layers: layers [n, L, E] (and layer_frames [L, T, F*D]);
                                     skipped [m], skipped_index [m] and errors [m]: the inputs
                                       left out, and why.
    DIR/index.csv                  written last, once every shard exists: one row per input,
                                   `file,shard,row,error` (row and shard empty for a skipped one).

Every file is written atomically (`outputs.atomic_output`): a shard is there complete or not at
all, so "done" is "its file exists". Shard k's content depends only on its inputs and the
options, so shards computed by different processes (or Beam workers) are interchangeable.

    shards = EmbeddingShards.open("out/", paths, shard_size=1000, options={"model": ...})
    for k in shards.pending():
        shards.write(k, entries, skipped)  # entries: (input index, path, ClipEmbeddings)
    shards.write_index()
    arrays = read_shards("out/")           # everything, concatenated in input order
"""

import csv
import hashlib
import io
import json
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from matpac_keras.outputs import (
    OutputError,
    atomic_output,
    check_output,
    remove_stale_temporaries,
)

FORMAT = "matpac-embeddings/1"
MANIFEST = "manifest.json"
INDEX = "index.csv"
INDEX_COLUMNS = ("file", "shard", "row", "error")


def shard_name(k: int, count: int) -> str:
    """The file name of shard `k` of `count`: shard-00000-of-00003.npz."""
    return f"shard-{k:05d}-of-{count:05d}.npz"


def shard_ranges(num_inputs: int, shard_size: int) -> list[range]:
    """The input indices of each shard: consecutive runs of `shard_size` (the last may be
    shorter); one empty shard for no inputs is not made (an empty list)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive; got {shard_size}")
    count = math.ceil(num_inputs / shard_size)
    return [range(k * shard_size, min(num_inputs, (k + 1) * shard_size)) for k in range(count)]


def inputs_digest(paths: Sequence[str]) -> str:
    """SHA-256 of the input list (order matters: it decides the shards)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path) + b"\0")
    return digest.hexdigest()


def manifest_for(paths: Sequence[str], shard_size: int, options: dict) -> dict:
    """The manifest of a job over `paths` (JSON-serialisable `options`)."""
    shard_ranges(len(paths), shard_size)  # validates shard_size
    return {
        "format": FORMAT,
        "shard_size": int(shard_size),
        "num_inputs": len(paths),
        "inputs_sha256": inputs_digest(paths),
        "options": json.loads(json.dumps(options)),
    }


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two manifests, named for the error message."""
    names = {
        "num_inputs": "the number of inputs",
        "inputs_sha256": "the input list",
        "model_weights": "the model's weights (fingerprint of its config and weights)",
        "encoder": "the runtime",
    }
    found = []
    for key in ("format", "shard_size", "num_inputs", "inputs_sha256"):
        if old.get(key) != new.get(key):
            found.append(f"{names.get(key, key)} ({old.get(key)!r} there, {new.get(key)!r} now)")
    old_options, new_options = old.get("options", {}), new.get("options", {})
    for key in sorted(set(old_options) | set(new_options)):
        if old_options.get(key) != new_options.get(key):
            found.append(
                f"{names.get(key, key)} ({old_options.get(key)!r} there, "
                f"{new_options.get(key)!r} now)"
            )
    return found


def _ours(name: str) -> bool:
    return name in (MANIFEST, INDEX) or (name.startswith("shard-") and name.endswith(".npz"))


def shard_arrays(entries: Sequence[tuple], skipped: Sequence[tuple[int, str, str]]) -> dict:
    """The arrays of one shard.

    Args:
        entries: (input index, path, ClipEmbeddings) of the embedded inputs (any order: they
            are stored in input order). ClipEmbeddings carry per-clip arrays (no batch axis);
            frames and layers are stored when the first entry has them.
        skipped: (input index, path, why) of the inputs left out.
    """
    entries = sorted(entries, key=lambda entry: entry[0])
    skipped = sorted(skipped, key=lambda entry: entry[0])
    out = {
        "files": np.array([path for _, path, _ in entries], dtype=str),
        "input_index": np.array([index for index, _, _ in entries], dtype=np.int64),
        "skipped": np.array([path for _, path, _ in skipped], dtype=str),
        "skipped_index": np.array([index for index, _, _ in skipped], dtype=np.int64),
        "errors": np.array([why for _, _, why in skipped], dtype=str),
    }
    clips = [clip for _, _, clip in entries]
    if not clips:
        out["embeddings"] = np.zeros((0, 0), np.float32)
        return out
    out["embeddings"] = np.stack([clip.embedding for clip in clips]).astype(np.float32)
    if clips[0].layers is not None:
        out["layers"] = np.stack([clip.layers for clip in clips]).astype(np.float32)
    if clips[0].frames is not None:
        lengths = [len(clip.frames) for clip in clips]
        out["frames"] = np.concatenate([clip.frames for clip in clips]).astype(np.float32)
        out["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if clips[0].layer_frames is not None:
            out["layer_frames"] = np.concatenate(
                [clip.layer_frames for clip in clips], axis=1
            ).astype(np.float32)
    return out


class EmbeddingShards:
    """A sharded output folder: its manifest, which shards are done, writing them, the index.

    Use `EmbeddingShards.open` (it writes or checks the manifest).
    """

    def __init__(self, folder: str | os.PathLike, manifest: dict):
        self.folder = pathlib.Path(folder)
        self.manifest = manifest
        self.ranges = shard_ranges(manifest["num_inputs"], manifest["shard_size"])

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        paths: Sequence[str],
        shard_size: int,
        options: dict,
        overwrite: bool = False,
        flag: str | None = None,
    ) -> "EmbeddingShards":
        """Starts a sharded job in `folder`, or resumes the one there.

        A missing or empty folder gets the manifest. A folder with the same manifest (same
        inputs, shard size and options) is resumed: its finished shards count as done. Another
        manifest, or a non-empty folder without one, raises OutputError naming the folder (and
        `flag`) and what differs, unless `overwrite`, which deletes the shards, index and
        manifest there (and nothing else) and starts again.
        """
        manifest = manifest_for(paths, shard_size, options)
        prefix = f"{flag} " if flag else ""
        folder = check_output(folder, overwrite=True, folder=True, flag=flag)
        existing = folder / MANIFEST
        if folder.is_dir() and not overwrite:
            if existing.is_file():
                try:
                    old = json.loads(existing.read_text())
                except (OSError, ValueError) as error:
                    raise OutputError(f"{prefix}{existing}: unreadable manifest: {error}") from None
                differences = _differences(old, manifest)
                if differences:
                    raise OutputError(
                        f"{prefix}{folder}: holds another job's shards (differs in "
                        + "; ".join(differences)
                        + "); pass --overwrite to replace them, or write elsewhere"
                    )
                shards = cls(folder, manifest)
                shards._remove_stale()
                return shards
            if any(folder.iterdir()):
                raise OutputError(
                    f"{prefix}{folder}: is not empty and holds no {MANIFEST}; give a new or "
                    "empty folder (or --overwrite)"
                )
        if folder.is_dir() and overwrite:
            for entry in folder.iterdir():
                if _ours(entry.name) and entry.is_file():
                    entry.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        shards = cls(folder, manifest)
        shards._remove_stale()
        with atomic_output(existing, overwrite=True) as temporary:
            temporary.write_text(json.dumps(manifest, indent=1) + "\n")
        return shards

    @property
    def count(self) -> int:
        """The number of shards."""
        return len(self.ranges)

    def path(self, k: int) -> pathlib.Path:
        """Shard `k`'s file."""
        return self.folder / shard_name(k, self.count)

    def done(self, k: int) -> bool:
        """Whether shard `k` was written (files are renamed in only when complete)."""
        return self.path(k).is_file()

    def pending(self) -> list[int]:
        """The shards not written yet, in order."""
        return [k for k in range(self.count) if not self.done(k)]

    def write(self, k: int, entries: Sequence[tuple], skipped: Sequence[tuple]) -> pathlib.Path:
        """Writes shard `k` atomically (see `shard_arrays` for `entries` and `skipped`).

        Raises ValueError if they are not exactly the inputs of shard `k`.
        """
        given = sorted([e[0] for e in entries] + [s[0] for s in skipped])
        if given != list(self.ranges[k]):
            raise ValueError(
                f"shard {k} holds inputs {self.ranges[k].start}..{self.ranges[k].stop - 1}; "
                f"got {len(given)} entries that are not exactly those"
            )
        arrays = shard_arrays(entries, skipped)
        with atomic_output(self.path(k), overwrite=True) as temporary:
            np.savez(temporary, **arrays)
        return self.path(k)

    def write_index(self) -> pathlib.Path:
        """Writes index.csv (one row per input: file, shard, row, error) from the shards.

        Raises OutputError if a shard is missing.
        """
        missing = self.pending()
        if missing:
            raise OutputError(
                f"{self.folder}: {len(missing)} of {self.count} shards are not written yet "
                f"(first: {shard_name(missing[0], self.count)}); run the job again to finish"
            )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for k in range(self.count):
            with np.load(self.path(k)) as shard:
                rows = {
                    int(i): [str(f), self.path(k).name, str(r), ""]
                    for r, (i, f) in enumerate(
                        zip(shard["input_index"], shard["files"], strict=True)
                    )
                }
                for i, f, why in zip(
                    shard["skipped_index"], shard["skipped"], shard["errors"], strict=True
                ):
                    rows[int(i)] = [str(f), "", "", str(why)]
            writer.writerows(rows[i] for i in sorted(rows))
        target = self.folder / INDEX
        with atomic_output(target, overwrite=True) as temporary:
            temporary.write_text(buffer.getvalue())
        return target

    def _remove_stale(self) -> None:
        """Deletes the temporaries a killed run left (one writer per folder is assumed)."""
        for name in [MANIFEST, INDEX] + [shard_name(k, self.count) for k in range(self.count)]:
            remove_stale_temporaries(self.folder, name)


def read_shards(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """A sharded output's arrays, concatenated over its shards in input order.

    Returns files, input_index, embeddings, skipped, errors, and as written layers, frames with
    frame_offsets (into the concatenated frames), layer_frames. Raises OutputError if the
    folder has no manifest or misses a shard.
    """
    folder = pathlib.Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise OutputError(f"{folder}: no readable {MANIFEST}: {error}") from None
    shards = EmbeddingShards(folder, manifest)
    missing = shards.pending()
    if missing:
        raise OutputError(
            f"{folder}: shard {shard_name(missing[0], shards.count)} is missing "
            f"({len(missing)} of {shards.count}); the job did not finish"
        )
    parts: dict[str, list] = {}
    total_frames = 0
    for k in range(shards.count):
        with np.load(shards.path(k)) as shard:
            for key in shard.files:
                value = shard[key]
                if key == "embeddings" and value.size == 0:
                    continue
                if key == "frame_offsets":
                    value = value[:-1] + total_frames
                    total_frames += int(shard["frame_offsets"][-1])
                parts.setdefault(key, []).append(value)
    out = {}
    for key, values in parts.items():
        axis = 1 if key == "layer_frames" else 0
        out[key] = np.concatenate(values, axis=axis)
    if "frame_offsets" in out:
        out["frame_offsets"] = np.concatenate([out["frame_offsets"], [total_frames]])
    return out
