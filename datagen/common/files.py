"""Files that are whole or absent: the one atomic-write helper, JSON and text on top of it, safe names."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TMP = ".tmp"
_written = itertools.count()  # with the pid and a random token: temporary names unique without creating a file


@contextlib.contextmanager
def atomic_path(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; it replaces `path` only if the block completes.

    The temporary name is hidden, unique and keeps the suffix (writers such as savefig pick the format
    from it); the writer creates the file, so it gets the permissions any new file gets. `durable` fsyncs
    the file before the rename, so a power cut cannot leave a renamed but empty file. On any error the
    temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{next(_written)}-{os.urandom(3).hex()}{_TMP}{path.suffix}")
    try:
        yield tmp
        if durable:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
