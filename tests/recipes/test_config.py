from dataclasses import dataclass, field
from typing import Literal

import pytest

from lzn.recipes.config import ConfigError, load_yaml, merge, parse_set


@dataclass
class Inner:
    lr: dict[str, float] = field(default_factory=lambda: {"encoder": 1e-4})
    steps: int = 10
    amp: str | None = None

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclass
class Outer:
    batch_size: int = 32
    solver: Literal["euler", "dpm3"] = "dpm3"
    sizes: tuple[int, ...] = (1, 2)
    train: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


@dataclass
class Kw:
    kwargs: dict = field(default_factory=lambda: {"a": {"x": 1}, "b": 3})
    lr: dict[str, float] | float = field(default_factory=lambda: {"m": 1.0})


def test_merge_nested_and_typed():
    cfg = merge(Outer(), {"batch_size": 64, "train": {"steps": 5, "lr": {"decoder": 2}}, "sizes": [3, 4, 5]})
    assert cfg.batch_size == 64 and cfg.train.steps == 5
    assert cfg.train.lr == {"encoder": 1e-4, "decoder": 2.0}  # mappings merge key by key
    assert cfg.sizes == (3, 4, 5) and Outer().train.steps == 10 and Outer().train.lr == {"encoder": 1e-4}


def test_mappings_merge_recursively_and_scalars_replace_them():
    cfg = merge(Outer(), {"train": {"lr": {"encoder": 3e-4}}})
    assert cfg.train.lr == {"encoder": 3e-4}
    nested = merge(Kw(), {"kwargs": {"a": {"y": 2}}})
    assert nested.kwargs == {"a": {"x": 1, "y": 2}, "b": 3}
    assert merge(Kw(), {"lr": 0.5}).lr == 0.5  # a number replaces a per-module mapping
    assert merge(Kw(lr=0.5), {"lr": {"m": 0.1}}).lr == {"m": 0.1}


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("5E-5", 5e-5), (".5", 0.5), ("-2.5e+3", -2500.0),
                                        ("1.0e-3", 1e-3), ("3", 3), ("0x10", 16)])
def test_numbers_in_the_usual_forms_parse(text, value):
    parsed = parse_set([f"train.lr.encoder={text}"])["train"]["lr"]["encoder"]
    assert parsed == value and type(parsed) is type(value)
    assert merge(Outer(), parse_set([f"train.lr.encoder={text}"])).train.lr["encoder"] == float(value)


def test_meaningless_values_are_refused_with_their_key():
    with pytest.raises(ConfigError, match=r"^train\.steps must be >= 0, got -1$"):
        merge(Outer(), {"train": {"steps": -1}})
    with pytest.raises(ConfigError, match=r"^batch_size must be positive"):
        merge(Outer(), {"batch_size": 0})


def test_bad_set_items():
    for item, match in [("oops", "key=value"), (".lr=1", "dotted key"), ("a=[1,", "not a valid YAML value")]:
        with pytest.raises(ConfigError, match=match):
            parse_set([item])


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
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)
    p.write_bytes(b"lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml(p)
    p.write_text("train: {lr: 1e-4}\n")
    assert load_yaml(p) == {"train": {"lr": 1e-4}}
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(p)
