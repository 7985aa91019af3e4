"""The HTML run report: one self-contained page that parses, embeds only valid PNGs, names every
section, and explains each missing piece with a sentence instead of an error."""

from __future__ import annotations

import base64
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from lzn.cli.main import main
from lzn.eval import write_report
from lzn.eval.report import SECTIONS, _pca2
from tests.recipes.tiny import sets

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Checks nesting and collects section ids, image sources, and each section's text chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: dict[str, list[str]] = {}
        self.current: str | None = None
        self.images: list[str] = []
        self.captions: dict[str, list[str]] = {}
        self.in_caption = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "h2":
            self.current = a.get("id")
            self.sections[self.current or ""] = []
        if tag == "img":
            self.images.append(a.get("src") or "")
        self.in_caption = tag == "figcaption"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag == "figcaption":
            self.in_caption = False

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self.current is not None and data.strip():
            self.sections[self.current].append(data.strip())
            if self.in_caption:
                self.captions.setdefault(self.current, []).append(data.strip())


def parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    assert list(page.sections) == list(SECTIONS)
    assert "http://" not in text and "https://" not in text
    for src in page.images:
        head, _, payload = src.partition(",")
        assert head == "data:image/png;base64", head[:60]
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
            assert im.format == "PNG"
            im.verify()
    return text, page


def train(recipe: str, out: Path) -> Path:
    args = ["train", recipe, "--preset", "digits", "--out", str(out)]
    for item in [*sets(recipe), "sample_every=2"]:
        args += ["--set", item]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return {"joint": train("joint", root / "joint"), "rf": train("rf", root / "rf")}


def test_joint_report(runs):
    run = runs["joint"]
    path = write_report(run)
    assert path == run / "report.html"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # written atomically
    text, page = parse(path)
    assert "<title>lzn run report: joint</title>" in text
    # every logged metric and result is shown; samples over training in step order
    assert len(page.images) >= 6  # two curve figures, final samples, >= 1 step grid, reconstructions, zones
    assert "test_accuracy" in page.sections["metrics"]
    steps = [int(c.split()[1]) for c in page.captions["samples"] if c.startswith("step ")]
    assert steps and steps == sorted(steps)
    assert "each original followed by its reconstruction" in page.captions["reconstructions"]
    # zones: the test split of digits, every class name in the legend, label anchors mentioned
    zones = page.sections["zones"]
    names = yaml.safe_load((run / "run.yaml").read_text())["data_info"]["class_names"]
    assert set(names) <= set(zones)
    assert any("test split" in t and "label anchors" in t for t in zones)


def test_report_shows_lzn_evaluate_table(runs, tmp_path):
    run = tmp_path / "joint"
    import shutil

    shutil.copytree(runs["joint"], run)
    _, page = parse(write_report(run))
    metrics = page.sections["metrics"]  # the end of training's figures, and what lzn evaluate would add
    assert "accuracy (alpha 1)" in metrics and "zones: KS vs N(0, 1)" not in metrics
    assert any("Run `lzn evaluate RUN_DIR`" in t for t in metrics)
    (run / "metrics.json").unlink()  # a run from before training wrote it
    _, page = parse(write_report(run))
    assert any("No metrics.json" in t for t in page.sections["metrics"])
    assert main(["evaluate", str(run), "--metrics", "accuracy,zones", "--alphas", "0,1"]) == 0
    _, page = parse(write_report(run))
    metrics = page.sections["metrics"]
    assert "Figures by metric (metrics.json: the end of training and lzn evaluate)" in metrics
    assert "accuracy (alpha 1)" in metrics and "zones: KS vs N(0, 1)" in metrics
    assert not any("No metrics.json" in t or "Run `lzn evaluate" in t for t in metrics)


def test_report_max_points_and_out(runs, tmp_path):
    out = write_report(runs["joint"], tmp_path / "sub" / "r.html", max_points=50)
    _, page = parse(out)
    assert any("Latents of 50 images" in t for t in page.sections["zones"])
    with pytest.raises(ValueError, match="max_points"):
        write_report(runs["joint"], tmp_path / "x.html", max_points=0)


def test_rf_report_explains_empty_zones(runs):
    _, page = parse(write_report(runs["rf"]))
    assert any("no image encoder" in t for t in page.sections["zones"])
    assert len(page.images) >= 2  # curves and samples are still there


def test_missing_pieces_are_sentences(tmp_path):
    """A bare run folder (run.yaml only, as for an unfinished classifier run) still gets a full page;
    NaN and None results read "n/a" and sample-feature keys are shown."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"recipe": "classifier", "data_info": {"num_classes": 3},
                                                       "config": {"data": {"name": "digits"}}}))
    results = {"recipe": "classifier", "fid": math.nan, "precision": None, "extractor": "fast", "num_real": 100}
    (tmp_path / "results.json").write_text(json.dumps(results))
    _, page = parse(write_report(tmp_path))
    assert page.images == []
    metrics = page.sections["metrics"]
    assert metrics.count("n/a") == 2 and "extractor" in metrics and "num_real" in metrics and "fast" in metrics
    assert any("No metrics were logged" in t for t in page.sections["curves"])
    assert any("No final sample grid" in t for t in page.sections["samples"])
    assert any("No reconstructions.png" in t for t in page.sections["reconstructions"])
    assert any("no model/ folder" in t for t in page.sections["zones"])


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ValueError, match="is not an lzn run folder \\(no run.yaml\\)"):
        write_report(tmp_path)


def test_pca_projection():
    """The 2-D points are uncorrelated, in decreasing variance, and an extra point equal to a latent
    lands on that latent's projection (same PCA)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=gen) * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1])
    points, stars, explained = _pca2(x, x[:4])
    assert points.shape == (500, 2) and stars is not None and stars.shape == (4, 2)
    cov = torch.cov(points.T)
    assert abs(float(cov[0, 1])) < 1e-3 * float(cov[0, 0]) and cov[0, 0] > cov[1, 1]
    torch.testing.assert_close(stars, points[:4])
    assert explained[0] > explained[1] > 0 and sum(explained) < 1
    one, _, ex1 = _pca2(torch.randn(10, 1, generator=gen), None)  # 1-D latents: second axis is zero
    assert one.shape == (10, 2) and bool((one[:, 1] == 0).all()) and ex1[1] == 0.0
