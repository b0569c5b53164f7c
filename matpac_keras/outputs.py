"""Writing outputs safely: checked before the work, written under a temporary name, renamed.

Every file or folder a CLI produces goes through `atomic_output`: the content is written to a
hidden temporary sibling (same folder, so the final rename is atomic on one file system), made
durable, and renamed over the final name only when complete. A run killed at any moment leaves
the old output (or none), never a truncated one. `check_output` refuses an existing output
unless `overwrite`, and an output folder that cannot be written, before any work is done.

    path = check_output(FLAGS.output, overwrite=FLAGS.overwrite, suffix=".npz")
    ...  # the long work
    with atomic_output(path, overwrite=FLAGS.overwrite) as temporary:
        np.savez(temporary, **arrays)
"""

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from matpac_keras.errors import InputError

_TEMPORARY_PREFIX = ".tmp-"


class OutputError(InputError):
    """An output that exists (without overwrite) or whose folder cannot be written."""


def with_suffix(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """`path` with `suffix` appended unless it already ends with it (`x` -> `x.npz`)."""
    path = pathlib.Path(path)
    return path if path.name.endswith(suffix) else path.with_name(path.name + suffix)


def _writable_folder(folder: pathlib.Path) -> pathlib.Path:
    """The nearest existing ancestor of `folder` (created later); raises if not writable."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: folder is not writable")
    return existing


def check_output(
    path: str | os.PathLike, overwrite: bool = False, suffix: str | None = None
) -> pathlib.Path:
    """Validates an output location before any work; returns its final path.

    Args:
        path: the file or folder to be written.
        overwrite: allow replacing an existing output. Defaults to False.
        suffix: appended to `path` unless already there (e.g. ".npz"). Defaults to None.

    Raises:
        OutputError: the output exists and `overwrite` is False, it exists as the other kind
            (a folder where a file is expected is still refused without `overwrite`), or its
            folder cannot be created or written.
    """
    path = with_suffix(path, suffix) if suffix else pathlib.Path(path)
    path = pathlib.Path(os.path.abspath(path))
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise OutputError(f"{path}: its folder {path.parent} is not writable")
    else:
        _writable_folder(path.parent)
    return path


def _fsync_path(path: pathlib.Path) -> None:
    """Flushes a file, or a folder's entries, to disk (best effort where not supported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: pathlib.Path) -> None:
    if root.is_dir():
        for parent, _, names in os.walk(root):
            for name in names:
                _fsync_path(pathlib.Path(parent) / name)
            _fsync_path(pathlib.Path(parent))
    else:
        _fsync_path(root)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, overwrite: bool = False, folder: bool = False
) -> Iterator[pathlib.Path]:
    """Yields a temporary path to write; renames it to `path` when the block completes.

    Args:
        path: the final file or folder.
        overwrite: replace an existing `path`. Defaults to False (OutputError if it exists).
        folder: the output is a folder (yielded as an existing empty temporary folder); else
            a file (the yielded path does not exist yet and keeps `path`'s suffix, so that
            writers which add a suffix, like `np.savez`, keep the name). Defaults to False.

    On an exception inside the block the temporary output is deleted and `path` is untouched.
    A replaced folder is moved aside, the new one renamed in, then the old one deleted.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if not folder else ""
    if folder:
        temporary = pathlib.Path(
            tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX + path.name + ".", dir=path.parent)
        )
    else:
        fd, name = tempfile.mkstemp(
            prefix=_TEMPORARY_PREFIX + path.name + ".", suffix=suffix, dir=path.parent
        )
        os.close(fd)
        temporary = pathlib.Path(name)
        temporary.unlink()  # writers create it; an existing empty file confuses some of them
    try:
        yield temporary
        if not temporary.exists():
            raise RuntimeError(f"{path}: nothing was written to the temporary {temporary}")
        _fsync_tree(temporary)
        if folder and path.exists():
            if not overwrite:
                raise OutputError(f"{path}: appeared while writing (pass --overwrite)")
            aside = path.with_name(f"{_TEMPORARY_PREFIX}{path.name}.old-{os.getpid()}")
            os.replace(path, aside)
            os.replace(temporary, path)
            _remove(aside)
        else:
            if path.is_dir() and not path.is_symlink():
                raise OutputError(f"{path}: is a folder; expected a file")
            os.replace(temporary, path)
        _fsync_path(path.parent)
    except BaseException:
        _remove(temporary)
        raise


def remove_stale_temporaries(folder: str | os.PathLike, name: str) -> None:
    """Deletes temporary outputs for `name` in `folder` left by a killed run."""
    folder = pathlib.Path(folder)
    if folder.is_dir():
        for stale in folder.glob(f"{_TEMPORARY_PREFIX}{name}.*"):
            _remove(stale)
