"""Files that are whole or absent: the one atomic-write helper, JSON and text on top of it, safe names, and the
one-line error for a file that could not be written."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datagen.common.errors import DatagenError, WriteFailed

_TMP = ".tmp"
_written = itertools.count()  # with the pid and a random token: temporary names unique without creating a file


@contextlib.contextmanager
def atomic_path(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; it replaces `path` only if the block completes.

    The temporary name is hidden, unique and keeps the suffix (writers such as savefig pick the format
    from it); the writer creates the file, so it gets the permissions any new file gets. `durable` fsyncs
    the file before the rename, so a power cut cannot leave a renamed but empty file. On any error the
    temporary file is removed and `path` is untouched. A write that failed (disk full, file size limit) raises
    WriteFailed naming `path`, also where the writer wrapped the OSError (torch.save raises RuntimeError).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{next(_written)}-{os.urandom(3).hex()}{_TMP}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if durable:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. the parent is a file: there is no temporary file to remove
            pass
        cause = _os_error_in(exc) if isinstance(exc, Exception) and not isinstance(exc, DatagenError) else None
        if cause is None or isinstance(exc, WriteFailed):
            raise
        raise write_failed(path, cause) from None


_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # disk full, quota, file size limit (ulimit -f)
_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def write_failed(path: Path, error: BaseException) -> WriteFailed:
    """The one-line error for `path` that could not be written, with the fix its cause calls for."""
    code = getattr(error, "errno", None) or _errno_in_text(str(error))
    reason = os.strerror(code) if code else (str(error).strip().splitlines() or [type(error).__name__])[0]
    if code in _SPACE:
        fix = ("free space there (or raise the file size limit), then run the command again: train and augment "
               "with --resume continue from what they saved")
    elif code in _ACCESS:
        fix = "make it writable or choose another place"
    else:
        fix = "check the disk, then run the command again: train and augment with --resume continue from what they saved"
    return WriteFailed(f"cannot write {path} ({reason}); {fix}", code)


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind an exception, if any: libraries that write files often wrap it in their own error."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__), seen + 1
    return None


def _errno_in_text(text: str) -> int | None:
    # HDF5 reports the system error only in its message: "... errno = 27, error message = 'File too large' ..."
    match = re.search(r"errno = (\d+)", text)
    return int(match.group(1)) if match and int(match.group(1)) else None


def is_temporary(name: str) -> bool:
    """Whether a file name is one atomic_path gives (a write cut short if it is still there)."""
    return name.startswith(".") and _TMP in name


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary files atomic_path left beside `path` when its process was killed mid-write."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.glob(f".{glob_escape(path.name)}.*") if p.is_file() and is_temporary(p.name)]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def safe_name(text: str) -> str:
    """A user-supplied name made safe to use as one path component."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).name if ("/" in text or os.sep in text) else text).strip("-.")
    return name or "data"
