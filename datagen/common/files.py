"""Files that are whole or absent: the one atomic-write helper, JSON and text on top of it, safe names."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TMP = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: mkstemp's 0600 would hide outputs from others


@contextlib.contextmanager
def atomic_path(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; it replaces `path` only if the block completes.

    The temporary name is hidden, unique and keeps the suffix (writers such as savefig pick the format
    from it). `durable` fsyncs the file before the rename, so a power cut cannot leave a renamed but
    empty file. On any error the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{_TMP}{path.suffix}", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary files atomic_path left beside `path` when its process was killed mid-write."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.glob(f".{glob_escape(path.name)}.*{_TMP}*") if p.is_file()]


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
