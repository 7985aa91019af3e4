from dataclasses import dataclass, field
from typing import Literal

import pytest

from lzn.recipes.config import ConfigError, load_yaml, merge, parse_set


@dataclass
class Inner:
    lr: dict[str, float] = field(default_factory=lambda: {"encoder": 1e-4})
    steps: int = 10
    amp: str | None = None


@dataclass
class Outer:
    batch_size: int = 32
    solver: Literal["euler", "dpm3"] = "dpm3"
    sizes: tuple[int, ...] = (1, 2)
    train: Inner = field(default_factory=Inner)


def test_merge_nested_and_typed():
    cfg = merge(Outer(), {"batch_size": 64, "train": {"steps": 5, "lr": {"decoder": 2}}, "sizes": [3, 4, 5]})
    assert cfg.batch_size == 64 and cfg.train.steps == 5 and cfg.train.lr == {"decoder": 2.0}
    assert cfg.sizes == (3, 4, 5) and Outer().train.steps == 10  # defaults untouched


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"batch_sise": 3}, "unknown config key 'batch_sise'; did you mean 'batch_size'"),
        ({"train": {"stepz": 3}}, r"train.stepz.*did you mean 'train.steps'"),
        ({"batch_size": "big"}, "batch_size: expected an integer"),
        ({"solver": "rk4"}, r"solver: 'rk4' is not one of \['euler', 'dpm3'\]"),
        ({"train": 3}, "train: expected a mapping"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ConfigError, match=match):
        merge(Outer(), overrides)


def test_parse_set_and_yaml(tmp_path):
    assert parse_set(["train.steps=7", "solver=euler", "train.amp=null"]) == {
        "train": {"steps": 7, "amp": None}, "solver": "euler"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["oops"])
    p = tmp_path / "c.yaml"
    p.write_text("batch_size: 8\n")
    assert merge(Outer(), load_yaml(p)).batch_size == 8
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(p)
