"""Every file lzn writes goes through here. Whole files are written atomically: a temporary file in
the target's folder, fsync, ``os.replace``, so a crash at any point leaves either the old file or the
complete new one. Logs that grow line by line are appended with one ``write`` call per batch of whole
lines (a crash can cut only the last line, which readers skip). New files get the usual permissions:
``0o666`` minus the process umask, as ``open()`` would give them (not ``mkstemp``'s private 0600)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_UMASK_LOCK = threading.Lock()


def default_mode() -> int:
    """Permissions of a new regular file under the current umask (e.g. 0o644 with umask 022)."""
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def default_dir_mode() -> int:
    """Permissions of a new folder under the current umask (e.g. 0o755 with umask 022)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o777 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it onto ``path``; returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """``numpy.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    import numpy as np

    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def append_text(path: str | os.PathLike[str], text: str) -> Path:
    """Append whole lines (``text`` ends with a newline) in one write call; creates the file if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # open() applies the umask
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    return path
