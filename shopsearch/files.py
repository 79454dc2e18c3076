"""Files that other processes read while they are written: one atomic writer, one cross-process lock,
and whether the process that owns a file (a pidfile, a journal) still runs.

Every state file of the project (a model's ``model.json``, a learning run's ``loop.json``,
training data) is written through :func:`write_text_atomic`: a temporary file in the same
directory, flushed and fsync'd, then renamed over the target with ``os.replace`` (atomic on
POSIX), so a reader sees the old file or the new one, never half of either, and a crash leaves
the old one. :func:`locked` serialises read-modify-write cycles across processes with
`filelock <https://py-filelock.readthedocs.io>`_ (the lock file sits beside the data).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> with locked(path.parent / ".lock"):
...     _ = write_json_atomic(path, {"b": 1, "a": [2]})
>>> read_json(path)
{'a': [2], 'b': 1}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` in one step (temp file in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented, key-sorted JSON (one trailing newline), written by :func:`write_text_atomic`."""
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path`` (UTF-8)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def locked(lock_path: str | os.PathLike, timeout: float = -1) -> FileLock:
    """An exclusive cross-process lock on ``lock_path`` (a context manager; ``timeout`` -1 waits forever)."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path), timeout=timeout)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0): read its state
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True
