"""`torchrun --nproc_per_node=2 -m lzn train ...` runs with gloo on CPU and writes one run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _final_weights(run: Path) -> dict:
    import torch

    ckpt = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    state = torch.load(ckpt, weights_only=False)
    return {k: v for k, v in state["modules"]["encoder"].items()}


def test_two_launchers_on_loopback_train_on_shards_like_one_launcher(tmp_path):
    """Section 3 of the scale issue: `torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d` twice on this
    machine (one process each) trains the representation recipe on shards into one run folder, resumes on
    both, and ends with the weights of a single launcher's two processes."""
    import torch

    from lzn.data import shard_source

    shard_source("digits", tmp_path / "shards", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT)}

    def lzn_args(out: Path, steps: int) -> list[str]:
        args = ["-m", "lzn", "train", "representation", "--preset", "digits", "--out", str(out)]
        for item in sets("representation") + [f"train.steps={steps}", "data.name=shards",
                                               f"data.root={tmp_path / 'shards'}", "data.workers=1"]:
            args += ["--set", item]
        return args

    def two_launchers(out: Path, steps: int) -> None:
        port = _free_port()
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                    "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=lzn-{port}"]
        procs = [subprocess.Popen(launcher + lzn_args(out, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env, cwd=ROOT) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        assert sum(o.count("run folder:") for o, _ in outs) == 1  # global rank 0 prints and writes

    two_launchers(tmp_path / "nodes", 3)
    assert [p.name for p in sorted((tmp_path / "nodes" / "checkpoints").glob("*.pt"))] == \
        ["step-000000002.pt", "step-000000003.pt"]
    two_launchers(tmp_path / "nodes", 5)  # resumed from step 3 on both "machines"
    single = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(single + lzn_args(tmp_path / "one", 5), capture_output=True, text=True, timeout=300,
                          env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _final_weights(tmp_path / "nodes"), _final_weights(tmp_path / "one")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = json.loads((tmp_path / "nodes" / "results.json").read_text())
    assert res["steps"] == 5 and 0.0 <= res["probe_accuracy"] <= 1.0


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z"  # exited, not yet reaped


def _start_long_run(out: Path) -> tuple[subprocess.Popen, list[int]]:
    """torchrun with two ranks on a run of many steps, once it has logged two steps and written its first
    checkpoint (the log line of a step comes before its checkpoint); and the ranks' pids."""
    import time

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lzn", "train", "joint", "--preset", "digits", "--out", str(out)]
    for item in sets("joint") + ["train.steps=1000"]:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        log = out / "metrics.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 2 and any((out / "checkpoints").glob("step-*.pt")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    ranks = _children(proc.pid)
    assert len(ranks) == 2
    return proc, ranks


def test_killing_the_launcher_stops_its_ranks_and_the_rerun_takes_the_folder_over(tmp_path):
    """kill -9 of torchrun: the ranks stop (no orphan keeps training), the lock they leave is taken over, and
    the run resumes from its last checkpoint with no step logged twice."""
    import signal
    import time

    from lzn.cli.main import main

    out = tmp_path / "run"
    proc, ranks = _start_long_run(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline and not all(_gone(r) for r in ranks):
        time.sleep(0.2)
    assert all(_gone(r) for r in ranks)
    assert (out / ".lock").is_file()  # left by the killed rank 0
    done = max(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt"))
    args = ["train", "joint", "--preset", "digits", "--out", str(out)]
    for item in sets("joint") + [f"train.steps={done + 1}"]:
        args += ["--set", item]
    assert main(args) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == done + 1 and not (out / ".lock").exists()


def _rank_of(pid: int) -> int:
    """The RANK torchrun gave process ``pid`` (from its environment)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in env if v.startswith(b"RANK=")).split(b"=", 1)[1])


@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_rank_ends_in_one_line_naming_the_rerun(tmp_path, killed):
    """kill -9 of either rank: the other one says that it stopped because a peer did, and how to resume."""
    import signal

    proc, ranks = _start_long_run(tmp_path / "run")
    os.kill(next(pid for pid in ranks if _rank_of(pid) == killed), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"error: rank {1 - killed} stopped" in err and "another rank of this run stopped first" in err, err[-3000:]
    assert "rerun the same command to resume" in err
