"""One process at a time in a workdir: an flock on WORKDIR/lock, and one-line errors for the workdir's disk.

Two runs in one workdir would overwrite each other's checkpoints and metrics, so training and
evaluation hold an exclusive `fcntl.flock` on WORKDIR/lock while they work. The kernel releases it
when the holder exits or dies (even by SIGKILL), so a rerun after a kill is never refused; the file
itself only records who holds it (pid, host, start time) for the message a second run gets.
While the lock is held nobody else writes in the workdir, so temporary files left by an
interrupted write (`*.tmp`, `*.tmp.npz`) are removed when the lock is taken and released, and
orbax's temporary folders of unfinished saves (`*.orbax-checkpoint-tmp*`, never read back) when
it is taken (not on release: an asynchronous save may still be finishing then; a save that fails
removes its own at once, bitnet.workdir.checkpoints).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import inspect
import os
import re
import shutil
import socket
import time
from typing import Callable, Iterator, TypeVar

from bitnet.errors import WorkdirError  # noqa: F401  (importable from here, as before)

LOCK_NAME = "lock"
TEMPORARY_PATTERNS = ("*.tmp", "*.tmp.npz")
UNFINISHED_SAVE = "*.orbax-checkpoint-tmp*"  # orbax's temporary folder of a save, renamed into place once complete
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (read-only or immutable file?)",
}

F = TypeVar("F", bound=Callable)


def _holder(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip() or "a process that is just starting"
    except OSError:
        return "another process"


def _remove_temporaries(workdir: str, unfinished_saves: bool = False) -> None:
    for pattern in TEMPORARY_PATTERNS:
        for path in glob.glob(os.path.join(glob.escape(workdir), pattern)):
            with contextlib.suppress(OSError):
                os.remove(path)
    if unfinished_saves:
        remove_unfinished_saves(os.path.join(workdir, "checkpoints"))


def remove_unfinished_saves(folder: str) -> None:
    """Remove orbax's temporary folders of unfinished saves under `folder` (never read back). Only while no save
    there is still running: the workdir's lock just taken, or the manager of a failed save closed."""
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "**", UNFINISHED_SAVE), recursive=True)):
        shutil.rmtree(path, ignore_errors=True)  # a nested match is gone with its parent already


def _lock(path: str) -> int:
    """An fd holding an exclusive flock on `path` (the file as named now), or WorkdirError naming the holder."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            workdir = os.path.dirname(path)
            raise WorkdirError(
                f"{workdir} is in use by {_holder(path)}; wait for it to finish (or stop it), or use another workdir"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the file was removed by its last holder after we opened it: lock the new one


@contextlib.contextmanager
def held(workdir: str) -> Iterator[None]:
    """Hold WORKDIR's lock (creating the folder if needed); WorkdirError if it is busy, a file or read-only.

    A folder made here that ends with nothing in it but the lock file is removed again, so a run
    refused for a bad config leaves nothing behind.
    """
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a folder; pass a new or existing workdir folder")
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    if not os.access(workdir, os.W_OK):
        raise WorkdirError(
            f"{workdir} is read-only; make it writable (chmod -R u+w, or chattr -R -i if it was made immutable), or copy it and use the copy as --workdir"
        )
    path = os.path.join(workdir, LOCK_NAME)
    fd = _lock(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode())
        _remove_temporaries(workdir, unfinished_saves=True)
        yield
    finally:
        _remove_temporaries(workdir)
        if created and os.listdir(workdir) == [LOCK_NAME]:
            os.remove(path)
            os.rmdir(workdir)
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def shared(workdir: str) -> Iterator[None]:
    """Hold a shared flock on WORKDIR's lock while reading a finished stage there (another run's stage 1): readers
    may share it, but not with a process training or evaluating in that workdir. WorkdirError if one is.

    A reader writes nothing: it never takes the holder's record or removes temporary files, and it reads a
    workdir it may not write (then without a lock when it has no lock file, as nothing can be training there)."""
    path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield
            return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirError(
                f"{workdir} is in use by {_holder(path)}; its stage cannot be read while it is written: "
                "wait for it to finish (or stop it) and rerun"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the flock


def holding_workdir(function: F) -> F:
    """Decorate a function with a `workdir` argument to run it holding that workdir's lock."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args, **kwargs):
        with held(signature.bind(*args, **kwargs).arguments["workdir"]):
            return function(*args, **kwargs)

    return locked  # type: ignore[return-value]


def _mount_point(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _errno_and_path(error: BaseException) -> tuple[int | None, str | None]:
    """The OS error number and file of an OSError, or of an orbax/TensorStore error that quotes them
    in its message ('Failed writing: "<path>": ... [os_error_code='28']')."""
    if isinstance(error, OSError):
        return error.errno, error.filename
    code = re.search(r"os_error_code='(\d+)'", str(error))
    path = re.search(r'(?:Failed writing|local file): "([^"]+)"', str(error))
    return (int(code[1]) if code else None), (path[1] if path else None)


def disk_error(error: BaseException) -> str | None:
    """The one-line message for a write that failed on the disk (full, read-only, no permission), else None.

    Looks through the exception's causes too: libraries (orbax) wrap the error they got.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        number, where = _errno_and_path(error)
        if number in DISK_ERRNOS:
            where = (where or os.getcwd()).split(".orbax-checkpoint-tmp")[0]  # the checkpoint, not orbax's temporary name
            disk = _mount_point(os.path.dirname(os.path.abspath(where)))
            fix = "free space there" if number in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
            return f"{DISK_ERRNOS[number]} writing {where} (disk mounted at {disk}); {fix} and rerun the same command"
        error = error.__cause__ or error.__context__
    return None
