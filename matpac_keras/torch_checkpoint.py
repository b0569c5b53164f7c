"""Torch-free reader for `torch.save` checkpoints (the zip format written since torch 1.6).

Official MATPAC weights ship as `.pt` files. Converting them must neither need torch nor run code
from the pickle, so a restricted unpickler admits only the few globals a state_dict uses
(tensor rebuild functions, storage types, `OrderedDict`) and refuses everything else.

Nothing a file declares is allocated before it is checked against the bytes the file holds: a
storage's element count against its zip record's size, and every tensor's layout (offset,
shape, strides) against its storage, all tensors before any is copied. A tensor of more
elements than its storage holds past its offset is refused (a 518-byte file could otherwise
declare a 32768 x 32768 stride-0 view of one float and allocate 4 GiB); state_dicts never hold
such expanded views.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from matpac_keras.errors import InputError

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


class CheckpointError(InputError):
    """A checkpoint file that cannot be read (damaged, forbidden content, impossible layout)."""


class _StorageType(str):
    """Stands in for a `torch.*Storage` class inside a persistent id; holds the class name."""


class _TensorRecord:
    """A tensor as the pickle declares it: checked, then copied out of its storage, by
    `_materialize` once the whole file is unpickled (so that errors can name its key)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def check(self, path: str, name: str) -> None:
        offset, size, stride, storage = self.offset, self.size, self.stride, self.storage
        what = f"{path}: tensor {name!r}"
        try:
            size, stride = tuple(size), tuple(stride)
        except TypeError:
            raise CheckpointError(f"{what}: invalid size {size!r} or stride {stride!r}") from None
        ints = (offset, *size, *stride)
        if not all(type(v) is int and v >= 0 for v in ints) or len(size) != len(stride):
            raise CheckpointError(
                f"{what}: invalid layout offset={offset} size={size} stride={stride}"
            )
        numel = math.prod(size)
        if numel and offset + numel > storage.size:
            raise CheckpointError(
                f"{what}: declares shape {size} at offset {offset}, "
                f"{(offset + numel) * storage.itemsize} bytes, over a storage of "
                f"{storage.nbytes} bytes"
            )
        if numel:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.size:
                raise CheckpointError(
                    f"{what}: layout (offset {offset}, shape {size}, strides {stride}) reaches "
                    f"element {last} of a storage of {storage.size}"
                )
        self.size, self.stride = size, stride

    def materialize(self) -> np.ndarray:
        storage, offset = self.storage, self.offset
        flat = storage[offset:] if offset < storage.size else storage[:0]
        strides = tuple(s * storage.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat, self.size, strides, writeable=False).copy()


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> _TensorRecord:
    """Mirrors `torch._utils._rebuild_tensor_v2`: a strided view of a flat storage (copied
    later, by `_materialize`)."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError(f"tensor storage is a {type(storage).__name__}")
    return _TensorRecord(storage, offset, size, stride)


def _walk(obj: Any, name: str, visit) -> Any:
    """Rebuilds containers, applying `visit(record, key path)` to every tensor record."""
    if isinstance(obj, _TensorRecord):
        return visit(obj, name)
    if isinstance(obj, dict):
        items = [(k, _walk(v, f"{name}.{k}" if name else str(k), visit)) for k, v in obj.items()]
        if isinstance(obj, collections.OrderedDict):
            return collections.OrderedDict(items)
        return dict(items)
    if isinstance(obj, (list, tuple)):
        values = [_walk(v, f"{name}[{i}]", visit) for i, v in enumerate(obj)]
        return values if isinstance(obj, list) else tuple(values)
    return obj


def _materialize(obj: Any, path: str) -> Any:
    """Checks every tensor record in `obj` against its storage, then copies them all."""

    def check(record, name):
        record.check(path, name)
        return record

    _walk(obj, "", check)
    return _walk(obj, "", lambda record, _: record.materialize())


def _rebuild_parameter(data, *_unused):
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
        raise CheckpointError(
            f"{self._path}: refusing to unpickle forbidden global {module}.{name}"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._path}: unsupported storage type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        return self._storages[key]

    def _read_storage(self, storage_type: str, key: str, numel: int) -> np.ndarray:
        record = f"{self._prefix}/data/{key}"
        try:
            stored = self._archive.getinfo(record).file_size
        except KeyError:
            raise CheckpointError(f"{self._path}: storage record {record} is missing") from None
        code = _STORAGE_DTYPES[storage_type]
        bf16 = code == "bf16"
        dtype = np.dtype(self._endian + ("u2" if bf16 else code))
        if type(numel) is not int or numel < 0:
            raise CheckpointError(f"{self._path}: storage {record} has invalid size {numel!r}")
        if stored < numel * dtype.itemsize:
            raise CheckpointError(
                f"{self._path}: storage {record} declares {numel} elements "
                f"({numel * dtype.itemsize} bytes) but holds {stored} bytes: truncated"
            )
        raw = self._archive.read(record)
        flat = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
        if bf16:  # bfloat16 is the upper half of a float32: shift the bits into place.
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        return flat


def load_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a `torch.save` file without torch and returns exactly the pickled dict.

    Nested dicts stay nested, tensors and Parameters become NumPy arrays (bfloat16 as float32).
    Raises FileNotFoundError for a missing file and CheckpointError (an InputError naming the
    file, and the tensor where one is at fault) for a legacy or damaged file, a tensor larger
    than its storage, or a pickle that references anything but tensors and plain containers.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torch checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: truncated or corrupt zip archive")
        if head.startswith(b"\x80"):
            raise CheckpointError(
                f"{path}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save "
                "it with torch.save(obj, path) from torch >= 1.6"
            )
        raise CheckpointError(f"{path}: not a torch.save zip checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")
            ]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: expected one <archive>/data.pkl, found {pickles}")
            prefix = pickles[0].split("/")[0]
            with archive.open(pickles[0]) as f:
                obj = _RestrictedUnpickler(f, archive, prefix, path).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return _materialize(obj, path)


def find_state_dict(obj: dict) -> dict:
    """Returns the state_dict inside common wrappers ('model', 'state_dict', 'module'), else obj."""
    while True:
        inner = [obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        if not inner:
            return obj
        obj = inner[0]


def read_state_dict(path: str | os.PathLike, flag: str = "--checkpoint") -> dict:
    """A state_dict from a `.pt` file or an `.npz` (nested keys written as `outer/inner`);
    errors name `flag` and the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{flag} {path}: is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path}: no such file")
    if path.endswith(".npz"):
        state: dict = {}
        try:
            with np.load(path) as arrays:
                for key in arrays.files:
                    outer, _, inner = key.rpartition("/") if key.startswith("_") else ("", "", key)
                    (state.setdefault(outer, {}) if outer else state)[inner] = arrays[key]
        except (ValueError, zipfile.BadZipFile, EOFError) as error:
            raise InputError(f"{flag} {path}: not an .npz file of tensors") from error
        return state
    return find_state_dict(load_torch_checkpoint(path))
