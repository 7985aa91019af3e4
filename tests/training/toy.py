"""A tiny two-module regression used by the training-loop tests (no LZN code)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lzn.training import StepOutput, TrainConfig, Trainer

N_DATA, BATCH = 64, 8


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N_DATA, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    return x, y


def make_modules(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"enc": nn.Linear(4, 3), "dec": nn.Linear(3, 1)}


def batch_of(step: int, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data()
    idx = torch.randperm(N_DATA, generator=torch.Generator().manual_seed(step))[:batch]
    return x[idx], y[idx]


def make_step_fn(modules: dict[str, nn.Module], calls: list[str] | None = None, noisy: bool = True):
    def step_fn(batch, step):
        x, y = batch
        if noisy:  # consume every global RNG the trainer seeds, so resume tests see them
            x = x + 0.01 * torch.randn_like(x) + 0.001 * float(np.random.randn()) + 0.001 * random.random()
        h = modules["enc"](x)
        if calls is not None:
            calls.append(f"{step}:{'frozen' if not modules['dec'].weight.requires_grad else 'live'}")
        pred = modules["dec"](h)
        loss = ((pred - y) ** 2).mean()
        return StepOutput(loss, {"mae": (pred - y).abs().mean()}, batch_size=x.shape[0])

    return step_fn


def make_trainer(run_dir: Path | str, steps: int = 10, seed: int = 0, noisy: bool = True, **overrides) -> Trainer:
    modules = make_modules(seed)
    cfg = dict(lr={"enc": 1e-2, "dec": 2e-2}, steps=steps, warmup_steps=3, ema_decay=0.9,
               checkpoint_every=None, log_every=1, progress=False)
    cfg.update(overrides)
    return Trainer(modules, make_step_fn(modules, noisy=noisy), batch_of, TrainConfig(**cfg), run_dir)


def params_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in trainer.modules.items() for k, v in m.state_dict().items()}
