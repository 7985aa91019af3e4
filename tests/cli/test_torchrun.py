"""`torchrun --nproc_per_node=2 -m lzn train ...` runs with gloo on CPU and writes one run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.recipes.tiny import sets

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lzn", "train", "joint", "--preset", "digits", "--out", str(out)]
    for item in sets("joint"):
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final_loss:") == 1 and proc.stdout.count("run folder:") == 1  # rank 0 prints
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 3 and 0.0 <= res["test_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # one writer (rank 0), one row per step
