"""A run folder (``lzn train --out RUN_DIR``): its layout, its readers, and its one writer.

The layout is named here and nowhere else: the runner, the training loop, the CLI, the report and the
quality studies take their paths from :class:`RunFolder` (the file names are the constants below).

```
RUN_DIR/
  run.yaml             recipe, data facts, resolved config, data fingerprint (read_run_file)
  .lock                the process that trains into the folder (RunLock)
  train_config.json    the training loop's settings
  checkpoints/         step-NNNNNNNNN.pt (lzn.training.checkpoint owns the file format)
  metrics.jsonl        one row of training metrics per logging step; metrics.csv the same as a table
  tensorboard/         optional
  samples/             step-NNNNNNNNN.png grids over training; lzn sample / retrieve / reconstruct defaults
  samples.png          the final sample grid; reconstructions.png the final reconstructions
  model/               the exported LZN (save_pretrained: a model folder, lzn.models.pretrained)
  classifier/          the classifier baseline's network (lzn.eval.save_classifier)
  results.json         the run's results (read_results)
  metrics.json         what `lzn evaluate` measured; report.html what `lzn report` wrote
```

One writer per folder: ``lzn train`` takes ``RUN_DIR/.lock`` before its first write and gives it back
when it ends (done, failed or interrupted). A second ``lzn train`` on the same folder is refused with one
line that names the holder (process id, host, command, since when). A lock whose holder is gone (killed, its
machine's process table no longer lists it) is taken over; a lock held on another host cannot be checked from
here, so it is refused with the command that removes it once that run is known to be gone.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_FILE = "run.yaml"
LOCK_FILE = ".lock"
TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "metrics.jsonl"
LOG_CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
SAMPLES_FILE = "samples.png"
RECONSTRUCTIONS_FILE = "reconstructions.png"
MODEL_DIR = "model"
CLASSIFIER_DIR = "classifier"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
_SAMPLE_GRID = re.compile(r"step-(\d+)\.png")


class _Entry:
    """A file or folder of every run folder: ``RunFolder(d).results`` is ``d / "results.json"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, run: RunFolder, owner: type | None = None) -> Path:
        return run.path / self.name


@dataclass(frozen=True, init=False)
class RunFolder:
    """The paths of one run folder's files and folders (none need exist)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    run_file = _Entry(RUN_FILE)
    lock = _Entry(LOCK_FILE)
    train_config = _Entry(TRAIN_CONFIG_FILE)
    checkpoints = _Entry(CHECKPOINTS_DIR)
    log = _Entry(LOG_FILE)  # metrics.jsonl
    log_csv = _Entry(LOG_CSV_FILE)
    tensorboard = _Entry(TENSORBOARD_DIR)
    samples_dir = _Entry(SAMPLES_DIR)
    samples = _Entry(SAMPLES_FILE)
    reconstructions = _Entry(RECONSTRUCTIONS_FILE)
    model = _Entry(MODEL_DIR)
    classifier = _Entry(CLASSIFIER_DIR)
    results = _Entry(RESULTS_FILE)
    metrics = _Entry(METRICS_FILE)  # lzn evaluate's
    report = _Entry(REPORT_FILE)

    def sample_grid(self, step: int) -> Path:
        """The grid of samples drawn after ``step`` training steps (``sample_every``)."""
        return self.samples_dir / f"step-{step:09d}.png"

    def sample_grids(self) -> list[tuple[int, Path]]:
        """(step, path) of every grid over training, in step order."""
        found = [(int(m.group(1)), p) for p in self.samples_dir.glob("step-*.png")
                 if (m := _SAMPLE_GRID.fullmatch(p.name))]
        return sorted(found)


class RunFolderError(ValueError):
    """A file of a run folder is missing or cannot be read; the message names it."""


def read_run_file(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in ``RUN_DIR/run.yaml`` (recipe, data_info, config, data_fingerprint), read as the runner
    wrote it (``yaml.safe_dump``). A RunFolderError for a missing, unreadable or malformed file."""
    import yaml

    run = RunFolder(run_dir)
    if not run.run_file.exists():
        raise RunFolderError(f"{run.path} is not an lzn run folder (no {RUN_FILE}); pass a folder made by `lzn train`")
    try:
        meta = yaml.safe_load(run.run_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunFolderError(f"{run.run_file} is not readable YAML: {' '.join(str(err).split())}") from None
    if not isinstance(meta, dict):
        raise RunFolderError(f"{run.run_file} must hold a YAML mapping (recipe, data_info, config)")
    return meta


def read_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in ``RUN_DIR/results.json`` (written when the run finishes). A RunFolderError for a
    missing, unreadable or malformed file."""
    path = RunFolder(run_dir).results
    if not path.exists():
        raise RunFolderError(f"{path.parent} has no {RESULTS_FILE} (it is written when training finishes)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: not UTF-8, or not JSON
        raise RunFolderError(f"{path} is not readable JSON: {' '.join(str(err).split())}") from None
    if not isinstance(results, dict):
        raise RunFolderError(f"{path} must hold a JSON object of results")
    return results


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
        self.path = RunFolder(run_dir).lock
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
