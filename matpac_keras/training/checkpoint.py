"""Training checkpoints: the whole state of a run in one `.npz`, written atomically.

A checkpoint holds every variable of the model (student, predictor, heads, teachers, centre,
step counter, mask seed generator) and of its optimizer (iteration count, moments, loss scale),
plus JSON metadata (step = batches consumed, i.e. the data position, and the config). It is
written to `<name>.tmp`, flushed to disk, then renamed: a run killed at any moment leaves either
the previous checkpoints or the new one, never a partial file. A checkpoint whose float state is
not finite is refused (`NonFiniteStateError`), so a diverged run cannot overwrite good ones.
"""

import json
import os
import pathlib
import re

import keras
import numpy as np

from matpac_keras.errors import InputError
from matpac_keras.outputs import fsync_path

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d{8})\.npz$")
_GROUPS = ("model", "optimizer")
_SUFFIX = re.compile(r"_\d+(?=/|_|$)")


class NonFiniteStateError(ValueError):
    """A variable to be checkpointed holds NaN or infinity."""


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir) / CHECKPOINT_DIR


def list_checkpoints(workdir: str | os.PathLike) -> list[tuple[int, pathlib.Path]]:
    """(step, path) of the complete checkpoints of a workdir, oldest first."""
    directory = checkpoint_dir(workdir)
    if not directory.is_dir():
        return []
    found = ((_NAME.match(p.name), p) for p in directory.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def latest_checkpoint(workdir: str | os.PathLike) -> pathlib.Path | None:
    checkpoints = list_checkpoints(workdir)
    return checkpoints[-1][1] if checkpoints else None


def _state(model: keras.Model) -> dict[str, list]:
    if model.optimizer is None:
        raise ValueError("compile the model (with its optimizer) before checkpointing it")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return {"model": list(model.variables), "optimizer": list(model.optimizer.variables)}


def _to_numpy(variable) -> np.ndarray:
    value = keras.ops.convert_to_numpy(variable)
    if value.dtype.kind == "V" or value.dtype.name == "bfloat16":  # ml_dtypes: store as float32
        value = value.astype(np.float32)
    return value


def save_checkpoint(
    workdir: str | os.PathLike, step: int, model: keras.Model, metadata: dict, keep: int = 3
) -> pathlib.Path:
    """Writes `checkpoints/ckpt-<step>.npz` atomically and keeps the newest `keep` of them.

    Raises NonFiniteStateError (writing nothing) when a float variable is not finite.
    """
    arrays = {}
    paths = {}
    for group, variables in _state(model).items():
        paths[group] = [v.path for v in variables]
        for index, variable in enumerate(variables):
            value = _to_numpy(variable)
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise NonFiniteStateError(f"{variable.path} holds non-finite values at step {step}")
            arrays[f"{group}.{index:05d}"] = value
    arrays["metadata"] = np.array(json.dumps({**metadata, "step": step, "paths": paths}))
    directory = checkpoint_dir(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{step:08d}.npz"
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:  # disk full, ...: the older checkpoints stay as they were
        temporary.unlink(missing_ok=True)
        if error.filename is None:  # zipfile's and fsync's errors name no file: name ours
            raise OSError(error.errno, error.strerror, os.fspath(temporary)) from error
        raise
    except BaseException:  # killed, ...: likewise
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(directory)  # the rename, durable (POSIX)
    for _, old in list_checkpoints(workdir)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def remove_partial_files(workdir: str | os.PathLike) -> None:
    """Deletes `.tmp` files left by a run killed while writing a checkpoint."""
    directory = checkpoint_dir(workdir)
    if directory.is_dir():
        for path in directory.glob("*.tmp"):
            path.unlink()


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(metadata, {group: {variable path: array}}) of a checkpoint file."""
    try:
        with np.load(path) as data:
            metadata = json.loads(str(data["metadata"]))
            arrays = {
                group: {
                    name: data[f"{group}.{index:05d}"]
                    for index, name in enumerate(metadata["paths"][group])
                }
                for group in _GROUPS
            }
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{os.fspath(path)}: not a readable checkpoint ({error})") from error
    return metadata, arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a checkpoint file, without reading its arrays."""
    try:
        with np.load(path) as data:
            return json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{os.fspath(path)}: not a readable checkpoint ({error})") from error


def _canonical(path: str) -> str:
    """A variable path without Keras's uniquifying suffixes ("matpac_pretrainer_2" ->
    "matpac_pretrainer"), so that a checkpoint restores into a model built in another process
    or after other models in this one; variables are matched by position, names checked."""
    return _SUFFIX.sub("", path)


def restore_checkpoint(path: str | os.PathLike, model: keras.Model) -> dict:
    """Assigns a checkpoint's values to a compiled model of the same configuration.

    Returns the metadata. Raises InputError naming the file and the first variable whose
    name or shape differs (a checkpoint of another architecture or optimizer).
    """
    metadata, arrays = read_checkpoint(path)
    for group, variables in _state(model).items():
        saved = list(arrays[group].items())
        for index in range(max(len(saved), len(variables))):
            here = variables[index].path if index < len(variables) else None
            there = saved[index][0] if index < len(saved) else None
            if here is None or there is None or _canonical(here) != _canonical(there):
                raise InputError(
                    f"{os.fspath(path)}: its {group} variables do not match this model's "
                    f"({len(saved)} saved, {len(variables)} here; first difference: saved "
                    f"{there!r}, here {here!r})"
                )
            value, variable = saved[index][1], variables[index]
            if tuple(value.shape) != tuple(variable.shape):
                raise InputError(
                    f"{os.fspath(path)}: {variable.path} has shape {value.shape} there, "
                    f"{tuple(variable.shape)} in this model"
                )
            variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
    return metadata
