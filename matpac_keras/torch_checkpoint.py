"""Torch-free reader for `torch.save` checkpoints (the zip format written since torch 1.6).

Official MATPAC weights ship as `.pt` files. Converting them must neither need torch nor run code
from the pickle, so a restricted unpickler admits only the few globals a state_dict uses
(tensor rebuild functions, storage types, `OrderedDict`) and refuses everything else.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import numpy as np

# Storage class name -> NumPy dtype of one element ("bf16" is widened to float32 on load).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}
_WRAPPER_KEYS = ("model", "state_dict", "module")


class _StorageType(str):
    """Stands in for a `torch.*Storage` class inside a persistent id; holds the class name."""


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    """Mirrors `torch._utils._rebuild_tensor_v2`: a strided view of a flat storage, copied."""
    size, stride = tuple(size), tuple(stride)
    ints = (offset, *size, *stride)
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
        raise ValueError(f"invalid tensor layout: offset={offset} size={size} stride={stride}")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise ValueError(f"tensor layout reaches element {last} of a {storage.size} storage")
    flat = storage[offset:] if offset < storage.size else storage[:0]
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(flat, size, strides, writeable=False).copy()


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    """Mirrors `torch._utils._rebuild_parameter(_with_state)`: a Parameter is just its data."""
    return data


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("torch", "Size"): tuple,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl`, reading storages from `<archive>/data/<key>` on demand."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, np.ndarray] = {}
        byteorder = f"{prefix}/byteorder"
        big = byteorder in archive.namelist() and archive.read(byteorder).strip() == b"big"
        self._endian = ">" if big else "<"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ValueError(f"{self._path}: refusing to unpickle forbidden global {module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"{self._path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self._path}: unsupported storage type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        return self._storages[key]

    def _read_storage(self, storage_type: str, key: str, numel: int) -> np.ndarray:
        record = f"{self._prefix}/data/{key}"
        try:
            raw = self._archive.read(record)
        except KeyError:
            raise ValueError(f"{self._path}: storage record {record} is missing") from None
        code = _STORAGE_DTYPES[storage_type]
        bf16 = code == "bf16"
        dtype = np.dtype(self._endian + ("u2" if bf16 else code))
        if len(raw) < numel * dtype.itemsize:
            raise ValueError(f"{self._path}: storage {record} is truncated")
        flat = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
        if bf16:  # bfloat16 is the upper half of a float32: shift the bits into place.
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        return flat


def load_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a `torch.save` file without torch and returns exactly the pickled dict.

    Nested dicts stay nested, tensors and Parameters become NumPy arrays (bfloat16 as float32).
    Raises FileNotFoundError for a missing file and ValueError (naming the file) for a legacy or
    damaged file, or for a pickle that references anything but tensors and plain containers.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torch checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise ValueError(f"{path}: truncated or corrupt zip archive")
        if head.startswith(b"\x80"):
            raise ValueError(
                f"{path}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save "
                "it with torch.save(obj, path) from torch >= 1.6"
            )
        raise ValueError(f"{path}: not a torch.save zip checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")
            ]
            if len(pickles) != 1:
                raise ValueError(f"{path}: expected one <archive>/data.pkl, found {pickles}")
            prefix = pickles[0].split("/")[0]
            with archive.open(pickles[0]) as f:
                obj = _RestrictedUnpickler(f, archive, prefix, path).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError) as e:
        raise ValueError(f"{path}: truncated or corrupt checkpoint ({e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def find_state_dict(obj: dict) -> dict:
    """Returns the state_dict inside common wrappers ('model', 'state_dict', 'module'), else obj."""
    while True:
        inner = [obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        if not inner:
            return obj
        obj = inner[0]
