"""Composed captions (pixel attributes, thresholds, templates) and the user (image, caption) loader."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lzn.data.captions import (
    ATTRIBUTE_WORDS,
    ATTRIBUTES,
    DIGIT_WORDS,
    FASHION_WORDS,
    TEMPLATES,
    attribute_levels,
    attribute_thresholds,
    caption_dataset,
    compose_captions,
    load_caption_pairs,
    pixel_attributes,
)
from lzn.data.dataset import DataNotFoundError, ImageDataset
from lzn.data.datasets import load_digits


def naive_attributes(image: torch.Tensor) -> list[float]:
    """One (1, H, W) image, pixel by pixel, as the module docstring defines the four attributes."""
    x = image[0].double().tolist()
    h, w = len(x), len(x[0])
    ink = [[(v + 1) / 2 for v in row] for row in x]
    mass = sum(map(sum, ink))
    mr = sum(ink[r][c] * r for r in range(h) for c in range(w)) / mass
    mc = sum(ink[r][c] * c for r in range(h) for c in range(w)) / mass
    vr = sum(ink[r][c] * (r - mr) ** 2 for r in range(h) for c in range(w)) / mass
    vc = sum(ink[r][c] * (c - mc) ** 2 for r in range(h) for c in range(w)) / mass
    cov = sum(ink[r][c] * (r - mr) * (c - mc) for r in range(h) for c in range(w)) / mass
    padded = [[0.0] * (w + 2)] + [[0.0] + row + [0.0] for row in ink] + [[0.0] * (w + 2)]
    tv = sum(abs(padded[r][c + 1] - padded[r][c]) for r in range(h + 2) for c in range(w + 1))
    tv += sum(abs(padded[r + 1][c] - padded[r][c]) for r in range(h + 1) for c in range(w + 2))
    bright = sum(v * v for row in ink for v in row) / mass
    return [math.sqrt(vr + vc) / math.sqrt(h * w), 2 * mass / tv, bright, -cov / vr]


def canvas(h: int = 28, w: int = 28) -> torch.Tensor:
    return -torch.ones(1, 1, h, w)


def test_attributes_match_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    images = torch.cat([load_digits().images[:5], torch.rand(3, 1, 8, 8, generator=g) * 2 - 1])  # (8, 1, 8, 8)
    rect = torch.rand(2, 1, 6, 9, generator=g) * 2 - 1  # not square
    for batch in (images, rect):
        expected = torch.tensor([naive_attributes(im) for im in batch], dtype=torch.float32)
        torch.testing.assert_close(pixel_attributes(batch), expected, atol=1e-5, rtol=1e-5)


def test_thick_bar_is_thicker_than_thin_bar():
    thin, thick = canvas(), canvas()
    thin[..., 4:24, 12:14] = 1.0  # 2 x 20 bar
    thick[..., 4:24, 10:16] = 1.0  # 6 x 20 bar
    t_thin, t_thick = pixel_attributes(torch.cat([thin, thick]))[:, 1].tolist()
    assert t_thin == pytest.approx(2 * 20 / 22) and t_thick == pytest.approx(6 * 20 / 26)  # b L / (b + L)


def test_slant_sign_of_lines():
    right, left, upright = canvas(), canvas(), canvas()
    for i in range(20):
        right[..., 23 - i, 4 + i] = 1.0  # "/": one column right per row up
        left[..., 23 - i, 23 - i] = 1.0  # "\"
        upright[..., 4 + i, 14] = 1.0
    slant = pixel_attributes(torch.cat([right, left, upright]))[:, 3]
    torch.testing.assert_close(slant, torch.tensor([1.0, -1.0, 0.0]))


def test_larger_square_is_larger_and_brightness_is_the_ink_value():
    small, large = canvas(), canvas()
    small[..., 10:14, 10:14] = 0.2  # side 4, ink value (0.2 + 1) / 2 = 0.6
    large[..., 4:20, 4:20] = 1.0  # side 16, ink 1
    attrs = pixel_attributes(torch.cat([small, large]))
    expected = [math.sqrt((s * s - 1) / 6) / 28 for s in (4, 16)]  # discrete uniform variance (s^2 - 1) / 12 twice
    torch.testing.assert_close(attrs[:, 0], torch.tensor(expected))
    torch.testing.assert_close(attrs[:, 2], torch.tensor([0.6, 1.0]))


def test_blank_image_gives_zeros_and_bad_shapes_are_refused():
    assert pixel_attributes(canvas()).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        pixel_attributes(torch.zeros(2, 3, 8, 8))


def test_thresholds_split_into_thirds_per_class():
    g = torch.Generator().manual_seed(1)
    values = torch.randn(600, 4, generator=g)
    labels = torch.arange(600) % 2
    values[labels == 1] += 5.0  # class 1 shifted: its own cut points
    thr = attribute_thresholds(values, labels, num_classes=3)
    assert thr.shape == (3, 4, 2)
    assert thr[1, 0, 0] > thr[0, 0, 1] + 3  # class 1's cut points are above class 0's
    torch.testing.assert_close(thr[2], attribute_thresholds(values)[0])  # no items: the whole set's
    torch.testing.assert_close(thr[:2, 3, 0], -thr[:2, 3, 1])  # slant: symmetric
    levels = attribute_levels(values, thr, labels)
    for c in (0, 1):
        counts = torch.stack([torch.bincount(levels[labels == c, j], minlength=3) for j in range(4)])
        assert counts[:3].min() >= 99 and counts[:3].max() <= 101  # tertiles of 300
        assert counts[3, 1] in (100, 101)  # a third upright
    with pytest.raises(ValueError, match="need labels"):
        attribute_levels(values, thr)


def test_levels_at_hand_picked_thresholds():
    thr = torch.tensor([[[1.0, 2.0]] * 3 + [[-0.5, 0.5]]])  # (1, 4, 2)
    values = torch.tensor([[0.5, 1.5, 2.5, -0.6], [1.0, 2.0, 3.0, 0.0], [3.0, 0.0, 1.1, 0.5], [0, 0, 0, 0.7],
                           [0, 0, 0, -0.5]])
    assert attribute_levels(values, thr).tolist() == [[0, 1, 2, 0], [0, 1, 2, 1], [2, 0, 1, 1], [0, 0, 0, 2],
                                                      [0, 0, 0, 1]]  # |slant| <= t: upright, both ends
    zero = torch.zeros(1, 4, 2)  # t = 0 (most items exactly upright): slant 0 stays upright
    assert attribute_levels(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), zero)[0, 3] == 1


def test_captions_are_deterministic_per_item_and_seed():
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 10, (64,), generator=g)
    levels = torch.randint(0, 3, (64, 4), generator=g)
    a, ta = compose_captions(labels, levels, DIGIT_WORDS, seed=3)
    b, _ = compose_captions(labels, levels, DIGIT_WORDS, seed=3)
    c, tc = compose_captions(labels, levels, DIGIT_WORDS, seed=4)
    assert a == b and a != c and not torch.equal(ta, tc)
    perm = torch.randperm(64, generator=g)  # the same items in another batch order: the same captions
    shuffled, _ = compose_captions(labels[perm], levels[perm], DIGIT_WORDS, seed=3, indices=perm)
    assert shuffled == [a[i] for i in perm.tolist()]
    assert set(ta.tolist()) == set(range(len(TEMPLATES)))  # 64 items use every template


@pytest.mark.parametrize("words, kind", [(DIGIT_WORDS, "digit"), (FASHION_WORDS, "item")])
def test_every_template_names_the_class_and_its_attribute_words(words, kind):
    n = 40 * len(words)
    labels = torch.arange(n) % len(words)
    levels = torch.stack([(torch.arange(n) // len(words) + j) % 3 for j in range(4)], 1)  # (n, 4)
    texts, templates = compose_captions(labels, levels, words, kind=kind)
    seen = set()
    for t, y, lev, tpl in zip(texts, labels.tolist(), levels.tolist(), templates.tolist()):
        assert words[y] in t, t
        for a, lv in zip(ATTRIBUTES, lev):
            if "{" + a + "}" in TEMPLATES[tpl]:
                assert ATTRIBUTE_WORDS[a][lv] in t, (a, t)
        seen.add((y, tpl))
    assert len(seen) == len(words) * len(TEMPLATES)  # every (class, template) pair was checked
    if kind == "digit":
        assert any(t.startswith("an eight") or "an eight" in t for t in texts)
        assert not any("an one" in t for t in texts) and not any(" a upright" in t for t in texts)


def test_caption_dataset_on_digits_is_consistent():
    data = load_digits()
    cs = caption_dataset(data, seed=0)
    assert len(cs.captions) == len(data) and cs.thresholds.shape == (10, 4, 2)
    torch.testing.assert_close(attribute_levels(pixel_attributes(data.images), cs.thresholds, data.labels), cs.levels)
    for i in range(0, len(data), 97):
        assert DIGIT_WORDS[int(data.labels[i])] in cs.captions[i]
        named = {a: ATTRIBUTE_WORDS[a][int(cs.levels[i, j])] for j, a in enumerate(ATTRIBUTES) if cs.mentions[i, j]}
        assert cs.attributes[i] == named and all(w in cs.captions[i] for w in named.values())
    again = caption_dataset(data, seed=0, thresholds=cs.thresholds)  # the training set's thresholds, reused
    assert again.captions == cs.captions
    unlabelled = ImageDataset(data.images[:4], None, 0, "x")
    with pytest.raises(ValueError, match="labelled grayscale"):
        caption_dataset(unlabelled)


# ----------------------------------------------------------------------------------------------
# User pairs
# ----------------------------------------------------------------------------------------------


def write_png(path, value: int, size: int = 6) -> None:
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_folder_of_images_with_txt_captions(tmp_path):
    write_png(tmp_path / "b.png", 255)
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_text("  a black square\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("a white square — blanc", encoding="utf-8")
    pairs = load_caption_pairs(tmp_path, size=4)
    assert pairs.captions == ["a black square", "a white square — blanc"]
    assert pairs.images.shape == (2, 3, 4, 4) and pairs.images.dtype == torch.float32
    assert pairs.images[0].eq(-1).all() and pairs.images[1].eq(1).all()
    assert [p.name for p in pairs.paths] == ["a.png", "b.png"]


def test_jsonl_of_paths_and_captions(tmp_path):
    (tmp_path / "img").mkdir()
    write_png(tmp_path / "img" / "x.png", 255)
    write_png(tmp_path / "y.png", 0)
    lines = [{"path": "img/x.png", "caption": "white"}, {"path": str(tmp_path / "y.png"), "caption": "black"}]
    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    pairs = load_caption_pairs(f, size=6, channels=1)
    assert pairs.captions == ["white", "black"] and pairs.images.shape == (2, 1, 6, 6)
    assert pairs.images[0].eq(1).all() and pairs.images[1].eq(-1).all()


def test_empty_caption_names_the_file(tmp_path):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_text(" \n\t", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.txt: caption is empty"):
        load_caption_pairs(tmp_path, size=4)
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"path": "a.png", "caption": ""}) + "\n")
    with pytest.raises(ValueError, match=r"\.jsonl, line 1: caption is empty"):
        load_caption_pairs(f, size=4)


def test_non_utf8_caption_names_the_file(tmp_path):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"a\.txt: caption is not UTF-8"):
        load_caption_pairs(tmp_path, size=4)
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'{"path": "a.png", "caption": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 1: not UTF-8"):
        load_caption_pairs(f, size=4)


def test_long_captions_are_cut_with_one_warning(tmp_path):
    for name in ("a", "b", "c"):
        write_png(tmp_path / f"{name}.png", 0)
    (tmp_path / "a.txt").write_text("x" * 50)
    (tmp_path / "b.txt").write_text("y" * 11)
    (tmp_path / "c.txt").write_text("short")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = load_caption_pairs(tmp_path, size=4, max_chars=10)
    assert [len(c) for c in pairs.captions] == [10, 10, 5]
    assert len(caught) == 1 and "cut 2 caption(s) longer than 10" in str(caught[0].message)


def test_missing_images_and_captions_are_errors(tmp_path):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_text("ok")
    (tmp_path / "ghost.txt").write_text("no image")
    with pytest.raises(DataNotFoundError, match=r"no image for the captions \['ghost.txt'\]"):
        load_caption_pairs(tmp_path, size=4)
    (tmp_path / "ghost.txt").unlink()
    write_png(tmp_path / "b.png", 0)
    with pytest.raises(DataNotFoundError, match="b.png has no caption file b.txt"):
        load_caption_pairs(tmp_path, size=4)
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"path": "missing.png", "caption": "x"}) + "\n")
    with pytest.raises(DataNotFoundError, match=r"line 1: image .*missing\.png does not exist"):
        load_caption_pairs(f, size=4)
    f.write_text('{"path": "a.png"}\n')
    with pytest.raises(ValueError, match=r"line 1: expected \{\"path\""):
        load_caption_pairs(f, size=4)
    with pytest.raises(DataNotFoundError, match="neither a folder"):
        load_caption_pairs(tmp_path / "nothing.csv", size=4)


def test_caption_thresholds_are_those_caption_dataset_fixes():
    """Held-out pairs are cut by the training set's thresholds: taken without composing its captions, they
    are the same tensor whatever the template seed."""
    import torch

    from lzn.data import caption_dataset, caption_thresholds, load_split
    from lzn.data.config import DataConfig

    train = load_split(DataConfig(name="digits"), "train")
    assert torch.equal(caption_thresholds(train), caption_dataset(train, seed=5).thresholds)
