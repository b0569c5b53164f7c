"""Writing outputs safely: checked before the work, written under a temporary name, renamed.

Every file or folder a CLI produces goes through `atomic_output`: the content is written to a
hidden temporary sibling (same folder, so the final rename is atomic on one file system), made
durable, and renamed over the final name only when complete. A run killed at any moment leaves
the old output (or none), never a truncated one. `check_output` refuses an existing output
unless `overwrite`, an existing output of the other kind (a folder where a file is written, or
the reverse) always, and an output folder that cannot be written, before any work is done.

    path = check_output(FLAGS.output, overwrite=FLAGS.overwrite, suffix=".npz")
    ...  # the long work
    with atomic_output(path, overwrite=FLAGS.overwrite) as temporary:
        np.savez(temporary, **arrays)

"Cannot be written" is found by creating (and deleting) a file in the folder, not only by
`os.access`: root passes `os.access` everywhere, yet cannot write on a read-only file system,
into an immutable folder (chattr +i) or into /proc.
"""

import contextlib
import errno
import os
import pathlib
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator

from matpac_keras.errors import InputError

_TEMPORARY_PREFIX = ".tmp-"
_ASIDE = ".old-"
# Write failures the user can fix: full, over quota, read-only, forbidden, too large.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


class OutputError(InputError):
    """An output that exists (without overwrite) or whose folder cannot be written."""


def with_suffix(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """`path` with `suffix` appended unless it already ends with it (`x` -> `x.npz`).

    Raises:
        OutputError: `path` names no file (`.`, `..`, `/`, or ends with a slash).
    """
    text = os.fspath(path)
    path = pathlib.Path(path)
    if path.name in ("", ".", "..") or text.endswith(("/", os.sep)):
        raise OutputError(
            f"{text}: names a folder; give a file name (e.g. {text.rstrip('/')}/out{suffix})"
        )
    return path if path.name.endswith(suffix) else path.with_name(path.name + suffix)


def check_writable_folder(
    folder: str | os.PathLike, output: str | os.PathLike | None = None
) -> pathlib.Path:
    """Checks that files can be created in `folder`, or in its nearest existing ancestor when
    it does not exist yet (it is created later); returns that existing folder.

    Args:
        folder: where the output goes.
        output: the output named first in the error message. Defaults to `folder`.

    Raises:
        OutputError: an ancestor is a file, or a file cannot be created there.
    """
    folder = pathlib.Path(os.path.abspath(folder))
    output = folder if output is None else output
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{output}: {existing} is a file, not a folder")
    reason = None
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "permission denied"
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX + "probe.", dir=existing)
        except OSError as error:
            reason = error.strerror or str(error)
        else:
            os.close(fd)
            os.unlink(probe)
    if reason:
        raise OutputError(f"{output}: cannot write in the folder {existing}: {reason}")
    return existing


def _is_empty_folder(path: pathlib.Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_output(
    path: str | os.PathLike,
    overwrite: bool = False,
    suffix: str | None = None,
    folder: bool = False,
    flag: str | None = None,
) -> pathlib.Path:
    """Validates an output location before any work; returns its final, absolute path.

    Args:
        path: the file or folder to be written.
        overwrite: allow replacing an existing output. Defaults to False.
        suffix: appended to `path` unless already there (e.g. ".npz"). Defaults to None.
        folder: the output is a folder. An existing empty folder is then no output to lose
            and is accepted without `overwrite`. Defaults to False (a file).
        flag: the command-line flag that named `path` (e.g. "--output"), put first in the
            error message. Defaults to None.

    Raises:
        OutputError: the output exists and `overwrite` is False; it exists as the other kind
            (a folder where a file is expected, or the reverse: refused even with
            `overwrite`, since that is most likely a mistyped path); it is a device, pipe or
            socket; or its folder cannot be created or written.
    """
    try:
        return _check_output(path, overwrite, suffix, folder)
    except OutputError as error:
        if flag:
            raise OutputError(f"{flag} {error}") from None
        raise


def _check_output(path, overwrite: bool, suffix: str | None, folder: bool) -> pathlib.Path:
    path = with_suffix(path, suffix) if suffix else pathlib.Path(path)
    path = pathlib.Path(os.path.abspath(path))
    if path.exists() or path.is_symlink():
        is_folder = path.is_dir()
        if is_folder and not folder:
            raise OutputError(f"{path}: is a folder; a file is written here")
        if folder and path.exists() and not is_folder:
            raise OutputError(f"{path}: is a file; a folder is written here")
        if not folder and path.exists() and not path.is_file():  # a device, a pipe, a socket
            raise OutputError(f"{path}: is not a regular file; refusing to replace it")
        if not overwrite and not (folder and _is_empty_folder(path)):
            what = "already exists and is not empty" if is_folder else "already exists"
            raise OutputError(f"{path}: {what} (pass --overwrite to replace it)")
    check_writable_folder(path.parent, output=path)
    return path


def fsync_path(path: pathlib.Path) -> None:
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
                fsync_path(pathlib.Path(parent) / name)
            fsync_path(pathlib.Path(parent))
    else:
        fsync_path(root)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _new_temporary(path: pathlib.Path, folder: bool) -> pathlib.Path:
    """A fresh temporary sibling of `path`: an empty folder, or a file name not yet created
    (with `path`'s suffixes, so that writers which add a suffix, like `np.savez`, keep it)."""
    prefix = f"{_TEMPORARY_PREFIX}{path.name}.{os.getpid()}-"
    if folder:
        while True:  # os.mkdir, not mkdtemp: the umask's permissions, not 0700
            temporary = path.with_name(prefix + secrets.token_hex(4))
            try:
                temporary.mkdir(0o777)
                return temporary
            except FileExistsError:
                continue
    fd, name = tempfile.mkstemp(prefix=prefix, suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    temporary = pathlib.Path(name)
    temporary.unlink()  # writers create it (with the umask's permissions, not mkstemp's 0600)
    return temporary


def _exists(path: pathlib.Path) -> bool:
    return path.exists() or path.is_symlink()


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

    On an exception inside the block the temporary output is deleted and `path` is untouched;
    a failure of a full, read-only or forbidden file system (`write_failure`: an OSError, or a
    library's error saying so, as h5py's and TensorFlow's do) becomes an OutputError naming
    `path`. A replaced folder is moved aside, the new one renamed in, then the old one deleted
    (a run killed between the two renames leaves the old one aside, where
    `remove_stale_temporaries` puts it back).
    """
    path = check_output(path, overwrite, folder=folder)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _new_temporary(path, folder)
        yield temporary
        if not _exists(temporary):
            raise RuntimeError(f"{path}: nothing was written to the temporary {temporary}")
        _fsync_tree(temporary)
        if _exists(path) and not overwrite and not (folder and _is_empty_folder(path)):
            raise OutputError(f"{path}: appeared while writing (pass --overwrite to replace it)")
        if folder and _exists(path):
            if not (path.is_dir() and not path.is_symlink()):
                raise OutputError(f"{path}: is a file; a folder is written here")
            aside = path.with_name(f"{_TEMPORARY_PREFIX}{path.name}{_ASIDE}{os.getpid()}")
            os.replace(path, aside)
            try:
                os.replace(temporary, path)
            except BaseException:
                os.replace(aside, path)
                raise
            _remove(aside)
        else:
            if path.is_dir() and not path.is_symlink():
                raise OutputError(f"{path}: is a folder; a file is written here")
            os.replace(temporary, path)
        fsync_path(path.parent)
    except BaseException as error:
        if temporary is not None:
            _remove(temporary)
        reason = write_failure(error)
        if reason:
            raise OutputError(f"{path}: cannot write it: {reason}") from error
        raise


# How libraries that write files report a full disk without an OSError errno: h5py's
# "errno = 28, error message = 'No space left on device'", TensorFlow's ResourceExhaustedError.
_FULL_DISK_TEXTS = {
    os.strerror(errno.ENOSPC): os.strerror(errno.ENOSPC),
    "errno = 28": os.strerror(errno.ENOSPC),
    os.strerror(errno.EDQUOT): os.strerror(errno.EDQUOT),
}


def write_failure(error: BaseException) -> str | None:
    """The reason, if `error` (or an exception it was raised from) is a write failure the user
    can fix: an OSError of `WRITE_ERRNOS` (full, over quota, read-only, forbidden), or a
    library's error whose message says the disk is full (h5py, TensorFlow). None otherwise."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        for marker, reason in _FULL_DISK_TEXTS.items():
            if marker in text:  # first: h5py's OSErrors hold a paragraph of detail
                return reason
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            return error.strerror or str(error)
        error = error.__cause__ or error.__context__
    return None


def _temporaries(folder: pathlib.Path, name: str) -> tuple[list, list]:
    """(temporaries, asides) of the output `name` in `folder`, by the names this module makes."""
    stem = re.escape(_TEMPORARY_PREFIX + name)
    suffixes = re.escape("".join(pathlib.PurePath(name).suffixes))
    temporary = re.compile(stem + r"\.\d+-[a-z0-9_]{8}(" + suffixes + ")?")
    aside = re.compile(stem + re.escape(_ASIDE) + r"\d+")
    entries = sorted(folder.iterdir())
    return (
        [e for e in entries if temporary.fullmatch(e.name)],
        [e for e in entries if aside.fullmatch(e.name)],
    )


def remove_stale_temporaries(folder: str | os.PathLike, name: str) -> None:
    """Deletes temporary outputs for `name` in `folder` left by a killed run; puts back a
    replaced folder left aside when `name` itself is missing.

    Call it only where no other process can be writing `name` (e.g. under the workdir lock):
    it deletes their temporaries too.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return
    final = folder / name
    temporaries, asides = _temporaries(folder, name)
    for aside in asides:
        if not _exists(final):
            os.replace(aside, final)
        else:
            _remove(aside)
    for stale in temporaries:
        _remove(stale)
