"""Metrics for the training loop: a per-window accumulator, JSONL + CSV files, optional TensorBoard,
and a tqdm progress bar. Files are written by the main rank only (the trainer decides who writes).

``metrics.jsonl`` is the record of truth, one JSON object per logged step; ``metrics.csv`` is
rewritten from it whenever a new column appears, so its header is always the union of all keys.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from typing import Any

import torch

from lzn import distributed
from lzn.atomic import append_text, atomic_write_text
from lzn.run_folder import RunFolder


class MetricsWindow:
    """Per-key sums and counts of step values since the last log, reduced over ranks when read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.items = 0
        self.start = time.perf_counter()

    def add(self, values: dict[str, float], items: int | None = None) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.items += items or 0

    def read(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Means over the window (steps and ranks) and items/s summed over ranks; then reset.

        Collective when distributed: every rank must call it at the same step with the same keys.
        """
        sums, counts, items = self._reduced(device)
        out = {k: s / counts[k] for k, s in sums.items()}
        if items:
            out["items_per_s"] = items / max(time.perf_counter() - self.start, 1e-9)
        self.reset()
        return out

    def state(self, device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
        """Sums and counts so far, summed over ranks (collective), for a checkpoint; no reset.

        Restored on one rank with :meth:`load_state`, the next logged row averages the same steps as
        an uninterrupted run would (throughput, a timing, starts afresh)."""
        sums, counts, _ = self._reduced(device)
        return {"sums": sums, "counts": counts}

    def _reduced(self, device: torch.device | str) -> tuple[dict[str, float], dict[str, float], float]:
        """(sums, counts, items) summed over ranks in one all-reduce (collective when distributed)."""
        keys = sorted(self.sums)
        packed = torch.tensor(
            [self.sums[k] for k in keys] + [self.counts[k] for k in keys] + [self.items], dtype=torch.float64
        )
        if distributed.world_size() > 1:
            packed = distributed.all_reduce_sum(packed.to(device)).cpu()
        values = packed.tolist()
        n = len(keys)
        return dict(zip(keys, values[:n])), dict(zip(keys, values[n:2 * n])), values[-1]

    def load_state(self, state: dict[str, dict[str, float]]) -> None:
        self.reset()
        self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self.counts = {k: int(v) for k, v in state.get("counts", {}).items()}


class MetricsWriter:
    """Appends rows to ``metrics.jsonl`` / ``metrics.csv`` (and TensorBoard if asked)."""

    def __init__(self, run_dir: str | os.PathLike[str], tensorboard: bool = False, resume_step: int = 0):
        run = RunFolder(run_dir)
        self.jsonl, self.csv = run.log, run.log_csv
        self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        self.rows = self._read_rows(resume_step)  # drop rows past the resume point (replayed steps)
        self.columns: list[str] = []
        self._rewrite()
        self.tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("tensorboard logging needs `pip install tensorboard`") from exc
            self.tb = SummaryWriter(log_dir=str(run.tensorboard), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        append_text(self.jsonl, json.dumps(row) + "\n")
        if any(k not in self.columns for k in row):
            self._rewrite()
        else:
            append_text(self.csv, _csv_text(self.columns, [row], header=False))
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def _read_rows(self, resume_step: int) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if row.get("step", 0) <= resume_step:
                rows.append(row)
        return rows

    def _rewrite(self) -> None:
        self.columns = list(dict.fromkeys(k for row in self.rows for k in row))
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        atomic_write_text(self.csv, _csv_text(self.columns, self.rows, header=True))


class ProgressBar:
    """tqdm bar (if tqdm is installed and ``enabled``); otherwise does nothing."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            import sys

            # redrawing ten times a second is for terminals; logs get a line every 30 s
            interval = 0.1 if sys.stderr.isatty() else 30.0
            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, desc="train", mininterval=interval)

    def update(self, n: int = 1, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _csv_text(columns: list[str], rows: list[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, columns)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
