"""The benchmark scripts still run (tiny sizes); their figures live in the README, not in assertions."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_zones_benchmark_worker_runs_and_both_implementations_agree():
    losses = []
    for impl in ("ours", "naive"):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks/zones.py"), "--worker", impl, "32", "8", "4", "1"],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        rec = json.loads(out.stdout)
        assert rec["seconds"] > 0
        losses.append(rec["loss"])
    assert abs(losses[0] - losses[1]) < 1e-4 * max(1.0, abs(losses[1]))
