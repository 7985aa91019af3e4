"""Images as they travel over ``lzn serve``: base64-encoded PNG (or JPEG) strings, optionally as a data URL
(``data:image/png;base64,...``), to (C, S, S) tensors in [-1, 1] of the model's shape and back. Each image is
checked before its pixels are decoded: base64, format, width and height against the limit."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import torch
from PIL import Image
from torch import Tensor

from lzn.serve.requests import RequestError

FORMATS = ("PNG", "JPEG")
FORM = 'a base64-encoded PNG string (or a data URL "data:image/png;base64,...")'


def _bytes(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(400, f"{where} must be {FORM}, got a {type(text).__name__}")
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise RequestError(400, f"{where} is a data URL without ';base64': expected {FORM}")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where} is not valid base64: expected {FORM}") from None


def decode(text: object, where: str, channels: int, size: int, max_side: int) -> Tensor:
    """One image string -> (channels, size, size) float32 in [-1, 1]: transparency over black, a centred square
    crop, then a resize to ``size`` (box filter when shrinking). ``where`` names the field in messages."""
    raw = _bytes(text, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(raw), formats=FORMATS)
            width, height = image.size  # from the header: nothing is decoded yet
            if width > max_side or height > max_side:
                raise RequestError(413, f"{where} is {width}x{height} pixels; this server takes images up to "
                                        f"{max_side}x{max_side} (lzn serve --max-image-side)")
            image.load()
    except RequestError:
        raise
    except Exception:  # PIL raises many types for bytes that are not an image (or a bomb, or truncated)
        raise RequestError(400, f"{where} holds {len(raw)} bytes that are not a readable PNG or JPEG image: "
                                f"expected {FORM}") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    side = min(image.size)
    left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BOX if side > size else Image.Resampling.BICUBIC)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)  # (S * S * C,)
    x = pixels.view(size, size, -1).permute(2, 0, 1)  # (C, S, S)
    if x.shape[0] != channels:  # a grey model reads "L" (1 channel), a colour one "RGB" (3)
        raise RequestError(400, f"{where}: this model takes images of {channels} channels; an image here is grey (1) "
                                "or RGB (3)")
    return x.float().div(127.5).sub(1.0)


def decode_all(items: list[object], field: str, channels: int, size: int, max_side: int) -> Tensor:
    """Image strings -> (B, channels, size, size) float32 in [-1, 1]."""
    return torch.stack([decode(item, f'"{field}"[{i}]', channels, size, max_side) for i, item in enumerate(items)])


def encode(image: Tensor) -> str:
    """One (C, H, W) image in [-1, 1] (clipped) -> a base64 PNG string (grey for C = 1, RGB for C = 3)."""
    if not torch.isfinite(image).all():
        raise RuntimeError("the model produced non-finite pixels")
    x = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (C, H, W)
    hwc = x.permute(1, 2, 0).contiguous().numpy()  # (H, W, C)
    buf = io.BytesIO()
    Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).save(buf, format="PNG")  # mode L or RGB
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_all(images: Tensor) -> list[str]:
    """(B, C, H, W) images in [-1, 1] -> B base64 PNG strings."""
    return [encode(image) for image in images]
