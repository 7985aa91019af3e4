"""What the commands print: results on rank 0 only (torchrun starts one copy per process)."""

from __future__ import annotations

from typing import Any


def say(*args: Any) -> None:
    from lzn.distributed import launched_rank

    if launched_rank() == 0:
        print(*args, flush=True)
