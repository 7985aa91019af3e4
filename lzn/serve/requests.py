"""What a request to ``lzn serve`` may hold: the limits (:class:`Limits`), the error every refusal raises
(:class:`RequestError`: an HTTP status and a message naming the problem and the expected form), and the
checked reading of a JSON body (:class:`Body`). Nothing here touches the model."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

MiB = 2**20


class RequestError(Exception):
    """A refused request: ``status`` (4xx) and a message naming the problem and the expected form."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; every limit is a flag of ``lzn serve``."""

    request_bytes: int = 4 * MiB  # the JSON body
    image_side: int = 1024  # width and height of each decoded image, in pixels
    batch: int = 16  # images or captions (queries) in one request
    samples: int = 16  # images one request returns: generated, reconstructed, or nearest / retrieved per query
    steps: int = 100  # sampler steps of generate / reconstruct
    caption_chars: int = 500  # characters of one caption or prompt

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _no_constant(name: str) -> Any:
    raise RequestError(400, f"the body holds {name}, which JSON does not allow: send finite numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RequestError(400, f"the body holds the number {text}, too large for a float: send finite numbers")
    return value


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw`` (UTF-8); NaN, Infinity and overflowing numbers are refused."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text: send a JSON object") from None
    except RecursionError:
        raise RequestError(400, "the body nests too deeply: send a flat JSON object") from None
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the body is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}): "
                                "send a JSON object such as {\"images\": [\"<base64 PNG>\"]}") from None
    if not isinstance(value, dict):
        raise RequestError(400, f"the body must be a JSON object, got a JSON {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """JSON's name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


class Body:
    """The fields of one JSON object, read with their checks; ``fields`` are those the endpoint knows."""

    def __init__(self, data: dict[str, Any], fields: Iterable[str], endpoint: str) -> None:
        known = tuple(fields)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RequestError(400, f"{endpoint}: unknown field {unknown[0]!r}; expected fields: {', '.join(known)}")
        self.data, self.endpoint = data, endpoint

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def one_of(self, *names: str) -> str:
        """The one field of ``names`` that is given (exactly one must be)."""
        given = [n for n in names if self.has(n)]
        if len(given) != 1:
            spelled = " or ".join(f'"{n}"' for n in names)
            got = f"got {', '.join(given)}" if given else "got none"
            raise RequestError(400, f"{self.endpoint}: give exactly one of {spelled}; {got}")
        return given[0]

    def integer(self, name: str, low: int, high: int, default: int | None = None, *, flag: str | None = None) -> int:
        """An integer in [low, high]; ``flag``: the ``lzn serve`` flag that sets ``high`` (beyond it: 413)."""
        value = self.data.get(name)
        if value is None:
            if default is None:
                raise RequestError(400, f'{self.endpoint}: "{name}" is required: an integer from {low} to {high}')
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(400, f'"{name}" must be an integer from {low} to {high}, got a {_kind(value)} '
                                    f"{_shown(value)}")
        if value > high and flag is not None:
            raise RequestError(413, f'"{name}" is {value}; this server allows at most {high} (lzn serve {flag})')
        if not low <= value <= high:
            raise RequestError(400, f'"{name}" must be an integer from {low} to {high}, got {value}')
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise RequestError(400, f'"{name}" must be true or false, got a {_kind(value)} {_shown(value)}')
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(name, default)
        if value not in choices:
            raise RequestError(400, f'"{name}" must be one of {", ".join(choices)}, got {_shown(value)}')
        return str(value)

    def array(self, name: str, limit: int, what: str, flag: str | None = "--max-batch") -> list[Any]:
        """A non-empty JSON array of ``what`` of at most ``limit`` items (beyond: 413 naming ``flag``, the
        ``lzn serve`` flag that sets it, if any)."""
        value = self.data.get(name)
        if not isinstance(value, list):
            raise RequestError(400, f'"{name}" must be an array of {what}, got a {_kind(value)}')
        if not value:
            raise RequestError(400, f'"{name}" is empty: give 1 to {limit} {what}')
        if len(value) > limit:
            raise RequestError(413, f'"{name}" holds {len(value)} items; this server takes at most {limit} per request'
                                    + (f" (lzn serve {flag})" if flag else ""))
        return value

    def texts(self, name: str, limit: int, chars: int, flag: str | None = "--max-batch") -> list[str]:
        """A non-empty array of non-empty strings of at most ``chars`` characters each."""
        items = self.array(name, limit, "texts", flag)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise RequestError(400, f'"{name}"[{i}] must be a non-empty string, got a {_kind(item)} {_shown(item)}')
            if len(item) > chars:
                raise RequestError(413, f'"{name}"[{i}] has {len(item)} characters; at most {chars}')
            out.append(item.strip())
        return out


def _shown(value: Any) -> str:
    """A short rendering of a request value for a message."""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
