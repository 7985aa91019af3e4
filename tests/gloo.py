"""Start gloo worker processes for the multi-process tests.

gloo can abort a process while the group is torn down ("terminate called without an active
exception", SIGABRT): it happens rarely, after the workers have computed and written their results, when one
rank closes its sockets while the other is still finishing the last barrier. Such a teardown abort
is tolerated here only when every result file the test reads was written; any other failure, or a SIGABRT
before the results exist, fails the test as usual.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessExitedException


def start_workers(fn: Callable[..., None], args: tuple[Any, ...], results: Sequence[Path], nprocs: int = 2,
                  start_method: str = "spawn") -> None:
    try:
        mp.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method=start_method)
    except ProcessExitedException as err:
        if err.signal_name != "SIGABRT" or not all(Path(p).is_file() for p in results):
            raise
        warnings.warn(f"a gloo worker aborted in teardown after writing its results ({err})", RuntimeWarning,
                      stacklevel=2)
