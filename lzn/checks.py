"""Value checks for typed configs and public arguments: each raises ``ValueError`` whose message
starts with the value's name and says what is expected, so a config layer can prefix the key path
(``train.`` + ``lr must be ...``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> None:
    """A finite number > 0 (learning rates, temperatures)."""
    v = _number(name, value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def non_negative(name: str, value: Any) -> None:
    """A finite number >= 0 (noise scales, loss weights)."""
    v = _number(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def in_range(name: str, value: Any, low: float, high: float, *, closed_high: bool = False) -> None:
    """``low <= value < high`` (or ``<= high`` with ``closed_high``)."""
    v = _number(name, value)
    ok = low <= v <= high if closed_high else low <= v < high
    if not ok:  # NaN fails every comparison
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}{bracket}, got {value!r}")


def at_least(name: str, value: Any, low: int) -> None:
    """An integer >= ``low`` (batch sizes, step counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def each(check: Any, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
    """Apply ``check`` to a single value or to every value of a mapping by module name."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            check(f"{name}.{key}", item, *args, **kwargs)
    else:
        check(name, value, *args, **kwargs)


def positive_int(name: str, value: Any) -> int:
    """A count >= 1 of a public argument (``k``, ``num``, ``batch_size``): any integral number (a numpy int
    too) but a bool; returned as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
