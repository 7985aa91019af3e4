"""The latent flow's memory budget: how many rows of responsibilities it forms at once, and whether a
flow keeps them for its backward pass instead of recomputing them (method.md §2.8).

The flow's largest temporaries are (rows, n) matrices: logits, responsibilities w and their gradients,
about ``TEMPORARIES`` of them alive at once per block of rows. A budget of ``M`` bytes allows blocks of
``M // (TEMPORARIES * n * itemsize)`` rows (at least one). When the whole flow's responsibilities,
one (B, n) matrix per step, fit beside one block, the forward flow keeps them and its backward skips
their recomputation. Every choice gives the same numbers: rows of w are independent softmaxes, and a
kept w is the one the backward would recompute; only the order of the float sums in the anchor
gradient follows the blocks.

Which budget applies, first match wins: the ``flow_memory`` keyword of a zone function; the innermost
``with flow_memory(bytes):`` (``train.flow_memory`` of the LZN recipes); the device's default
(``default_budget``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from typing import NamedTuple

import torch

TEMPORARIES = 4
"""(rows, n) matrices alive at once while one block is processed (logits / w, dL/dw, dL/dlogits)."""
FLOOR = 64 << 20
"""Least default budget (bytes)."""
CPU_FRACTION = 1 / 64
"""Default on CPU: this fraction of the memory available when the process first asks (at least ``FLOOR``)."""
CUDA_FRACTION = 1 / 8
"""Default on CUDA: this fraction of the device's free memory (plus what torch holds cached) at the call."""

_SCOPED: contextvars.ContextVar[int | None] = contextvars.ContextVar("lzn_flow_memory", default=None)


def check_flow_memory(value: object) -> int | None:
    """None (the default of the device) or a positive int of bytes."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"flow_memory must be null (the device's default) or a positive integer of bytes, "
                         f"got {value!r}")
    return value


@contextlib.contextmanager
def flow_memory(budget: int | None) -> Iterator[None]:
    """Within the block, latent flows without a ``flow_memory`` keyword use ``budget`` bytes (None: the
    device default). Training sets it from ``train.flow_memory``; blocks are chosen at the forward pass,
    so a backward run after the block uses the same ones."""
    token = _SCOPED.set(check_flow_memory(budget))
    try:
        yield
    finally:
        _SCOPED.reset(token)


def default_budget(device: torch.device) -> int:
    """Bytes a flow on ``device`` may use when nothing else is said (see ``CPU_FRACTION``, ``CUDA_FRACTION``)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return max(FLOOR, int((free + cached) * CUDA_FRACTION))
    return _host_budget()


@functools.lru_cache(maxsize=1)
def _host_budget() -> int:
    """Once per process, so that a run's blocks do not change from step to step."""
    return max(FLOOR, int(_available_host_bytes() * CPU_FRACTION))


def _available_host_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0  # unknown: the floor


def resolve(flow_memory: int | None, device: torch.device) -> int:
    """The budget in bytes: the keyword, else the innermost ``flow_memory`` block, else the default."""
    if flow_memory is not None:
        return flow_memory
    scoped = _SCOPED.get()
    return scoped if scoped is not None else default_budget(device)


class Blocks(NamedTuple):
    """How a flow over a (B, n) responsibility matrix runs: ``rows`` per block, and ``keep`` (one block,
    every step's w kept for backward)."""

    rows: int
    keep: bool


def blocks(budget: int, rows: int, cols: int, itemsize: int, steps: int = 1) -> Blocks:
    """Block rows of a (rows, cols) responsibility matrix within ``budget`` bytes, and whether ``steps``
    such matrices fit beside one block's temporaries (method.md §2.8)."""
    per_row = TEMPORARIES * max(cols, 1) * itemsize
    step_rows = max(1, min(rows, budget // per_row))
    keep = step_rows >= rows and (steps + TEMPORARIES) * rows * cols * itemsize <= budget
    return Blocks(step_rows, keep)


def row_blocks(rows: int, step: int) -> list[slice]:
    """Slices of ``step`` rows (the last one shorter) covering ``rows``."""
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)] if rows > step else [slice(0, rows)]
