"""One generic training loop (method.md §9). It knows nothing about LZN: a recipe hands it named modules,
a ``step_fn(batch, step) -> StepOutput`` that computes the loss (or hands back a closure that runs its
own backward passes, ``StepOutput.backward``), and ``batches(step) -> batch``.

Conventions: ``step`` passed to ``batches``/``step_fn`` is the 0-based index of the iteration; the
trainer's ``step`` attribute, the logged ``step`` and the checkpoint number count *completed*
iterations. A module with budget B is trained on iterations 0..B-1 and frozen from iteration B on.
"""

from __future__ import annotations

import difflib
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lzn import distributed
from lzn.atomic import atomic_write_text
from lzn.run_folder import RunFolder
from lzn.training import checkpoint as ckpt
from lzn.training.config import AMP_DTYPES, StepFn, StepOutput, TrainConfig
from lzn.training.ema import EMA
from lzn.training.logging import MetricsWindow, MetricsWriter, ProgressBar
from lzn.training.schedules import decay_factor, step_seed, warmup_factor

Hook = tuple[int, Callable[["Trainer", int], None]]


class Trainer:
    """Adam with per-module LRs, warm-up, clipping, EMA, AMP, non-finite skips, staged freezing,
    checkpoint/resume and logging. ``hooks``: (every, fn) pairs; ``fn(trainer, step)`` runs on every
    rank after each ``every``-th completed iteration (so it may use collectives; write files only
    where ``distributed.is_main()``)."""

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        step_fn: StepFn,
        batches: Callable[[int], Any],
        config: TrainConfig,
        run_dir: str | Path,
        hooks: Sequence[Hook] = (),
    ) -> None:
        names = list(modules)
        lrs = _per_module(config.lr, names, "lr")
        missing = [n for n in names if n not in lrs and _has_params(modules[n])]
        if missing:
            raise ValueError(f"lr has no learning rate for modules {missing}; give one number, or one per module of {names}")
        if any(every < 1 for every, _ in hooks):
            raise ValueError("hook periods must be >= 1")
        self.modules, self.step_fn, self.batches, self.config = dict(modules), step_fn, batches, config
        self.run_dir, self.hooks = Path(run_dir), list(hooks)
        budgets = _per_module(config.budgets, names, "budgets")
        self.total_steps = config.steps if config.steps is not None else max(budgets.values())
        self.budgets = {n: budgets.get(n, self.total_steps) for n in names}
        self.base_lr = {n: float(lr) for n, lr in lrs.items()}
        self.optimizer = torch.optim.Adam(  # PyTorch defaults otherwise (method.md §9.1), one group per module
            [{"params": list(m.parameters()), "lr": lrs[n], "module": n} for n, m in modules.items() if _has_params(m)]
        )
        self.emas = {n: EMA(modules[n], d) for n, d in _per_module(config.ema_decay, names, "ema_decay").items() if d}
        first = next((p for m in modules.values() for p in m.parameters()), None)
        self.device = torch.device(config.device or (first.device if first is not None else "cpu"))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.step = 0  # completed iterations
        self.opt_steps = 0  # successful optimizer steps: the warm-up clock
        self.skipped = {"nonfinite_loss": 0, "nonfinite_grad": 0}
        self._frozen: set[str] = set()

    # ---- public helpers --------------------------------------------------------------------------

    def frozen(self, name: str) -> bool:
        return name in self._frozen

    def lrs(self) -> dict[str, float]:
        """Learning rate per module for the next optimizer step (0 for frozen modules): the warm-up factor
        (clocked by successful optimizer steps) times ``lr_decay``'s (clocked by iterations over the
        module's budget)."""
        cfg = self.config
        factor = warmup_factor(self.opt_steps, cfg.warmup_steps, cfg.warmup_start)
        return {n: 0.0 if self.frozen(n) else
                lr * factor * decay_factor(self.step, self.budgets[n], cfg.warmup_steps, cfg.lr_decay)
                for n, lr in self.base_lr.items()}

    @contextmanager
    def ema_weights(self, *names: str) -> Iterator[dict[str, nn.Module]]:
        """Swap EMA weights into the named modules (default: all with an EMA) and put them in eval
        mode; live weights and training flags come back on exit. Yields the affected modules."""
        names = names or tuple(self.emas)
        unknown = [n for n in names if n not in self.emas]
        if unknown:
            raise KeyError(f"no EMA for modules {unknown}; EMAs exist for {sorted(self.emas)}")
        with ExitStack() as stack:
            for n in names:
                module, was_training = self.modules[n], self.modules[n].training
                stack.enter_context(self.emas[n].swapped_into(module))
                stack.callback(module.train, was_training)
                module.eval()
            yield {n: self.modules[n] for n in names}

    def ema_state_dict(self, name: str) -> dict[str, Tensor]:
        """A copy of the module's state dict with EMA weights (for export / evaluation)."""
        if name not in self.emas:
            raise KeyError(f"no EMA for module {name!r}; EMAs exist for {sorted(self.emas)}")
        return {k: v.clone() for k, v in self.emas[name].shadow.items()}

    # ---- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "opt_steps": self.opt_steps, "skipped": dict(self.skipped),
            "modules": {n: m.state_dict() for n, m in self.modules.items()},
            "ema": {n: e.state_dict() for n, e in self.emas.items()},
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "config": asdict(self.config),
        }

    def save_checkpoint(self, **extra: Any) -> Path | None:
        """Write ``checkpoints/step-N.pt`` (main rank only; ``extra`` entries are stored beside the
        trainer's state) and prune to ``keep_last``."""
        if not distributed.is_main():
            return None
        path = ckpt.save_checkpoint({**self.state_dict(), **extra}, ckpt.checkpoint_path(self.run_dir, self.step))
        ckpt.prune_checkpoints(self.run_dir, self.config.keep_last)
        return path

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Restore modules, EMAs, optimizer and counters; returns the checkpoint's full state."""
        state = ckpt.load_checkpoint(path)
        try:
            for n, m in self.modules.items():
                m.load_state_dict(state["modules"][n])
            for n, e in self.emas.items():
                e.load_state_dict(state["ema"][n])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.opt_steps, self.skipped = state["step"], state["opt_steps"], dict(state["skipped"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"checkpoint {path} does not match this trainer: {exc}") from exc
        self._freeze_due(self.step)
        return state

    # ---- the loop --------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until ``total_steps``, resuming from the newest checkpoint in ``run_dir`` if any.
        Returns the last logged metrics row (on the main rank; also when there was nothing left to
        train, from ``metrics.jsonl``).

        Resume is exact on CPU: weights, optimizer, EMA, data order, random draws and the logged rows
        (the partial logging window is stored in the checkpoint) equal an uninterrupted run's; only
        the timing column ``items_per_s`` differs."""
        latest = ckpt.latest_checkpoint(self.run_dir)
        window = MetricsWindow()
        if latest is not None:
            state = self.load_checkpoint(latest)
            if distributed.is_main() and "window" in state:  # summed over ranks when saved
                window.load_state(state["window"])
        main, cfg = distributed.is_main(), self.config
        writer = MetricsWriter(self.run_dir, cfg.tensorboard, resume_step=self.step) if main else None
        last: dict[str, Any] = next((r for r in reversed(writer.rows) if "loss" in r), {}) if writer else {}
        if main:
            atomic_write_text(RunFolder(self.run_dir).train_config, json.dumps(asdict(cfg), indent=2) + "\n")
        bar = ProgressBar(self.total_steps, self.step, enabled=cfg.progress and main)
        try:
            while self.step < self.total_steps:
                values, items = self._iteration(self.step)
                window.add(values, items)
                self.step += 1
                k = self.step
                if k % cfg.log_every == 0 or k == self.total_steps:
                    last = self._metrics_row(k, window)
                    if writer is not None:
                        writer.write(last)
                bar.update(1, **{k_: v for k_, v in last.items() if k_ in ("loss", "items_per_s")})
                if (cfg.checkpoint_every and k % cfg.checkpoint_every == 0) or k == self.total_steps:
                    self.save_checkpoint(window=window.state(self.device))  # window.state: collective
                for every, fn in self.hooks:
                    if k % every == 0:
                        fn(self, k)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return last

    def _metrics_row(self, step: int, window: MetricsWindow) -> dict[str, Any]:
        """step, window means (loss first), LR per module as last used, cumulative skip counters."""
        means = window.read(self.device)  # collective: every rank logs at the same steps
        lrs = {f"lr_{g['module']}": 0.0 if self.frozen(g["module"]) else g["lr"] for g in self.optimizer.param_groups}
        return {"step": step, **{m: means[m] for m in sorted(means, key=lambda m: m != "loss")}, **lrs,
                **{f"skipped_{n}": v for n, v in self.skipped.items()}}

    def _iteration(self, step: int) -> tuple[dict[str, float], int | None]:
        """One iteration; returns the values to log and the local batch size."""
        self._seed(step)
        self._freeze_due(step)
        batch = self.batches(step)
        self.optimizer.zero_grad(set_to_none=True)
        amp = AMP_DTYPES.get(self.config.amp or "")
        with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
            out = self.step_fn(batch, step)
            out = out if isinstance(out, StepOutput) else StepOutput(out)
            if out.backward is not None:  # the step runs its own backward passes (method.md §9.7)
                scale = float(self.scaler.scale(torch.ones((), device=self.device)))  # 1.0 unless fp16
                loss_t = out.backward(scale)
            else:
                loss_t = out.loss
        assert loss_t is not None
        if loss_t.ndim != 0:
            raise ValueError(f"step_fn must return a scalar loss, got shape {tuple(loss_t.shape)}")
        loss = float(loss_t.detach())
        if not distributed.all_true(math.isfinite(loss), self.device):  # method.md §9.4: skip everywhere
            self.optimizer.zero_grad(set_to_none=True)  # a closure has already run its backward passes
            self.skipped["nonfinite_loss"] += 1
            return {}, None
        if out.backward is None:
            self.scaler.scale(loss_t).backward()
        params = [p for n, m in self.modules.items() if not self.frozen(n) for p in m.parameters() if p.requires_grad]
        distributed.average_gradients(params)
        self.scaler.unscale_(self.optimizer)
        with_grad = [p for p in params if p.grad is not None]
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(with_grad, clip))
        values = {"loss": loss, **{k: float(v.detach() if isinstance(v, Tensor) else v) for k, v in out.metrics.items()}}
        if distributed.all_true(math.isfinite(grad_norm), self.device):
            lrs = self.lrs()
            for group in self.optimizer.param_groups:
                group["lr"] = lrs[group["module"]]
            self.scaler.step(self.optimizer)
            self.opt_steps += 1
            for n, ema in self.emas.items():
                if not self.frozen(n):
                    ema.update(self.modules[n])
            values["grad_norm"] = grad_norm
        else:  # method.md §9.4: no optimizer, warm-up or EMA step on a non-finite gradient
            self.skipped["nonfinite_grad"] += 1
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return values, out.batch_size

    def _freeze_due(self, step: int) -> None:
        """Freeze modules whose budget is spent: no gradients, no optimizer state, no EMA updates."""
        for n, budget in self.budgets.items():
            if step >= budget and n not in self._frozen:
                self.modules[n].requires_grad_(False)
                for p in self.modules[n].parameters():
                    p.grad = None
                    self.optimizer.state.pop(p, None)
                self._frozen.add(n)

    def _seed(self, step: int) -> None:
        seed = step_seed(self.config.seed, distributed.rank(), step)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def _has_params(module: nn.Module) -> bool:
    return next(iter(module.parameters()), None) is not None


def _per_module(value: dict[str, Any] | Any, names: list[str], key: str) -> dict[str, Any]:
    """One value for every module, or a dict by module name that may only name known modules."""
    if not isinstance(value, dict):
        return dict.fromkeys(names, value)
    unknown = sorted(set(value) - set(names))
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{key} names unknown modules {unknown}{hint}; this recipe's modules: {names}")
    return dict(value)
