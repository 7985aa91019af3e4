"""Typed settings of the training loop and what a step function returns (spec §4.0 defaults)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepOutput:
    """What a step function returns: a scalar loss, extra metrics, and optionally the local batch size."""

    loss: Tensor
    metrics: dict[str, float | Tensor] = field(default_factory=dict)
    batch_size: int | None = None


StepFn = Callable[[Any, int], StepOutput | Tensor]  # (batch, 0-based iteration) -> loss


@dataclass
class TrainConfig:
    """Loop settings (spec §4.0 defaults). ``lr``/``ema_decay`` take one value for all modules or a
    dict by module name; a module missing from ``budgets`` trains for ``steps``, one missing from an
    ``ema_decay`` dict has no EMA (0 disables EMA)."""

    lr: dict[str, float] | float
    steps: int | None = None  # total iterations; default: the largest budget
    budgets: dict[str, int] = field(default_factory=dict)
    ema_decay: dict[str, float] | float = 0.9999
    warmup_steps: int = 5000
    warmup_start: float = 1 / 5000
    grad_clip: float | None = 1.0
    amp: str | None = None  # None (fp32), "bf16" or "fp16" (with a gradient scaler)
    checkpoint_every: int | None = 1000  # None: only at the end
    keep_last: int = 3
    log_every: int = 100
    seed: int = 0
    device: str | None = None  # autocast / collectives; default: where the first parameter lives
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.steps is None and not self.budgets:
            raise ValueError("TrainConfig needs `steps` or at least one module budget")
        if self.amp not in (None, *AMP_DTYPES):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        for name in ("log_every", "keep_last", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if (self.steps is not None and self.steps < 0) or any(b < 0 for b in self.budgets.values()):
            raise ValueError(f"steps and budgets must be >= 0, got {self.steps} and {self.budgets}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
