"""One run per workdir: an exclusive lock that a second run is refused, naming the holder.

The lock is `fcntl.flock` on `<workdir>/.lock`, which holds the owner's pid and host. The kernel
releases a flock when its process ends, however it ends, so the lock of a killed run (SIGKILL
included) is stale at once and the next run takes it over: no pid-liveness guessing. (flock
works between processes of one machine and on most network file systems' local clients; two
machines sharing a workdir over NFS without lock support are not protected.)

    with workdir_lock(workdir):
        train(config, workdir)
"""

import contextlib
import errno
import fcntl
import os
import pathlib
import socket
from collections.abc import Iterator

from matpac_keras.errors import InputError

LOCK_NAME = ".lock"


class WorkdirLockedError(InputError):
    """Another live process holds the workdir."""


def _holder(path: pathlib.Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return text or "another process"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Holds the exclusive lock of `workdir` (created if needed) for the block.

    Raises:
        WorkdirLockedError: another process holds it (the message names its pid and host).
        InputError: `workdir` exists and is not a folder.
    """
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir {workdir}: is a file, not a folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--workdir {workdir}: cannot create it ({error.strerror})") from error
    path = workdir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise InputError(f"--workdir {workdir}: cannot write in it ({error.strerror})") from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirLockedError(
                f"--workdir {workdir}: in use by {_holder(path)} (one run per workdir; wait for "
                "it to end or stop it, then run again to resume)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
