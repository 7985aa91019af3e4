"""Chunked training steps (train.chunk_size, docs/method.md §9.7; issue 9 §2): peak memory and time per image
of one step at a large global batch in chunks, against the unchunked step at the chunk's size and at the
large batch.

Three configurations of one recipe (default joint) and preset, each measured in fresh subprocesses:

* ``chunked``: global batch ``--batch`` (2048) with ``train.chunk_size = --chunk`` (256);
* ``small``: the unchunked step at batch ``--chunk`` (256), the memory and speed the target compares against;
* ``big``: the unchunked step at batch ``--batch``, to show what chunking saves;

plus ``flow``: the step's parts that chunking cannot split at batch ``--batch`` (the latent flow over the whole
anchor set and, for joint, the alignment to the label anchors), on random anchors with no networks, run after
``big`` in its processes.

A step is what the training loop runs: forward, backward (the chunked closure runs its own) and Adam step,
gradients dropped; the batch is fetched before the clock starts. Each subprocess builds the recipe, runs one
warm-up step at the same shape (so Adam's moments exist), then ``--repeats`` timed steps: time is their
median. Peak memory is a step's growth over the resting state (parameters, Adam moments, the data set):

* CUDA: torch.cuda.max_memory_allocated over the timed steps (reset after the warm-up) minus
  memory_allocated at rest;
* CPU: a second process per configuration, whose glibc mmap threshold is fixed at 128 KiB (mallopt) before
  torch allocates anything, so that every freed tensor leaves the resident set and the resident peak follows
  the live tensors as on CUDA: its peak resident set size over one step after the warm-up (VmHWM, reset
  through /proc/self/clear_refs once free heap is returned with malloc_trim) minus the resident size at rest.
  The timing process's peak with glibc's defaults (the threshold grows up to 32 MiB and freed blocks below it
  stay resident) is reported as ``rss_peak_bytes``: what the OS sees, allocator retention included.

Data are synthetic (uniform images in [-1, 1] of the preset's shape, random labels), so no download is needed
and a batch may exceed the real training set. Prints JSON, then a one-line summary.

    python benchmarks/chunked.py                                   # joint, digits, CPU: 2048 in chunks of 256
    python benchmarks/chunked.py --device cuda --preset cifar10 --batch 2000 --chunk 250
    python benchmarks/chunked.py --batch 16 --chunk 4 --repeats 1  # smoke test
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the workers import torch; the parent process only starts them and reads their JSON
    import torch

SHAPES = {"digits": (1, 8, 10), "fashion": (1, 28, 10), "cifar10": (3, 32, 10)}  # channels, size, classes
RECIPE_NAMES = ("joint", "generation", "nogen", "representation")


# ---- memory probes -------------------------------------------------------------------------------------

MMAP_THRESHOLD = 128 * 1024  # bytes: glibc serves larger blocks by mmap and unmaps them on free
_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    return _LIBC


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fixed_mmap_threshold() -> bool:
    """From now on glibc maps every block over MMAP_THRESHOLD and returns it to the OS when freed (by
    default the threshold grows with the blocks freed, up to 32 MiB, and freed blocks stay resident in the
    heap), so that the peak resident size follows the live tensors, as max_memory_allocated does on CUDA."""
    libc = _libc()
    return bool(libc and hasattr(libc, "mallopt") and libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD


def _cpu_rest() -> tuple[int, bool]:
    """Resident bytes at rest, after collecting garbage and returning free heap to the OS, and whether the
    peak resident size (VmHWM) could be reset to it (through /proc/self/clear_refs)."""
    gc.collect()
    libc = _libc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (and ru_maxrss) to the current resident size
        reset = True
    except OSError:
        reset = False
    return _status_kib("VmRSS") * 1024, reset


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- one configuration, in its own process -------------------------------------------------------------

def _build(recipe: str, preset: str, batch: int, chunk: int | None, device: torch.device) -> Any:
    import torch

    from lzn.data import ImageDataset
    from lzn.recipes.common import data_info
    from lzn.recipes.runner import RECIPES, resolve_config

    channels, size, classes = SHAPES[preset]
    sets = [f"batch_size={batch}"] + ([f"train.chunk_size={chunk}"] if chunk is not None else [])
    cfg = resolve_config(recipe, preset, sets=sets)
    gen = torch.Generator().manual_seed(0)
    n = max(batch, 2 * (chunk or 1))
    data = ImageDataset(torch.rand(n, channels, size, size, generator=gen) * 2 - 1,
                        torch.randint(0, classes, (n,), generator=gen), classes, f"synthetic-{preset}")
    torch.manual_seed(0)
    rec = RECIPES[recipe](cfg, data_info(data))
    rec.attach_data(data)
    for m in rec.modules.values():
        m.to(device).train()
    return rec


def _worker(recipe: str, preset: str, batch: int, chunk: int | None, repeats: int, device_name: str,
            flow: bool, phase: str) -> dict[str, Any]:
    """``phase`` "time": warm-up, then ``repeats`` timed steps (on CUDA also the peak); "memory" (CPU, glibc's
    mmap threshold fixed at process start): warm-up, then one step for the peak."""
    import torch

    from lzn.recipes.joint import JointRecipe

    device = torch.device(device_name)
    rec = _build(recipe, preset, batch, chunk, device)
    params = [p for m in rec.modules.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)

    def train_step(i: int) -> float:
        """One loop iteration as lzn.training runs it (no clipping, EMA or AMP); seconds of forward, backward
        and optimizer, after the batch is fetched."""
        torch.manual_seed(i)
        batch_data = rec.batches(i)
        _sync(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = rec.step(batch_data, i)
        if out.backward is not None:  # the chunked closure (method.md §9.7)
            out.backward(1.0)
        else:
            out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    def flow_step(i: int) -> float:
        """The unsplittable part at this batch: latents over all anchors (B, q) and, for joint, the alignment
        to the label anchors, forward and backward, on random anchors (no encoder, no decoder)."""
        torch.manual_seed(i)
        _sync(device)
        start = time.perf_counter()
        anchors = torch.randn(batch, rec.cfg.latent_dim, device=device, requires_grad=True)  # (B, q)
        latent = rec.lzn.latents_from_anchors(anchors, noise_scale=1.0)  # (B, q)
        loss = latent.square().mean()
        if isinstance(rec, JointRecipe):  # joint and nogen
            y = torch.randint(0, SHAPES[preset][2], (batch,), device=device)
            loss = loss + rec.alignment(latent, y, {})
        loss.backward()
        del anchors, latent, loss
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    n_params = sum(p.numel() for p in params)
    out: dict[str, Any] = {"batch": batch, "chunk": chunk, "threads": torch.get_num_threads(),
                           "parameters": n_params, "gradient_bytes": sum(p.numel() * p.element_size() for p in params)}
    out.update(_measure(train_step, repeats if phase == "time" else 1, device))
    out["seconds_per_image"] = out["step_seconds"] / batch
    if flow:  # after the step, in the same process: its own warm-up, rest and peak
        out["flow"] = _measure(flow_step, repeats if phase == "time" else 1, device)
    return out


def _measure(fn: Any, repeats: int, device: torch.device) -> dict[str, Any]:
    """One warm-up call of ``fn(i) -> seconds`` at the same shape (Adam's moments, allocator pools, kernels),
    then ``repeats`` measured calls: their median seconds and their peak bytes over the resting state."""
    import torch

    fn(0)
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        rest = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        rest, reset = _cpu_rest()
        if not reset:
            raise RuntimeError("cannot reset the peak resident size through /proc/self/clear_refs")
    times = [fn(1 + i) for i in range(repeats)]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status_kib("VmHWM") * 1024
    return {"step_seconds": statistics.median(times), "times": times, "rest_bytes": rest,
            "peak_bytes": max(peak - rest, 0)}


def _run(args: argparse.Namespace, batch: int, chunk: int | None, flow: bool = False) -> dict[str, Any]:
    """One configuration: on CUDA one process; on CPU a timing process with glibc's defaults (whose peak is
    reported as ``rss_peak_bytes``) and a memory process with the mmap threshold fixed (``peak_bytes``)."""
    timed = _start(args, batch, chunk, flow, "time")
    if args.device != "cpu":
        return timed
    mem = _start(args, batch, chunk, flow, "memory")
    timed["rss_peak_bytes"], timed["peak_bytes"], timed["rest_bytes"] = (timed["peak_bytes"], mem["peak_bytes"],
                                                                        mem["rest_bytes"])
    if flow:  # its resident peak with glibc's defaults would show the big step's leftovers: not reported
        timed["flow"].update(peak_bytes=mem["flow"]["peak_bytes"], rest_bytes=mem["flow"]["rest_bytes"])
    return timed


def _start(args: argparse.Namespace, batch: int, chunk: int | None, flow: bool, phase: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", args.recipe, args.preset, str(batch),
           str(chunk or 0), str(args.repeats), args.device, str(int(flow)), phase]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"chunked: the {phase} worker for batch {batch}, chunk {chunk} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="joint", choices=RECIPE_NAMES)
    parser.add_argument("--preset", default="digits", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=2048, help="global batch of the chunked step")
    parser.add_argument("--chunk", type=int, default=256, help="train.chunk_size, and the batch of the reference step")
    parser.add_argument("--repeats", type=int, default=3, help="measured steps per configuration (after one warm-up)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        recipe, preset, batch, chunk, repeats, device, flow, phase = args.worker
        if phase == "memory" and not _fixed_mmap_threshold():  # before torch allocates anything
            sys.exit("chunked: cannot fix glibc's mmap threshold (mallopt); no clean CPU peak")
        print(json.dumps(_worker(recipe, preset, int(batch), int(chunk) or None, int(repeats), device, flow == "1",
                                 phase)))
        return
    if not 1 <= args.chunk < args.batch:
        parser.error(f"--chunk must be at least 1 and below --batch ({args.batch}), got {args.chunk}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda[:i], got {args.device!r}")

    chunked = _run(args, args.batch, args.chunk)
    small = _run(args, args.chunk, None)
    big = _run(args, args.batch, None, flow=True)
    flow = big.pop("flow")
    if args.device == "cpu":
        method = ("CPU: peak resident set (VmHWM, reset through /proc/self/clear_refs after malloc_trim) minus the "
                  "resident set at rest, over one step after a warm-up, in a process whose glibc mmap threshold is "
                  "fixed at 128 KiB from its start (freed tensors leave the resident set: the peak follows the live "
                  "tensors); rss_peak_bytes: the same over the timed steps with glibc's default settings (allocator "
                  "retention included)")
    else:
        method = "CUDA: torch.cuda.max_memory_allocated over the timed steps minus memory_allocated at rest"
    ref_peak, ref_time = max(small["peak_bytes"], 1), small["seconds_per_image"]
    report = {
        "recipe": args.recipe, "preset": args.preset, "device": args.device, "threads": chunked["threads"],
        "batch": args.batch, "chunk": args.chunk, "repeats": args.repeats,
        "data": "synthetic uniform images in [-1, 1] of the preset's shape, random labels",
        "memory_method": method + "; rest: parameters, Adam moments, data set, after a warm-up step",
        "time_method": f"median over {args.repeats} steps after one warm-up: forward, backward, Adam step",
        "chunked": chunked, "small": small, "big": big, "flow": flow,
        "chunked_peak_over_small": chunked["peak_bytes"] / ref_peak,
        "chunked_time_per_image_over_small": chunked["seconds_per_image"] / ref_time,
        "chunked_time_per_image_over_big": chunked["seconds_per_image"] / big["seconds_per_image"],
        "big_peak_over_small": big["peak_bytes"] / ref_peak,
        "flow_peak_over_small": flow["peak_bytes"] / ref_peak,
        **({"chunked_rss_peak_over_small": chunked["rss_peak_bytes"] / max(small["rss_peak_bytes"], 1),
            "big_rss_peak_over_small": big["rss_peak_bytes"] / max(small["rss_peak_bytes"], 1)}
           if all(p.get("rss_peak_bytes") is not None for p in (chunked, small, big)) else {}),
        "targets": {"chunked_peak_over_small": 1.3, "chunked_time_per_image_over_small": 1.5},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    mib = 2.0**20
    rss = (f"; resident set with glibc's defaults {report['chunked_rss_peak_over_small']:.2f}x"
           if "chunked_rss_peak_over_small" in report else "")
    print(f"chunked ({args.recipe}, {args.preset}, {args.device}): batch {args.batch} in chunks of {args.chunk}: "
          f"peak {report['chunked_peak_over_small']:.2f}x the batch-{args.chunk} step (target <= 1.3x; "
          f"{chunked['peak_bytes'] / mib:.1f} vs {small['peak_bytes'] / mib:.1f} MiB{rss}), "
          f"{report['chunked_time_per_image_over_small']:.2f}x its time per image (target <= 1.5x), "
          f"{report['chunked_time_per_image_over_big']:.2f}x the unchunked batch-{args.batch} step's; "
          f"unchunked batch {args.batch}: peak {report['big_peak_over_small']:.1f}x "
          f"({big['peak_bytes'] / mib:.1f} MiB); latent flow alone at batch {args.batch}: "
          f"peak {report['flow_peak_over_small']:.2f}x")


if __name__ == "__main__":
    main()
