"""train.compile: validated by TrainConfig, checked when an LZN recipe is built, passed to the latent flow
(the compiled flow itself is compared with the eager one in tests/core/test_compiled.py)."""

from __future__ import annotations

import pytest
import torch

from lzn.core import compiled, zones
from lzn.recipes.runner import RECIPES, resolve_config
from lzn.training import TrainConfig
from tests.recipes.tiny import sets


@pytest.mark.parametrize("value", ["yes", 1, None, "flow"])
def test_bad_compile_values_raise(value):
    with pytest.raises(ValueError, match="^compile must be true or false"):
        TrainConfig(lr=1e-3, steps=1, compile=value)


def test_compile_defaults_off():
    assert TrainConfig(lr=1e-3, steps=1).compile is False


def _info():  # type: ignore[no-untyped-def]
    from lzn.recipes.common import DataInfo

    return DataInfo(channels=1, size=8, num_classes=10, num_train=1000)


@pytest.mark.parametrize("name", ["generation", "joint"])
def test_recipe_step_passes_train_compile_to_the_flow(name, monkeypatch):
    seen = []
    real = zones.latents

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("compile"))
        return real(*args, **{**kwargs, "compile": False})  # the flag is what is tested here, not the compiler

    monkeypatch.setattr(zones, "latents", spy)
    for flag in (False, True):
        cfg = resolve_config(name, "digits", sets=sets(name) + [f"train.compile={str(flag).lower()}"])
        rec = RECIPES[name](cfg, _info())
        x, y = torch.rand(64, 1, 8, 8) * 2 - 1, torch.arange(64) % 10
        out = rec.step((x, y), 0)
        assert out.loss is not None and torch.isfinite(out.loss)
    assert seen == [False, True]


def test_missing_compiler_fails_when_the_recipe_is_built(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    cfg = resolve_config("generation", "digits", sets=sets("generation") + ["train.compile=true"])
    with pytest.raises(RuntimeError, match=r"^train\.compile .*C\+\+ compiler"):
        RECIPES["generation"](cfg, _info())
    cfg = resolve_config("generation", "digits", sets=sets("generation"))
    RECIPES["generation"](cfg, _info())  # off: no compiler needed


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1GiB"])
def test_bad_flow_memory_values_raise(value):
    with pytest.raises(ValueError, match="^flow_memory must be an integer >= 1"):
        TrainConfig(lr=1e-3, steps=1, flow_memory=value)


@pytest.mark.parametrize("name", ["generation", "joint", "representation"])
def test_recipe_step_runs_the_flow_within_train_flow_memory(name, monkeypatch):
    """train.flow_memory (method.md §2.8) is the budget of the step's latent flows; null: the device's."""
    from lzn.core import budget

    seen = []
    real = zones.latents

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(budget.resolve(kwargs.get("flow_memory"), torch.device("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(zones, "latents", spy)
    for value in ("null", "123456"):
        cfg = resolve_config(name, "digits", sets=sets(name) + [f"train.flow_memory={value}"])
        rec = RECIPES[name](cfg, _info())
        x, y = torch.rand(64, 1, 8, 8) * 2 - 1, torch.arange(64) % 10
        out = rec.step((x, y), 0)
        assert out.loss is not None and torch.isfinite(out.loss)
    assert seen == [budget.default_budget(torch.device("cpu")), 123456]
