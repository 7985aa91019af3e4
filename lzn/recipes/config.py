"""Typed configs from dataclasses plus overrides (YAML files, ``--set key=value``), checked strictly.

Overrides merge: a section (a nested dataclass) or a mapping-valued key (``train.lr``, ``encoder.kwargs``)
takes the override's keys one by one and keeps the others; any other value is replaced. An unknown key
names the closest valid one; a value of the wrong type names the expected type; a value that is the
right type but meaningless (a NaN learning rate) is refused by the dataclass's own checks, with the key.

Why not OmegaConf: its structured configs cannot type ``lr: dict[str, float] | float`` (unions with
containers) or ``Literal`` choices, both of which our configs use; this file is the part we need.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:  # annotations only: the protocol every dataclass instance satisfies
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config: an instance of a dataclass


class ConfigError(ValueError):
    """A config key or value is wrong; the message says which and what is expected."""


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:  # Optional[X]: X's own message says what is expected
            raise ConfigError(errors[0] + (" (or null)" if type(None) in args else ""))
        raise ConfigError(f"{key}: {value!r} is not a valid {_name(hint)}")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a hint is a class, never an instance
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return merge(hint(), value, prefix=f"{key}.")
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(hint) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def merge(config: T, overrides: dict[str, Any], prefix: str = "") -> T:
    """A copy of dataclass ``config`` with nested ``overrides`` merged in, type-checked and validated."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {overrides!r}")
    cls = type(config)
    fields, hints = _fields(cls), _hints(cls)
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            # a section: a config field holds dataclass instances, never dataclass classes
            changes[key] = merge(cast("DataclassInstance", current), value, prefix=f"{prefix}{key}.")
        elif isinstance(current, dict) and isinstance(value, dict):
            changes[key] = _coerce(_merged(current, value), hints[key], f"{prefix}{key}")
        else:
            changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # the dataclass's own checks name the field first
        raise ConfigError(f"{prefix}{err}") from None


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in key by key (recursively for mappings)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merged(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


# PyYAML implements YAML 1.1, where a float needs a dot: `1e-4` and `5E-5` would be strings. This
# resolver reads the forms people type (1e-4, 5E-5, 1.5e3, .5) as floats; plain integers stay ints.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$")


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that also reads ``1e-4``, ``5E-5`` and ``.5`` as floats."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def unique_keys(loader: Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
        """A mapping whose keys are distinct: a repeated key would silently drop the first value."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, unique_keys)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["train.lr.encoder=1e-4", "batch_size=64"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. batch_size=64), got {item!r}")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is set to a value and also used as a section")
        if not all(parts):
            raise ConfigError(f"--set expects a dotted key such as train.lr.encoder, got {key.strip()!r}")
        import yaml

        try:
            node[parts[-1]] = yaml_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: {raw!r} is not a valid YAML value ({str(err).splitlines()[0]})") from None
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping of config keys (floats as in :func:`yaml_load`)."""
    import yaml

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory; expected a YAML file of config keys")
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist (expected a YAML mapping of config keys)")
    try:
        data = yaml_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text; expected a YAML mapping of config keys") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a YAML mapping of config keys, got {type(data).__name__}")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
