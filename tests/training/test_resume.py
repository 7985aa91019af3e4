"""Resume exactness: an interrupted run continued from its checkpoint replays the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from lzn.training import latest_checkpoint, load_checkpoint
from tests.training.toy import make_trainer, params_of


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def _reference(tmp_path: Path, dec_budget: int = 8) -> tuple[dict[int, float], dict[str, torch.Tensor]]:
    trainer = make_trainer(tmp_path / "straight", steps=10, budgets={"dec": dec_budget})
    trainer.fit()
    return _losses(tmp_path / "straight"), params_of(trainer)


def _final_ema_weight(tmp_path: Path, name: str) -> torch.Tensor:
    return load_checkpoint(latest_checkpoint(tmp_path / "straight"))["ema"][name]["shadow"]["weight"]


def test_resume_after_discarding_the_trainer_is_exact(tmp_path):
    losses, params = _reference(tmp_path)
    run = tmp_path / "resumed"
    first = make_trainer(run, steps=6, budgets={"dec": 8})
    first.fit()
    # metrics from iterations the checkpoint does not cover (a crash between checkpoints) get replaced
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "loss": 123.0}) + "\n" + '{"step": 8, "lo')
    del first
    second = make_trainer(run, steps=10, budgets={"dec": 8})
    second.fit()
    assert second.step == 10 and second.frozen("dec")
    resumed = _losses(run)
    assert sorted(resumed) == list(range(1, 11))
    assert all(resumed[s] == losses[s] for s in range(1, 11))  # exact, not approximate
    assert all(torch.equal(params[k], v) for k, v in params_of(second).items())
    for name in ("enc", "dec"):
        assert torch.equal(second.emas[name].shadow["weight"], _final_ema_weight(tmp_path, name))


def test_a_decayed_run_resumes_on_the_same_curve(tmp_path):
    straight = make_trainer(tmp_path / "straight", steps=10, lr_decay="linear", checkpoint_every=3)
    straight.fit()

    def crash(trainer, step):
        if step == 7:
            raise KeyboardInterrupt

    run = tmp_path / "crashed"
    first = make_trainer(run, steps=10, lr_decay="linear", checkpoint_every=3)
    first.hooks = [(1, crash)]
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert load_checkpoint(latest_checkpoint(run))["step"] == 6  # the crash lost iteration 7
    second = make_trainer(run, steps=10, lr_decay="linear", checkpoint_every=3)
    second.fit()
    assert _losses(run) == _losses(tmp_path / "straight")
    assert all(torch.equal(params_of(straight)[k], v) for k, v in params_of(second).items())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_resume_after_sigkill_is_exact(tmp_path):
    losses, params = _reference(tmp_path, dec_budget=4)  # frozen before the checkpoint
    run = tmp_path / "killed"
    pid = os.fork()  # a real process, killed for real right after its checkpoint at step 6
    if pid == 0:
        try:
            trainer = make_trainer(run, steps=10, checkpoint_every=6, budgets={"dec": 4})
            trainer.hooks = [(6, lambda tr, step: os.kill(os.getpid(), signal.SIGKILL))]
            trainer.fit()
        finally:
            os._exit(1)  # only reached if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000000006.pt"]
    assert max(_losses(run)) == 6
    trainer = make_trainer(run, steps=10, budgets={"dec": 4})
    trainer.fit()
    resumed = _losses(run)
    assert sorted(resumed) == list(range(1, 11))
    assert all(resumed[s] == losses[s] for s in range(1, 11))
    assert all(torch.equal(params[k], v) for k, v in params_of(trainer).items())


def test_fit_on_a_finished_run_does_nothing(tmp_path):
    make_trainer(tmp_path, steps=3).fit()
    before = (tmp_path / "metrics.jsonl").read_text()
    trainer = make_trainer(tmp_path, steps=3)
    last = json.loads(before.splitlines()[-1])
    assert trainer.fit() == last and trainer.step == 3  # the last logged row, not an empty one
    assert (tmp_path / "metrics.jsonl").read_text() == before


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "items_per_s"} for r in rows]  # a timing, never replayed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_logged_rows_replay_when_the_checkpoint_is_between_log_steps(tmp_path):
    settings = dict(steps=8, log_every=4, checkpoint_every=3)
    make_trainer(tmp_path / "straight", **settings).fit()
    run = tmp_path / "killed"
    pid = os.fork()  # killed right after the checkpoint at step 3, in the middle of the 1..4 window
    if pid == 0:
        try:
            trainer = make_trainer(run, **settings)
            trainer.hooks = [(3, lambda tr, step: os.kill(os.getpid(), signal.SIGKILL))]
            trainer.fit()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert not (run / "metrics.jsonl").exists() or _rows(run) == []
    make_trainer(run, **settings).fit()
    straight = _rows(tmp_path / "straight")
    assert [r["step"] for r in straight] == [4, 8]
    assert _rows(run) == straight  # bit-identical rows: the window of steps 1..3 came with the checkpoint
