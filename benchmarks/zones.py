"""Speed and memory of the latent-zone core against a naive broadcast implementation (issue: foundation).

Workload (the CS2 training step of docs/method.md §6.4): anchors A1, A2 (n, q) with gradients, Euler latents of
all n samples over A1 (20 steps), reverse Euler flow over A2 (20 steps) recording the target
probabilities, log-form alignment loss, backward.

* ``ours``: lzn.core.zones (matmul logits, custom backward that recomputes the responsibilities).
* ``naive``: (B, n, q) differences per velocity evaluation, each evaluation wrapped in non-reentrant
  activation checkpointing, which is how the paper's release keeps memory in check (docs/method.md §2.8).

Each measurement runs in a fresh subprocess with the default flow memory budget (``lzn.core.budget``,
method.md §2.8; the JSON names it and the block rows it gives); peak memory is the peak resident set
size minus the resident size just before the workload, and the matmul fraction compares the workload
with fp32 GEMMs of the logits' shape timed in the same process right after it, so that a machine shared
with other work (the load average is reported) moves both alike. Prints one JSON object, then a
one-line summary.

    python benchmarks/zones.py              # full: n = 512 comparison, n = 4096 and n = 16384 throughput
    python benchmarks/zones.py --no-huge    # without n = 16384 (tens of minutes on two cores)
    python benchmarks/zones.py --quick      # small sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _naive_velocity(x: torch.Tensor, anchors: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    diff = x[:, None, :] - (1 - t) * anchors[None]  # (B, n, q)
    eps_hat = diff / t  # (B, n, q) implied noises
    w = torch.softmax(-0.5 * eps_hat.pow(2).sum(-1), dim=1)  # (B, n)
    v = (w[:, :, None] * (eps_hat - anchors[None])).sum(1)  # (B, q)
    return v, w


def _naive_step(a1: torch.Tensor, a2: torch.Tensor, z: torch.Tensor, steps: int) -> torch.Tensor:
    g = 1e-4
    x, h = (1 - g) * a1 + g * z, (1 - g) / steps
    for j in range(steps):
        v, _ = checkpoint(_naive_velocity, x, a1, g + j * h, use_reentrant=False)
        x = x + h * v
    targets = torch.arange(x.shape[0])
    best = None
    for j in range(steps):
        t = 1 - j / steps
        v, w = checkpoint(_naive_velocity, x, a2, t, use_reentrant=False)
        p = w[targets, targets]
        if j >= int(0.2 * steps):
            best = p if best is None else torch.maximum(best, p)
        x = x - (1 / steps) * v
    assert best is not None
    return -best.clamp_min(1e-38).log().mean()


def _our_step(a1: torch.Tensor, a2: torch.Tensor, z: torch.Tensor, steps: int) -> torch.Tensor:
    from lzn.core import zones

    lat = zones.latents(a1, z, steps=steps)
    _, tp = zones.flow_back(lat, a2, steps=steps, targets=torch.arange(a1.shape[0]))
    return zones.alignment_loss(tp, form="log")


def _worker(impl: str, n: int, q: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    a1 = (torch.randn(n, q) * 0.3).requires_grad_()
    a2 = (a1.detach() + 0.05 * torch.randn(n, q)).requires_grad_()
    z = torch.randn(n, q)
    fn = _our_step if impl == "ours" else _naive_step
    base = _rss_bytes()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = fn(a1, a2, z, steps)
        loss.backward()
        times.append(time.perf_counter() - start)
        a1.grad = a2.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # the machine's matmul throughput, measured around the workload in the same process
    flops = max(_matmul_flops(n, q), 0.0)
    out = {"seconds": min(times), "peak_bytes": max(peak - base, 0), "loss": float(loss), "matmul_flops": flops}
    if impl == "ours":
        from lzn.core import budget

        memory = budget.default_budget(torch.device("cpu"))
        rows, keep = budget.blocks(memory, n, n, 4, steps)
        out.update(flow_memory_bytes=memory, block_rows=rows, keeps_responsibilities=keep)
    return out


def _matmul_flops(n: int, q: int, rounds: int = 5, per_round: int = 8) -> float:
    """Best fp32 FLOP/s over several rounds of (n, q) @ (q, n) products, the shape of the logits."""
    a, b = torch.randn(n, q), torch.randn(n, q)
    out = torch.empty(n, n)
    torch.mm(a, b.t(), out=out)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            torch.mm(a, b.t(), out=out)
        best = min(best, (time.perf_counter() - start) / per_round)
    return 2 * n * n * q / best


def _run(impl: str, n: int, q: int, steps: int, repeats: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", impl, str(n), str(q), str(steps), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (n = 128 / 512)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-huge", action="store_true", help="skip n = 16384 (twice the paper's largest batch)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, n, q, steps, repeats = args.worker
        print(json.dumps(_worker(impl, int(n), int(q), int(steps), int(repeats))))
        return

    q, steps = 256, args.steps
    n_cmp, n_big, n_huge = (128, 512, 1024) if args.quick else (512, 4096, 16384)
    ours = _run("ours", n_cmp, q, steps, 3)
    naive = _run("naive", n_cmp, q, steps, 1)
    report: dict[str, Any] = {
        "threads": torch.get_num_threads(), "load_avg_1min_start": os.getloadavg()[0], "cpus": os.cpu_count(),
        "compare": {"n": n_cmp, "q": q, "steps": steps, "ours": ours, "naive_checkpointed": naive,
                    "time_ratio": ours["seconds"] / naive["seconds"],
                    "memory_ratio": ours["peak_bytes"] / max(naive["peak_bytes"], 1)},
        "large": _throughput(n_big, q, steps),
    }
    if not args.no_huge:
        report["huge"] = _throughput(n_huge, q, steps)
    report["load_avg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    c, lg = report["compare"], report["large"]
    line = (f"zones: n={n_cmp} time {c['time_ratio']:.1%} / peak memory {c['memory_ratio']:.1%} of naive+checkpoint "
            f"(target <= 5%); n={n_big} fwd+bwd {lg['seconds']:.2f}s, peak {lg['peak_bytes'] / 2**30:.2f} GiB "
            f"(target <= 1.5), {lg['matmul_fraction']:.0%} of matmul throughput (target >= 60%), "
            f"blocks of {lg['block_rows']} rows")
    if "huge" in report:
        h = report["huge"]
        line += (f"; n={n_huge} fwd+bwd {h['seconds']:.0f}s, peak {h['peak_bytes'] / 2**30:.2f} GiB (target <= 2), "
                 f"{h['matmul_fraction']:.0%} of matmul throughput (target >= 60%, goal 75%), blocks of "
                 f"{h['block_rows']} rows")
    load = max(report["load_avg_1min_start"], report["load_avg_1min_end"])
    print(line + f"; load average {load:.1f} on {report['cpus']} CPUs" + (" (machine loaded: absolute times noisy, "
          "fractions measured within one process)" if load > 0.5 * (report["cpus"] or 1) else ""))


def _throughput(n: int, q: int, steps: int) -> dict[str, float]:
    """One forward + backward of the CS2-shaped step at n anchors, in a fresh process, against the machine's
    fp32 matmul throughput at the logits' shape (measured in that process and in this one; the best counts)."""
    big = _run("ours", n, q, steps, 1)
    # forward matrix FLOPs: per velocity evaluation two (B, n, q) products; 2 x steps evaluations
    fwd_flops = 2 * steps * 2 * (2 * n * n * q)
    peak_flops = max(big["matmul_flops"], _matmul_flops(n, q))
    achieved = 3 * fwd_flops / big["seconds"]
    return {"n": n, "q": q, "steps": steps, **big, "matmul_gflops": peak_flops / 1e9,
            "achieved_gflops": achieved / 1e9, "matmul_fraction": achieved / peak_flops}


if __name__ == "__main__":
    main()
