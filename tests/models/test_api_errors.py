"""LatentZoningNetwork's public API: each wrong input is one TypeError / ValueError naming the expected
form; accepted variants (label lists, slight overshoot of [-1, 1]) work; class names persist."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lzn.models import LatentZoningNetwork
from tests.models.test_network import K, Q, images, small_model


@pytest.fixture(scope="module")
def model() -> LatentZoningNetwork:
    return small_model()


def ok(n: int = 4) -> torch.Tensor:
    return images(n)


BAD_CALLS = [
    # (what, call(model), error type, message fragment)
    ("a list", lambda m: m.anchors([[0.0]]), TypeError, r"images must be a \(B, 1, 8, 8\) torch.Tensor"),
    ("float64", lambda m: m.latents(ok().double()), TypeError,
     r"images must be float32 like the model's weights, got torch.float64; convert with images.float\(\)"),
    ("float16", lambda m: m.embed(ok().half()), TypeError, r"got torch.float16; .*torch.autocast"),
    ("bfloat16", lambda m: m.classify(ok().bfloat16()), TypeError, r"got torch.bfloat16; .*torch.autocast"),
    ("uint8", lambda m: m.anchors((ok() * 127.5 + 127.5).to(torch.uint8)), TypeError,
     r"images must be float32 scaled to \[-1, 1\], got torch.uint8; .*127.5 - 1"),
    ("empty", lambda m: m.anchors(ok()[:0]), ValueError,
     r"images is an empty batch \(0, 1, 8, 8\); pass at least one image"),
    ("0..255 floats", lambda m: m.latents(torch.linspace(0, 255, 64).reshape(1, 1, 8, 8)), ValueError,
     r"images must be scaled to \[-1, 1\], got values in \[0, 255\]; for 0..255 pixels use images / 127.5 - 1"),
    ("-3..3 floats", lambda m: m.reconstruct(3 * ok(), labels=[0, 1, 2, 3]), ValueError,
     r"must be scaled to \[-1, 1\], got values in \[-\d.*rescale"),
    ("inf pixel", lambda m: m.anchors(torch.where(ok() > 0.9, math.inf, ok())), ValueError, "NaN or infinite"),
    ("NaN noise_scale", lambda m: m.latents(ok(), noise_scale=math.nan), ValueError,
     "noise_scale must be a finite number >= 0"),
    ("inf noise_scale", lambda m: m.classify(ok(), noise_scale=math.inf), ValueError, "noise_scale must be a finite"),
    ("negative noise_scale", lambda m: m.classify(ok(), noise_scale=-1.0), ValueError, "noise_scale must be"),
    ("zero batch_size", lambda m: m.classify(ok(), batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
    ("float batch_size", lambda m: m.classify(ok(), batch_size=2.5), ValueError, "batch_size must be a positive int"),
    ("float labels", lambda m: m.generate(labels=[0.0, 1.5]), TypeError,
     r"labels must be a 1-D sequence or tensor of class indices in \[0, 4\), got an element 0.0"),
    ("string labels", lambda m: m.generate(labels=["cat"]), TypeError, r"class indices .*class_index"),
    ("float tensor labels", lambda m: m.generate(labels=torch.tensor([0.0, 1.0])), TypeError,
     r"class indices in \[0, 4\), got a torch.float32 tensor"),
    ("float array labels", lambda m: m.generate(labels=np.array([0.0, 1.0])), TypeError, "got a float64 array"),
    ("2-D labels", lambda m: m.generate(labels=[[0, 1]]), TypeError, "1-D sequence or tensor"),
    ("2-D tensor labels", lambda m: m.generate(labels=torch.zeros(2, 2, dtype=torch.long)), ValueError,
     r"1-D sequence or tensor of class indices in \[0, 4\), got shape \(2, 2\)"),
    ("a string", lambda m: m.generate(labels="0,1"), TypeError, "1-D sequence or tensor .*got str"),
    ("out of range", lambda m: m.generate(labels=[0, 4]), ValueError, r"labels must lie in \[0, 4\)"),
    ("num 0", lambda m: m.generate(num=0), ValueError, "num must be a positive int, got 0"),
    ("num float", lambda m: m.generate(num=2.0), ValueError, "num must be a positive int, got 2.0"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_expected_form(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)


def test_float64_model_wants_float64_images():
    model = small_model().double()
    assert model.anchors(ok().double()).dtype == torch.float64
    with pytest.raises(TypeError, match=r"images must be float64 like the model's weights, got torch.float32; "
                                        r"convert with images.to\(torch.float64\)"):
        model.anchors(ok())


def test_slight_overshoot_of_the_pixel_range_is_accepted(model):
    x = ok().clamp(-1, 1) * 1.05  # generated samples are not clipped
    assert x.min() < -1 and x.max() > 1
    assert model.anchors(x).shape == (4, Q)


@pytest.mark.parametrize("labels", [[0, 3, 3], (0, 3, 3), np.array([0, 3, 3]), np.array([0, 3, 3], dtype=np.int32),
                                    torch.tensor([0, 3, 3], dtype=torch.int32)])
def test_generate_accepts_label_sequences(model, labels):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    want = model.generate(labels=torch.tensor([0, 3, 3]), sampler="euler", steps=2, generator=g())
    got = model.generate(labels=labels, sampler="euler", steps=2, generator=g())
    assert got.labels.dtype == torch.long and torch.equal(got.labels, want.labels)
    assert torch.equal(got.images, want.images)


def test_reconstruct_accepts_a_label_list(model):
    rec = model.reconstruct(ok(2), labels=[1, 2], sampler="euler", steps=2)
    assert rec.shape == (2, 1, 8, 8)


def test_latents_from_anchors_refuses_nan_unless_allowed(model):
    anchors = torch.randn(4, Q)
    anchors[2, 0] = math.nan
    with pytest.raises(ValueError, match=r"anchors contain NaN or inf values \(rows \[2\]\)"):
        model.latents_from_anchors(anchors)
    out = model.latents_from_anchors(anchors, allow_nonfinite=True)
    assert out.shape == (4, Q) and not torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------
# class names

NAMES = ("ant", "bee", "cat", "dog")


def named_model() -> LatentZoningNetwork:
    m = small_model()
    return LatentZoningNetwork(m.encoder, m.decoder, m.label_anchors, m.flow, class_names=NAMES)


def test_class_names_resolve_and_label():
    m = named_model()
    assert m.class_names == NAMES
    assert [m.class_index(v) for v in ("cat", "3", 1, np.int64(0), " 2 ")] == [2, 3, 1, 0, 2]
    assert m.label_names(torch.tensor([3, 0])) == ["dog", "ant"] and m.label_names([1]) == ["bee"]
    with pytest.raises(ValueError, match=r"unknown class 'cta'; did you mean 'cat'\? \(classes: 0 'ant', 1 'bee'"):
        m.class_index("cta")
    with pytest.raises(ValueError, match=r"class index 4 is outside \[0, 4\)"):
        m.class_index(4)
    with pytest.raises(TypeError, match="a class is a name or an int index, got float"):
        m.class_index(1.0)
    unnamed = small_model()
    assert unnamed.class_names is None and unnamed.label_names([2, 0]) == ["2", "0"]
    with pytest.raises(ValueError, match=r"unknown class 'cat' \(indices 0..3 \(the model has no class names\)\)"):
        unnamed.class_index("cat")


@pytest.mark.parametrize(
    "names,error,match",
    [
        (("a", "b", "c"), ValueError, "class_names has 3 names but the model has 4 classes"),
        (("a", "b", "a", "c"), ValueError, r"class_names must be unique, got \['a'\]"),
        (("a", "b", 3, "c"), TypeError, "class_names must be non-empty strings, got 3"),
        ("abcd", TypeError, "class_names must be a tuple of strings"),
    ],
)
def test_bad_class_names(names, error, match):
    m = small_model()
    with pytest.raises(error, match=match):
        LatentZoningNetwork(m.encoder, m.decoder, m.label_anchors, m.flow, class_names=names)


def test_class_names_need_classes():
    m = small_model()
    with pytest.raises(ValueError, match="but the model has 0 classes"):
        LatentZoningNetwork(m.encoder, class_names=("a", "b"))


def test_class_names_round_trip_and_old_configs_load(tmp_path):
    m = named_model()
    m.save_pretrained(str(tmp_path / "named"))
    cfg_path = tmp_path / "named" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["class_names"] == list(NAMES) and cfg["format"] == "lzn-pretrained/1"
    assert LatentZoningNetwork.from_pretrained(str(tmp_path / "named")).class_names == NAMES
    # a folder written before class names existed has no key
    del cfg["class_names"]
    cfg_path.write_text(json.dumps(cfg))
    assert LatentZoningNetwork.from_pretrained(str(tmp_path / "named")).class_names is None
    # a corrupted key is refused naming the file
    cfg["class_names"] = ["ant"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config.json describes an invalid model: class_names has 1 names"):
        LatentZoningNetwork.from_pretrained(str(tmp_path / "named"))
    small_model().save_pretrained(str(tmp_path / "plain"))
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["class_names"] is None
    assert LatentZoningNetwork.from_pretrained(str(tmp_path / "plain")).class_names is None
