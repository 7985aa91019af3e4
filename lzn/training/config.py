"""Typed settings of the training loop and what a step function returns (method.md §9 defaults)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lzn import checks
from lzn.training.schedules import LR_DECAYS

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepOutput:
    """What a step function returns: a scalar loss, extra metrics, and optionally the local batch size.

    A step that runs its own backward passes (e.g. a chunked step with gradient caching, method.md §9.7)
    returns ``loss=None`` and ``backward``: the loop calls ``backward(scale)`` under the same autocast as
    the step, with ``scale`` the gradient scaler's factor (1.0 without fp16). The closure accumulates
    ``scale`` times the loss's gradients into ``.grad`` (running its backward passes outside autocast,
    as the loop does), fills ``metrics`` and returns the detached, unscaled scalar loss; the loop then
    does everything else as for a plain loss (non-finite skip, averaging over processes, clipping,
    optimizer, EMA)."""

    loss: Tensor | None
    metrics: dict[str, float | Tensor] = field(default_factory=dict)
    batch_size: int | None = None
    backward: Callable[[float], Tensor] | None = None

    def __post_init__(self) -> None:
        if (self.loss is None) == (self.backward is None):
            raise ValueError("StepOutput needs exactly one of loss (the loop runs backward) and backward (a closure "
                             "that runs its own)")


StepFn = Callable[[Any, int], StepOutput | Tensor]  # (batch, 0-based iteration) -> loss


@dataclass
class TrainConfig:
    """Loop settings (method.md §9 defaults). ``lr``/``ema_decay`` take one value for all modules or a
    dict by module name; a module missing from ``budgets`` trains for ``steps``, one missing from an
    ``ema_decay`` dict has no EMA (0 disables EMA)."""

    lr: dict[str, float] | float
    steps: int | None = None  # total iterations; default: the largest budget
    budgets: dict[str, int] = field(default_factory=dict)
    ema_decay: dict[str, float] | float = 0.9999
    warmup_steps: int = 5000
    warmup_start: float = 1 / 5000
    lr_decay: str | None = None  # null: constant after warm-up (the paper); "cosine"/"linear" to 0 at each budget
    grad_clip: float | None = 1.0
    amp: str | None = None  # None (fp32), "bf16" or "fp16" (with a gradient scaler)
    checkpoint_every: int | None = 1000  # None: only at the end
    keep_last: int = 3
    log_every: int = 100
    seed: int = 0
    device: str | None = None  # autocast / collectives; default: where the first parameter lives
    progress: bool = True
    tensorboard: bool = False
    chunk_size: int | None = None  # exact chunked steps (method.md §9.7), read by recipes; None: off
    compile: bool = False  # the LZN recipes' latent flow through torch.compile (method.md §2.11), read by recipes
    flow_memory: int | None = None  # bytes for the latent flow's row blocks (method.md §2.8), read by recipes

    def __post_init__(self) -> None:
        """Values checked for meaning; each message starts with the field name (method.md §9)."""
        if self.steps is None and not self.budgets:
            raise ValueError("steps is missing: TrainConfig needs `steps` or at least one module budget")
        checks.each(checks.positive, "lr", self.lr)
        checks.each(checks.in_range, "ema_decay", self.ema_decay, 0.0, 1.0)
        if self.amp not in (None, *AMP_DTYPES):
            raise ValueError(f"amp must be null, 'bf16' or 'fp16', got {self.amp!r}")
        for name in ("log_every", "keep_last"):
            checks.at_least(name, getattr(self, name), 1)
        if self.checkpoint_every is not None:
            checks.at_least("checkpoint_every", self.checkpoint_every, 1)
        if self.steps is not None:
            checks.at_least("steps", self.steps, 1)
        checks.each(checks.at_least, "budgets", self.budgets, 0)
        checks.at_least("warmup_steps", self.warmup_steps, 0)
        checks.in_range("warmup_start", self.warmup_start, 0.0, 1.0, closed_high=True)
        if self.warmup_start == 0:
            raise ValueError("warmup_start must be > 0 (the first step's LR factor), got 0")
        if self.lr_decay is not None and self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be null (constant LR after warm-up) or one of {', '.join(LR_DECAYS)} "
                             f"(decay to 0 over each module's budget), got {self.lr_decay!r}")
        if self.grad_clip is not None:
            checks.positive("grad_clip", self.grad_clip)
        checks.at_least("seed", self.seed, 0)
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ValueError(f"chunk_size must be null (no chunking) or an integer >= 1 (samples per chunk on each "
                             f"process), got {self.chunk_size!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false (run the latent flow through torch.compile), got "
                             f"{self.compile!r}")
        if self.flow_memory is not None:
            checks.at_least("flow_memory", self.flow_memory, 1)
