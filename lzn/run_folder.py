"""One writer per run folder: ``RUN_DIR/.lock`` names the process that trains into the folder.

``lzn train`` takes the lock before its first write and gives it back when it ends (done, failed or
interrupted). A second ``lzn train`` on the same folder is refused with one line that names the holder
(process id, host, command, since when). A lock whose holder is gone (killed, its machine's process table
no longer lists it) is taken over; a lock held on another host cannot be checked from here, so it is refused
with the command that removes it once that run is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"


class RunFolderBusy(RuntimeError):
    """The run folder is held by another live process."""


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "(comm)" (state first), None where there is no such file."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid it names
    one process, even after the pid is reused. None where /proc is not there."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 3 (state) is fields[0], field 22 (starttime) fields[19]


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process a lock names still runs (assumed so when it cannot be checked)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process table: cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _stat(pid)
    if fields is not None and fields[0] in ("Z", "X"):
        return False  # exited; only its entry is left (its parent has not reaped it)
    start = holder.get("start")
    return start is None or fields is None or fields[19] == start


def _short(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def describe(holder: dict[str, Any]) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return (f"process {holder.get('pid')} on {holder.get('host')} (since {when}: "
            f"{holder.get('command') or 'unknown command'})")


def _read(path: Path) -> dict[str, Any] | None:
    for _ in range(20):  # a lock being written right now: its content follows within milliseconds
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            text = ""
        try:
            holder = json.loads(text)
            if isinstance(holder, dict):
                return holder
        except json.JSONDecodeError:
            pass
        time.sleep(0.05)
    return {}  # unreadable: treated as a lock of unknown holder


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock`` (the folder must exist)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
              "since": time.time(), "command": _short(" ".join(["lzn", *sys.argv[1:]]))}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:
                    continue  # released meanwhile
                mine = holder.get("pid") == me["pid"] and holder.get("host") == me["host"]
                if holder and (mine or not _alive(holder)):
                    if _read(self.path) == holder:  # still that stale lock: take it over
                        self.path.unlink(missing_ok=True)
                    continue
                who = describe(holder) if holder else "a process that left an unreadable lock"
                raise RunFolderBusy(
                    f"{self.path.parent} is in use by {who}; one run writes into a folder at a time: wait for it "
                    f"or stop it (if it is gone, e.g. on another machine, remove {self.path})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunFolderBusy(f"{self.path.parent}: could not take {self.path} (other processes keep taking it)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = _read(self.path)
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
