"""Two gloo processes, each on half of every batch, end where one process on the full batch ends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from lzn import distributed
from lzn.training import TrainConfig, Trainer
from tests.gloo import start_workers
from tests.training.toy import BATCH, batch_of, make_modules, make_step_fn

STEPS = 4


def _train(run_dir: Path, world: int, rank: int) -> dict[str, torch.Tensor]:
    modules = make_modules()
    local = BATCH // world

    def batches(step):
        x, y = batch_of(step)  # the global batch of this step; this rank takes its slice
        return x[rank * local : (rank + 1) * local], y[rank * local : (rank + 1) * local]

    cfg = TrainConfig(lr={"enc": 1e-2, "dec": 3e-2}, steps=STEPS, budgets={"dec": 3}, warmup_steps=2,
                      ema_decay=0.5, grad_clip=0.5, log_every=2, checkpoint_every=2, progress=False)
    trainer = Trainer(modules, make_step_fn(modules, noisy=False), batches, cfg, run_dir)
    trainer.fit()
    out = {f"{n}.{k}": v.clone() for n, m in modules.items() for k, v in m.state_dict().items()}
    out.update({f"ema.{n}.{k}": v.clone() for n, e in trainer.emas.items() for k, v in e.shadow.items()})
    return out


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    try:
        assert distributed.world_size() == world
        result = _train(Path(tmp) / "run2", world, rank)
        torch.save(result, Path(tmp) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()  # barrier, then destroy: no rank tears gloo down under another


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers (spawn re-imports torch: seconds)")
def test_two_processes_match_one_on_the_full_batch(tmp_path):
    single = _train(tmp_path / "run1", 1, 0)  # first, so forked workers inherit the warm imports
    start_workers(_worker, (2, str(tmp_path)), results=[tmp_path / f"rank{r}.pt" for r in range(2)],
                  start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # replicas stay identical
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    # only the main rank writes files; logged losses are means over ranks = the full-batch loss
    assert sorted(p.name for p in (tmp_path / "run2" / "checkpoints").iterdir()) == [
        "step-000000002.pt", "step-000000004.pt"]
    rows = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("run1", "run2")]
    for one, two in zip(*rows):
        assert one["step"] == two["step"]
        for key in ("loss", "mae", "grad_norm", "lr_enc", "lr_dec"):
            assert abs(one[key] - two[key]) <= 1e-5 * max(1.0, abs(one[key])), key
