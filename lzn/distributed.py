"""The only module that touches torch.distributed. Without a process group every function is the
identity (one process, rank 0 of 1), so the same code runs on a laptop and under torchrun.

method.md §4: anchors are gathered from all workers *with* gradients, concatenated in rank order, so
local sample j on rank r owns global anchor r * B + j (§4.1); class counts are all-reduced (§3.4, §4.3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def init_from_env() -> bool:
    """Join the process group that torchrun describes (WORLD_SIZE > 1): nccl on CUDA, gloo on CPU.

    Returns whether a multi-process group is active. Safe to call twice and without torchrun.
    """
    if is_active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def stop_with_launcher(command: str = "train") -> None:
    """Under torchrun (Linux): this process is killed when its launcher dies (``prctl(PR_SET_PDEATHSIG,
    SIGKILL)``), so a launcher killed with ``kill -9`` leaves no rank training on as an orphan; a launcher
    already gone (this process re-parented to init) stops it at once. And when torchrun stops this rank
    (SIGTERM: another rank failed or was killed) it ends with one line saying so and how to resume.
    Without torchrun: nothing."""
    import signal
    import sys

    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return

    def stopped(signum: int, frame: object) -> None:
        print(f"lzn {command}: error: rank {launched_rank()} stopped by torchrun: another rank of this run stopped "
              "first (killed, or failed: see above); rerun the same command to resume from the last checkpoint",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1: the kernel's kill, even mid-collective
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def shutdown() -> None:
    """Leave the process group cleanly: wait for every rank, then destroy it (no-op without one)."""
    if is_active():
        dist.barrier()
        dist.destroy_process_group()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    return rank() == 0


def launched_rank() -> int:
    """This process's rank as torchrun launched it (``RANK``), valid before joining the process group
    and after leaving it: the command line prints results on rank 0 only."""
    return int(os.environ.get("RANK", "0"))


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather (B, ...) from every rank -> (world * B, ...), rank-major, gradients routed back."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather(x: Tensor) -> Tensor:
    """All-gather without gradients (evaluation, metrics): (B, ...) -> (world * B, ...)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks (a new tensor; no gradient)."""
    if world_size() == 1:
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_true(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank iff ``flag`` is True on every rank (e.g. all losses finite)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def global_offset(local_batch: int) -> int:
    """Index of this rank's first sample in the rank-major gathered batch (method.md §4.1)."""
    return rank() * local_batch


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each ``.grad`` by its mean over ranks, in place (one flat all-reduce).

    With anchors gathered by ``gather_with_grad``, the mean of the per-rank gradients is the gradient
    of the global-mean loss (method.md §4.2). Parameters without a gradient on this rank count as zero, so
    every rank must pass the same parameter list in the same order.
    """
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def pick_device(requested: str | None) -> torch.device:
    """``requested`` (cpu, cuda, cuda:1), checked against this machine; default: CUDA if present."""
    if not requested:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"unknown device {requested!r}; expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ValueError(f"device {requested!r} requested, but {why} (torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r} requested, but only {torch.cuda.device_count()} CUDA devices exist")
    elif dev.type != "cpu":
        raise ValueError(f"device {requested!r} is not supported; expected cpu, cuda or cuda:N")
    return dev
