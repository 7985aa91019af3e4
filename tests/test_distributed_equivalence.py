"""Two gloo processes with gathered anchors give the same parameter gradients as one process on the
concatenated batch (method.md §4.1, §4.2)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from lzn import distributed
from lzn.core import zones
from tests.gloo import start_workers

B, D, Q, WORLD = 6, 5, 4, 2


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, Q)).double()


def data():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(WORLD * B, D, generator=g, dtype=torch.float64)
    x2 = x1 + 0.1 * torch.randn(WORLD * B, D, generator=g, dtype=torch.float64)
    noise = torch.randn(WORLD * B, Q, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (WORLD * B,), generator=g)
    return x1, x2, noise, labels


def local_loss(model, x1, x2, noise, labels, label_anchors):
    """A CS2 alignment term plus a class-weighted CS3 label term, on this rank's slice."""
    a1 = model(x1)
    b = a1.shape[0]
    anchors1 = distributed.gather_with_grad(a1)
    offset = distributed.global_offset(b)
    lat = zones.latents(anchors1, noise, index=torch.arange(b) + offset, steps=5, solver="dpm3")
    anchors2 = distributed.gather_with_grad(model(x2))
    _, tp = zones.flow_back(lat, anchors2, steps=5, targets=torch.arange(b) + offset)
    counts = distributed.all_reduce_sum(torch.bincount(labels, minlength=3).double())
    logw = torch.log(counts / counts.sum())
    _, lp = zones.flow_back(lat, label_anchors, steps=8, log_weights=logw, targets=labels)
    return zones.alignment_loss(tp, form="log") + zones.alignment_loss(lp, form="prob") + lat.pow(2).mean()


def _worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = make_model()
        la = torch.nn.Parameter(torch.randn(3, Q, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
        x1, x2, noise, labels = (t[rank * B:(rank + 1) * B] for t in data())
        local_loss(model, x1, x2, noise, labels, la).backward()
        params = [*model.parameters(), la]
        distributed.average_gradients(params)
        if rank == 0:
            torch.save([p.grad for p in params], out_file)
    finally:
        distributed.shutdown()  # barrier first: a rank leaving early must not tear down gloo under the other


def test_two_processes_equal_one_process(tmp_path):
    model = make_model()
    la = torch.nn.Parameter(torch.randn(3, Q, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    local_loss(model, *data(), la).backward()
    want = [p.grad for p in [*model.parameters(), la]]

    out = tmp_path / "grads.pt"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    start_workers(_worker, (str(tmp_path / "init"), str(out)), results=[out], nprocs=WORLD)
    got = torch.load(out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
