"""Checkpoint files: atomic writes, keep-last-K, find the latest, clear errors on bad files.

Layout: ``run_dir/checkpoints/step-000001234.pt``, one file per checkpoint, the number being the
count of completed iterations. A file is written to a hidden temporary name in the same folder,
fsynced and renamed with ``os.replace``, so a crash at any point leaves either the complete new file
or no new file; readers only ever see complete checkpoints.

A checkpoint that cannot be read (truncated, overwritten, wrong format) raises
:class:`CheckpointError` naming the file. The loader never falls back silently to an older file:
a damaged checkpoint means something outside the trainer went wrong (atomic writes rule out a crash
during saving), and the user should decide: delete the file to resume from the previous one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lzn.atomic import atomic_write
from lzn.run_folder import RunFolder

FORMAT = "lzn.training/1"
_NAME = re.compile(r"^step-(\d{9,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used."""


def checkpoint_dir(run_dir: str | os.PathLike[str]) -> Path:
    return RunFolder(run_dir).checkpoints


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:09d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in the run, oldest first (temp files ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    path = atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; CheckpointError names a bad file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, garbage bytes, unpickling errors all land here
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc}); "
            "delete it to resume from the previous checkpoint"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an {FORMAT} checkpoint")
    return state


def live_weights(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """The latest checkpoint's live (not EMA-averaged) weights by module name, when the run kept an EMA of
    at least one module (an exported model holds the EMA weights); None when it kept none, or has no
    checkpoint, so there is nothing but the exported weights to evaluate."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    state = load_checkpoint(path)
    if not state.get("ema"):
        return None
    return dict(state["modules"])


def prune_checkpoints(run_dir: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and stale temp files; returns what went."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    doomed = [p for _, p in list_checkpoints(run_dir)[:-keep_last]]
    folder = checkpoint_dir(run_dir)
    if folder.is_dir():
        doomed += [p for p in folder.glob(".step-*.tmp")]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_finite_weights(modules: Mapping[str, torch.nn.Module]) -> None:
    """Refuse to export weights that training made NaN or infinite (names the modules)."""
    bad = [n for n, m in modules.items() if not all(bool(torch.isfinite(p).all()) for p in m.parameters())]
    if bad:
        raise RuntimeError(f"training produced NaN or infinite weights in {sorted(bad)}; nothing was exported "
                           "(lower train.lr, or check the data for extreme values)")
