"""Exponential moving average of a module's weights with the warm-up decay of method.md §9.3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lzn.training.schedules import ema_decay


class EMA:
    """Shadow copy of a module's floating-point state (parameters and buffers).

    ``update(module)``: shadow <- shadow - (1 - d_k)(shadow - theta) with d_k = min(d, (1+k)/(10+k)),
    k = number of earlier updates. Integer buffers (e.g. BatchNorm's batch counter) are copied.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> float:
        """One EMA step towards the module's current state; returns the decay used."""
        d = ema_decay(self.num_updates, self.decay)
        for key, value in module.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1.0 - d)
            else:
                shadow.copy_(value)
        self.num_updates += 1
        return d

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's state with the shadow (in place, same devices and dtypes)."""
        for key, value in module.state_dict().items():
            value.copy_(self.shadow[key])

    @contextmanager
    def swapped_into(self, module: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the shadow into ``module``; its own state is restored on exit."""
        backup = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for key, value in module.state_dict().items():
                    value.copy_(backup[key])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the module; differing keys: {sorted(missing)}")
        self.num_updates = int(state["num_updates"])
        with torch.no_grad():
            for key, value in state["shadow"].items():
                self.shadow[key].copy_(value)
