"""HTML building blocks of the run report (``lzn.eval.report``): table cells, tables, notes and PNG figures
embedded as data URIs, so the page is one self-contained file."""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fmt(value: Any) -> str:
    """A value for a table cell: NaN / None as "n/a", floats with 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def table(items: list[tuple[str, Any]]) -> str:
    num = ' class="num"'
    cells = "".join(f"<tr><th>{escape(k)}</th><td{num if is_number(v) else ''}>{escape(fmt(v))}</td></tr>\n"
                    for k, v in items)
    return f"<table>\n{cells}</table>"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def note(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR width, height


def img(data: bytes, alt: str, caption: str | None = None, target: int = 400) -> str:
    """An <img> of PNG bytes as a data URI; pictures much narrower than ``target`` pixels are shown
    enlarged by a whole factor (pixelated)."""
    w, h = png_size(data)
    scale = max(1, min(4, round(target / max(w, 1))))
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    tag = f'<img src="{uri}" alt="{escape(alt)}" width="{w * scale}" height="{h * scale}">'
    return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>" if caption else f"<figure>{tag}</figure>"


def png_file(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_SIGNATURE) and len(data) >= 24 else None


def figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
