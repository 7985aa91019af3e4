"""The generic loop on toy models: learning, per-module LRs, freezing, non-finite skips, EMA, logging."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from lzn.training import StepOutput, TrainConfig, Trainer
from lzn.training.schedules import warmup_factor
from tests.training.toy import batch_of, make_modules, make_step_fn, make_trainer, params_of


def test_toy_regression_learns(tmp_path):
    trainer = make_trainer(tmp_path, steps=150, lr=0.05, warmup_steps=10, log_every=10, noisy=False)
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 151, 10))
    assert rows[-1]["loss"] < 0.05 * rows[0]["loss"]
    assert rows[-1]["items_per_s"] > 0 and rows[-1]["skipped_nonfinite_loss"] == 0
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and float(table[-1]["loss"]) == pytest.approx(rows[-1]["loss"])
    assert {"step", "loss", "mae", "grad_norm", "lr_enc", "lr_dec", "items_per_s"} <= set(table[0])


def test_per_module_lrs_and_warmup_reach_the_right_groups(tmp_path):
    trainer = make_trainer(tmp_path, steps=4, lr={"enc": 1e-3, "dec": 5e-2}, warmup_steps=4, warmup_start=0.25)
    groups = {g["module"]: g for g in trainer.optimizer.param_groups}
    assert {id(p) for p in groups["enc"]["params"]} == {id(p) for p in trainer.modules["enc"].parameters()}
    assert {id(p) for p in groups["dec"]["params"]} == {id(p) for p in trainer.modules["dec"].parameters()}
    assert groups["enc"]["betas"] == (0.9, 0.999) and groups["enc"]["eps"] == 1e-8
    assert groups["enc"]["weight_decay"] == 0
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_enc"] for r in rows] == pytest.approx([1e-3 * f for f in (0.25, 0.5, 0.75, 1.0)])
    assert [r["lr_dec"] for r in rows] == pytest.approx([5e-2 * f for f in (0.25, 0.5, 0.75, 1.0)])


def test_lr_decay_follows_each_module_budget(tmp_path):
    trainer = make_trainer(tmp_path, steps=12, lr={"enc": 1e-2, "dec": 4e-2}, budgets={"dec": 7}, warmup_steps=3,
                           warmup_start=0.5, lr_decay="cosine")
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]

    def naive(k: int, budget: int) -> float:  # warm-up 0.5, 0.75, 1 then a half cosine from iteration 2
        warm = min(1.0, 0.5 + 0.25 * k)
        return warm * (1.0 if k < 2 else 0.5 * (1 + math.cos(math.pi * (k - 2) / (budget - 2))))

    assert [r["lr_enc"] for r in rows] == pytest.approx([1e-2 * naive(k, 12) for k in range(12)])
    assert [r["lr_dec"] for r in rows] == pytest.approx([4e-2 * naive(k, 7) for k in range(7)] + [0.0] * 5)
    assert rows[-1]["lr_enc"] < 1e-2 * 0.03  # the last iteration is near the end of the cosine
    with pytest.raises(ValueError, match="lr_decay must be null .* got 'cos'"):
        TrainConfig(lr=1e-3, steps=3, lr_decay="cos")


def test_first_step_matches_a_hand_written_adam_step(tmp_path):
    trainer = make_trainer(tmp_path, steps=1, grad_clip=None, noisy=False, warmup_steps=1)
    ref = make_modules()
    before = {n: m.weight.detach().clone() for n, m in ref.items()}
    x, y = batch_of(0)
    loss = ((ref["dec"](ref["enc"](x)) - y) ** 2).mean()
    loss.backward()
    trainer.fit()
    for n, lr in (("enc", 1e-2), ("dec", 2e-2)):  # Adam's first step moves each weight by -lr*sign(g)
        expected = before[n] - lr * ref[n].weight.grad / (ref[n].weight.grad.abs() + 1e-8)
        torch.testing.assert_close(trainer.modules[n].weight.detach(), expected)


def test_gradient_clipping_bounds_the_global_norm(tmp_path):
    modules = make_modules()
    seen = []
    step_fn = make_step_fn(modules)

    def steep(batch, step):  # a gradient far above the clipping threshold
        out = step_fn(batch, step)
        return StepOutput(out.loss * 1e4, out.metrics)

    cfg = TrainConfig(lr=1e-3, steps=1, grad_clip=0.5, ema_decay=0, progress=False, log_every=1)
    trainer = Trainer(modules, steep, batch_of, cfg, tmp_path)
    orig_step = trainer.optimizer.step

    def recording_step(*a, **k):
        grads = [p.grad for m in modules.values() for p in m.parameters()]
        seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        return orig_step(*a, **k)

    trainer.optimizer.step = recording_step
    row = trainer.fit()
    assert row["grad_norm"] > 100 and float(seen[0]) == pytest.approx(0.5, rel=1e-4)


def test_freezing_after_budget(tmp_path):
    modules = make_modules()
    calls: list[str] = []
    cfg = TrainConfig(lr={"enc": 1e-2, "dec": 1e-2}, budgets={"enc": 8, "dec": 3}, ema_decay=0.9,
                      warmup_steps=1, progress=False, log_every=1, checkpoint_every=None)
    trainer = Trainer(modules, make_step_fn(modules, calls), batch_of, cfg, tmp_path)
    assert trainer.total_steps == 8
    snapshots = {}

    def snapshot(tr, step):
        snapshots[step] = (params_of(tr), {n: e.num_updates for n, e in tr.emas.items()},
                           {n: tr.ema_state_dict(n) for n in tr.emas})

    trainer.hooks = [(1, snapshot)]
    trainer.fit()
    # the decoder trained on iterations 0..2 and has been frozen since, with Adam momentum still around
    for step in range(3, 9):
        for key, value in snapshots[step][0].items():
            if key.startswith("dec."):
                assert torch.equal(value, snapshots[3][0][key]), (step, key)
        assert snapshots[step][1] == {"enc": step, "dec": 3}
        assert torch.equal(snapshots[step][2]["dec"]["weight"], snapshots[3][2]["dec"]["weight"])
    assert not torch.equal(snapshots[8][0]["enc.weight"], snapshots[3][0]["enc.weight"])
    assert calls == [f"{s}:{'live' if s < 3 else 'frozen'}" for s in range(8)]  # frozen still runs forward
    assert trainer.frozen("dec") and not trainer.frozen("enc")  # enc's budget ends with the run
    assert all(not p.requires_grad for p in modules["dec"].parameters())
    assert all(p not in trainer.optimizer.state for p in modules["dec"].parameters())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_dec"] > 0 for r in rows] == [True] * 3 + [False] * 5


def test_nonfinite_loss_skips_the_whole_step(tmp_path):
    modules = make_modules()
    base = make_step_fn(modules)

    def step_fn(batch, step):
        out = base(batch, step)
        return StepOutput(out.loss * (math.nan if step in (1, 2) else 1.0), out.metrics)

    cfg = TrainConfig(lr=1e-2, steps=4, ema_decay=0.9, warmup_steps=10, progress=False, log_every=1)
    trainer = Trainer(modules, step_fn, batch_of, cfg, tmp_path)
    snaps = []
    trainer.hooks = [(1, lambda tr, k: snaps.append((params_of(tr), tr.opt_steps, tr.emas["dec"].num_updates)))]
    trainer.fit()
    for a, b in ((0, 1), (0, 2)):
        assert all(torch.equal(snaps[a][0][k], snaps[b][0][k]) for k in snaps[a][0])
    assert [s[1] for s in snaps] == [1, 1, 1, 2] and [s[2] for s in snaps] == [1, 1, 1, 2]
    assert trainer.skipped == {"nonfinite_loss": 2, "nonfinite_grad": 0}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_nonfinite_loss"] for r in rows] == [0, 1, 2, 2]
    assert "loss" not in rows[1] and math.isfinite(rows[3]["loss"])


def test_nonfinite_gradient_advances_neither_optimizer_nor_warmup_nor_ema(tmp_path):
    modules = make_modules()
    base = make_step_fn(modules)

    def step_fn(batch, step):
        out = base(batch, step)
        if step == 1:  # finite loss (sqrt(0) = 0) whose gradient is NaN (inf * 0)
            out = StepOutput(out.loss + (modules["enc"].bias * 0).sum().sqrt(), out.metrics)
        return out

    cfg = TrainConfig(lr=1e-2, steps=3, ema_decay=0.9, warmup_steps=10, progress=False, log_every=1)
    trainer = Trainer(modules, step_fn, batch_of, cfg, tmp_path)
    snaps = []
    trainer.hooks = [(1, lambda tr, k: snaps.append((params_of(tr), tr.opt_steps, tr.emas["enc"].num_updates)))]
    trainer.fit()
    assert all(torch.equal(snaps[0][0][k], snaps[1][0][k]) for k in snaps[0][0])
    assert [s[1] for s in snaps] == [1, 1, 2] and [s[2] for s in snaps] == [1, 1, 2]
    assert all(p.grad is None for m in modules.values() for p in m.parameters())
    assert trainer.skipped == {"nonfinite_loss": 0, "nonfinite_grad": 1}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(rows[1]["loss"]) and "grad_norm" not in rows[1]
    assert rows[1]["skipped_nonfinite_grad"] == 1
    # the warm-up clock did not move: step 2 uses the LR of the second successful step
    assert rows[2]["lr_enc"] == pytest.approx(1e-2 * warmup_factor(1, 10))


def test_ema_weights_swap_in_eval_mode_and_restore(tmp_path):
    trainer = make_trainer(tmp_path, steps=3, ema_decay={"dec": 0.5})
    assert set(trainer.emas) == {"dec"}
    seen = {}

    def hook(tr, step):
        live = params_of(tr)
        with tr.ema_weights() as swapped:
            assert set(swapped) == {"dec"} and not swapped["dec"].training
            assert torch.equal(tr.modules["dec"].weight, tr.ema_state_dict("dec")["weight"])
            assert torch.equal(tr.modules["enc"].weight, live["enc.weight"])  # no EMA: untouched
            seen[step] = tr.modules["dec"].weight.detach().clone()
        assert tr.modules["dec"].training
        assert all(torch.equal(v, params_of(tr)[k]) for k, v in live.items())

    trainer.hooks = [(2, hook)]
    trainer.fit()
    assert list(seen) == [2]
    with pytest.raises(KeyError, match="no EMA"):
        with trainer.ema_weights("enc"):
            pass


def test_config_validation(tmp_path):
    modules = make_modules()
    step_fn = make_step_fn(modules)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(lr=1.0)
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(lr=1.0, steps=1, amp="fp8")
    with pytest.raises(ValueError, match="unknown modules"):
        Trainer(modules, step_fn, batch_of, TrainConfig(lr=1.0, budgets={"encoder": 3}), tmp_path)
    with pytest.raises(ValueError, match="no learning rate"):
        Trainer(modules, step_fn, batch_of, TrainConfig(lr={"enc": 1.0}, steps=2), tmp_path)
    trainer = Trainer(modules, lambda b, s: torch.zeros(2), batch_of, TrainConfig(lr=1.0, steps=1), tmp_path)
    with pytest.raises(ValueError, match="scalar loss"):
        trainer.fit()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, amp):
    trainer = make_trainer(tmp_path, steps=20, amp=amp, lr=0.05, warmup_steps=1, log_every=10, noisy=False)
    seen_dtypes = []
    inner = trainer.step_fn

    def step_fn(batch, step):
        out = inner(batch, step)
        seen_dtypes.append(trainer.modules["enc"](batch[0]).dtype)
        return out

    trainer.step_fn = step_fn
    rows = []
    trainer.hooks = [(10, lambda tr, k: rows.append(json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])))]
    trainer.fit()
    assert seen_dtypes[0] == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert all(p.dtype == torch.float32 for m in trainer.modules.values() for p in m.parameters())
    assert rows[-1]["loss"] < rows[0]["loss"] and trainer.opt_steps > 0
