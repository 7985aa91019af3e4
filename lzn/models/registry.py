"""Networks by name: an explicit table of classes, so saved models name their parts without class paths.

``build(name, **kwargs)`` constructs a network and remembers (name, kwargs) on it, which is what
``LatentZoningNetwork.save_pretrained`` writes to ``config.json``. Keyword arguments are checked
against what the network's constructor really accepts (``network_arguments``) before it runs, so a
typo or a value of the wrong type is one clear ``ValueError``, not a traceback from inside a layer.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from torch import nn

from lzn.models.candidates import CandidateDecoder
from lzn.models.ncsnpp import NCSNppConfig, ncsnpp_decoder, ncsnpp_encoder
from lzn.models.resnet import resnet18_encoder, resnet50_encoder
from lzn.models.small import SmallEncoder, SmallEncoderConfig, SmallUNet, SmallUNetConfig
from lzn.models.text import SmallTextEncoder, TextEncoder


class _Entry(NamedTuple):
    make: Callable[..., nn.Module]  # the class or factory function
    config: type | None = None  # the dataclass whose fields the constructor's **kwargs accept
    data: str = "image"  # the data type the network encodes or decodes (lzn.models.datatypes)


BUILT_IN: Mapping[str, _Entry] = MappingProxyType({
    "small_encoder": _Entry(SmallEncoder, SmallEncoderConfig),
    "small_unet": _Entry(SmallUNet, SmallUNetConfig),
    "resnet18_encoder": _Entry(resnet18_encoder),
    "resnet50_encoder": _Entry(resnet50_encoder),
    "ncsnpp_encoder": _Entry(ncsnpp_encoder, NCSNppConfig),
    "ncsnpp_decoder": _Entry(ncsnpp_decoder, NCSNppConfig),
    "minilm_text_encoder": _Entry(TextEncoder, data="text"),
    "small_text_encoder": _Entry(SmallTextEncoder, data="text"),
    "candidate_decoder": _Entry(CandidateDecoder, data="any"),
})
_TABLE: dict[str, _Entry] = dict(BUILT_IN)  # plus the networks users add with register_network

_CONFIG_OBJECT = "config"  # a config dataclass instance cannot be written to config.json: pass its fields


def constructor(name: str) -> Callable[..., nn.Module]:
    """The class or factory function registered as ``name``."""
    check_name(name)
    return _TABLE[name].make


def register_network(name: str, make: Callable[..., nn.Module] | str, attr: str | None = None, *,
                     data: str = "image", config: type | str | None = None) -> None:
    """Add a network to the table: ``make`` (a class or factory; or a module name with ``attr``, the class
    or factory in it) builds it; ``data`` names the data type it encodes or decodes; ``config``: the
    dataclass its ``**kwargs`` fill (or its name in that module). A model with this network can then be
    saved and loaded by name (docs/data-types.md)."""
    if not name.isidentifier():
        raise ValueError(f"a network name is an identifier, got {name!r}")
    if isinstance(make, str):
        if attr is None:
            raise TypeError("register_network(name, module, attr): give the class or factory's name in the module")
        module = importlib.import_module(make)
        make = getattr(module, attr)
        config = getattr(module, config) if isinstance(config, str) else config
    elif attr is not None or isinstance(config, str):
        raise TypeError("register_network(name, cls, data=..., config=ConfigClass): pass the classes themselves")
    assert callable(make) and not isinstance(config, str)
    entry = _Entry(make, config, data)
    if name in _TABLE and _TABLE[name] != entry:
        old = _TABLE[name].make
        raise ValueError(f"network {name!r} is already registered as {old.__module__}.{old.__qualname__}")
    _TABLE[name] = entry


def network_data_type(name: str) -> str:
    """The data type network ``name`` takes or gives ("image", "text", or "any" for a candidate decoder)."""
    check_name(name)
    return _TABLE[name].data


class _Networks(Mapping[str, Callable[..., nn.Module]]):
    """``NETWORKS[name](**kwargs)``: a read-only view of the table's constructors."""

    def __getitem__(self, name: str) -> Callable[..., nn.Module]:
        return _TABLE[name].make

    def __iter__(self) -> Iterator[str]:
        return iter(_TABLE)

    def __len__(self) -> int:
        return len(_TABLE)


NETWORKS: Mapping[str, Callable[..., nn.Module]] = _Networks()


def check_name(name: str) -> None:
    """Refuse a network name that is not in the table, with the closest known one."""
    if name not in _TABLE:
        hint = difflib.get_close_matches(str(name), list(_TABLE), n=1)
        also = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown network {name!r}{also} (known networks: {', '.join(sorted(_TABLE))})")


def _arguments(name: str) -> dict[str, Any]:
    """Keyword argument -> resolved type annotation (Any where there is none): the constructor's named
    parameters first, then the fields of the config dataclass its ``**overrides`` are forwarded to."""
    check_name(name)
    entry = _TABLE[name]
    ctor = constructor(name)
    params = inspect.signature(ctor).parameters.values()
    own = typing.get_type_hints(ctor.__init__ if inspect.isclass(ctor) else ctor)
    args = {p.name: own.get(p.name, Any) for p in params
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != _CONFIG_OBJECT}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        if entry.config is None:
            raise RuntimeError(f"network {name!r} takes **kwargs but the registry names no config dataclass for them")
        fields = typing.get_type_hints(entry.config)
        args.update({f.name: fields.get(f.name, Any) for f in dataclasses.fields(entry.config) if f.name not in args})
    return args


def network_arguments(name: str) -> list[str]:
    """The keyword arguments ``build(name, ...)`` accepts: the constructor's named parameters, plus the
    fields of its config dataclass where the constructor forwards ``**overrides`` to one."""
    return list(_arguments(name))


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _fits(value: Any, tp: Any) -> bool:
    """Whether a JSON-like value fits a (simple) annotation; unknown annotations accept anything."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, t) for t in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin is tuple:  # lists come back from JSON
        item = typing.get_args(tp)[0]
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


class UnknownArgument(ValueError):
    """A keyword argument the network does not take; ``argument``, ``suggestion`` (the closest known
    argument, or None) and ``known`` let a caller rephrase it (e.g. as a config key)."""

    def __init__(self, network: str, argument: str, known: list[str]) -> None:
        close = difflib.get_close_matches(argument, known, n=1)
        self.argument, self.suggestion, self.known = argument, (close[0] if close else None), known
        also = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        why = " (pass a config's fields as keywords so the model can be saved by name)" * (argument == _CONFIG_OBJECT)
        super().__init__(f"unknown argument {argument!r} for network {network!r}{also}{why} "
                         f"(arguments: {', '.join(known)})")


def check_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """Refuse unknown keyword arguments (:class:`UnknownArgument`) and values of the wrong type."""
    hints = _arguments(name)
    known = list(hints)
    for key in kwargs:
        if key not in known:
            raise UnknownArgument(name, key, known)
    for key, value in kwargs.items():
        if not _fits(value, hints.get(key, Any)):
            raise ValueError(f"argument {key!r} of network {name!r} must be {_type_name(hints[key])}, got {value!r}")


BUILD_ATTR = "lzn_build"


def build(name: str, **kwargs: Any) -> nn.Module:
    """Construct the network registered as ``name`` with keyword arguments ``kwargs``."""
    check_arguments(name, kwargs)
    try:
        module = constructor(name)(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"network {name!r} cannot be built from {kwargs}: {err}") from err
    setattr(module, BUILD_ATTR, {"name": name, "kwargs": dict(kwargs)})
    return module


def build_spec(module: nn.Module, part: str) -> dict[str, Any]:
    """The (name, kwargs) a module was built with; a clear error for modules made by hand."""
    spec = getattr(module, BUILD_ATTR, None)
    if spec is None:
        raise ValueError(
            f"the {part} ({type(module).__name__}) was not made with lzn.models.build(name, ...), so it cannot be "
            f"saved by name; build it with one of: {', '.join(sorted(_TABLE))}"
        )
    return spec
