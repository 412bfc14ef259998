"""One writer at a time: an exclusive lock on what a process writes (a run directory, an augment output).

The lock of PATH is the file PATH.lock beside it (never inside, so a finished output holds nothing foreign), and it
holds the holder's pid and host. It is locked with flock(2), which the kernel drops when its process dies however
it dies (kill -9 included): a lock file left by a dead process is simply taken over, and a reused pid can never
pass for the holder. The holder removes the file when it lets go. Where flock is missing (Windows) or refused (a
network filesystem mounted without locking), the pid in the file decides alone: a live process on this host, or
any process on another, holds it; otherwise it is stale and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.common.files import write_failed

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def lock_path(path: Path) -> Path:
    """Where the lock of `path` lives: PATH.lock beside it (the resolved path, so every spelling shares one lock)."""
    path = Path(path).resolve()
    return path.with_name(f"{path.name}.lock")


@contextmanager
def hold(path: Path, what: str) -> Iterator[Path | None]:
    """Hold the lock of `path` (`what` names it in messages, e.g. "the run directory") until the block ends.

    Raises DatagenError, naming the holder and the fix, when another live process holds it. Where no lock file can
    be created beside `path` (a read-only parent, e.g. a volume mounted at /output), it runs without one and says so.
    """
    lock = lock_path(path)
    fd = _acquire(lock, what, path)
    if fd is None:
        yield None
        return
    try:
        yield lock
    finally:
        _release(lock, fd)


def _acquire(lock: Path, what: str, path: Path) -> int | None:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and lock.parent.is_dir():
                console.print(f"cannot create the lock file {lock} ({exc.strerror}): writing {path} without a lock, so "
                              "make sure no other datagen process writes it", markup=False, highlight=False)
                return None
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # a fault: free space, run again
                raise write_failed(lock, exc) from None
            raise DatagenError(f"cannot create the lock file {lock} ({exc.strerror}); choose a writable --out") from None
        try:
            locked = _flock(fd)
            if locked is None:  # no kernel lock here: the pid decides
                holder = _holder(lock)
                if holder is not None and _alive(holder):
                    raise DatagenError(_in_use(what, path, lock, holder, kernel_lock=False))
            elif not locked:
                raise DatagenError(_in_use(what, path, lock, _holder(lock), kernel_lock=True))
            elif not _same_file(fd, lock):
                os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
                continue
            _write_holder(fd, lock)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _write_holder(fd: int, lock: Path) -> None:
    """Name this process in the lock file, for the message another process shows."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
    except OSError as exc:  # e.g. a full disk: say so before any real work starts
        raise write_failed(lock, exc) from None


def _release(lock: Path, fd: int) -> None:
    try:
        holder = _holder(lock) or {}
        if (holder.get("pid"), holder.get("host")) == (os.getpid(), socket.gethostname()):  # else: taken over as stale
            lock.unlink(missing_ok=True)  # before closing, which lets the next process in
    except OSError:
        pass  # the lock stays behind; the next process takes it over
    finally:
        os.close(fd)


def _flock(fd: int) -> bool | None:
    """Whether the kernel lock was taken; None where this system or filesystem has none."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise


def _same_file(fd: int, lock: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        return False


def _holder(lock: Path) -> dict | None:
    """The pid and host the lock file names (None while the holder has not written them yet, or unreadable)."""
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) and holder["pid"] > 0 else None
    except (OSError, ValueError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the process a lock file names may still run (on another host it cannot be checked: assume so)."""
    if holder.get("host") != socket.gethostname() or os.name == "nt":  # Windows: os.kill(pid, 0) is not a probe
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def _in_use(what: str, path: Path, lock: Path, holder: dict | None, kernel_lock: bool) -> str:
    who = f"process {holder['pid']} on {holder.get('host', '?')}" if holder else "another process"
    if kernel_lock:  # the kernel vouches that the holder runs: deleting the file would let two writers in
        return f"{what} {path} is in use by {who} (lock file {lock}): wait for it to finish"
    return (f"{what} {path} is in use by {who} (lock file {lock}): wait for it to finish, "
            f"or if that process is no longer running, delete {lock}")
