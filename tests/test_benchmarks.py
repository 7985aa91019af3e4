"""The benchmark scripts still run (tiny sizes); their figures live in the README, not in assertions."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_zones_benchmark_worker_runs_and_both_implementations_agree():
    losses = []
    for impl in ("ours", "naive"):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks/zones.py"), "--worker", impl, "32", "8", "4", "1"],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        rec = json.loads(out.stdout)
        assert rec["seconds"] > 0
        losses.append(rec["loss"])
    assert abs(losses[0] - losses[1]) < 1e-4 * max(1.0, abs(losses[1]))


def test_context_benchmark_runs_on_an_exported_model(tmp_path):
    from lzn.cli.main import main
    from tests.recipes.tiny import sets

    args = ["train", "joint", "--preset", "digits", "--out", str(tmp_path / "run")]
    for item in sets("joint"):
        args += ["--set", item]
    assert main(args) == 0
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/context.py"), "--model", str(tmp_path / "run/model"),
                          "--batches", "1", "400", "--banks", "30", "--seeds", "1"],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    rows = json.loads(out.stdout[: out.stdout.rindex("}") + 1])["rows"]
    assert {(r["context"], r["batch"]) for r in rows} == {("batch", 1), ("batch", 400), ("reference", 1)}
    assert out.stdout.strip().splitlines()[-1].startswith("summary:")


def test_paper_claims_runs_end_to_end_on_a_tiny_budget(tmp_path):
    import importlib.util

    import pytest

    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("needs the lzn[fid] weight packages (make test installs them)")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/paper_claims.py"), "--budget", "quick", "--steps", "2",
                          "--samples", "12", "--out", str(tmp_path), "--md", str(tmp_path / "t.md"),
                          "--figure", str(tmp_path / "fig")],
                         check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
    table = (tmp_path / "t.md").read_text()
    assert "| digits (2 steps) | 1 generation | FID (efficientnet-lite0-imagenet, 12 samples vs 12 test images)" in table
    assert "| digits | joint | " in table and "round trip 1x" in table  # the zone diagnostics of the LZN runs
    assert "class consistency" in table and out.stdout.strip().splitlines()[-1].startswith("paper_claims (quick")
    from PIL import Image

    with Image.open(tmp_path / "fig-digits.png") as picture:  # 4 models x 2 rows of 20 samples
        assert picture.height > 8 * 32 and picture.width > 20 * 32
    cached = sorted(p.name for p in (tmp_path / "quick" / "digits" / "joint-s0").glob("claims-*"))
    assert cached == ["claims-efficientnet-lite0-imagenet-12.json", "claims-train-seconds.txt"]


def test_chunked_benchmark_runs_and_reports_every_configuration(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/chunked.py"), "--batch", "16", "--chunk", "4",
                          "--repeats", "1", "--json", str(tmp_path / "chunked.json")],
                         check=True, capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert report == json.loads((tmp_path / "chunked.json").read_text())
    assert (report["recipe"], report["preset"], report["batch"], report["chunk"]) == ("joint", "digits", 16, 4)
    for name, batch, chunk in (("chunked", 16, 4), ("small", 4, None), ("big", 16, None)):
        assert (report[name]["batch"], report[name]["chunk"]) == (batch, chunk)
        assert report[name]["step_seconds"] > 0 and report[name]["peak_bytes"] >= 0
    assert report["flow"]["step_seconds"] > 0
    for key in ("chunked_peak_over_small", "chunked_time_per_image_over_small", "chunked_time_per_image_over_big",
                "big_peak_over_small", "flow_peak_over_small"):
        assert report[key] >= 0, key
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("chunked (joint, digits, cpu): batch 16 in chunks of 4: peak ")
    assert "(target <= 1.3x" in summary and "(target <= 1.5x)" in summary and "unchunked batch 16: peak" in summary


def test_stream_benchmark_trains_on_generated_shards_and_reports_throughput(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/stream.py"), "--quick", "--images", "600",
                          "--workers", "1", "--dir", str(tmp_path)], check=True, capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    rec = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert rec["images"] == 600 and rec["train"]["steps"] == 2 and rec["train"]["rss_peak_full_pass_mib"] > 0
    assert set(rec["loader_images_per_s"]["224_two_view"]) == {"workers_0", "workers_1", "workers_2"}
    assert out.stdout.strip().splitlines()[-1].startswith("summary: 600 images on shards")
    assert list(tmp_path.iterdir()) == []  # the generated shards are removed


def test_text_benchmark_and_its_gap_diagnosis_run_on_a_tiny_budget(tmp_path):
    from tests.recipes.tiny import sets

    tiny = [a for item in sets("text") for a in ("--set", item)]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/text_digits.py"), "--recipes", "text", "text_align",
                          "--seeds", "0", "--steps", "3", "--batch-size", "64", "--text-encoder", "small",
                          "--out", str(tmp_path), *tiny], check=True, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert set(report["runs"]) == {"text", "text_align"}
    assert "test_t2i_class_consistency" in report["runs"]["text"][0]  # the decoder's figures
    assert "test_t2i_class_consistency" not in report["runs"]["text_align"][0]  # rf_weight=0: no decoder
    assert "rf_weight: 0" in (tmp_path / "text_align-s0" / "run.yaml").read_text()
    gap = subprocess.run([sys.executable, str(ROOT / "benchmarks/text_gap.py"), str(tmp_path / "text-s0"), "--num", "8",
                          "--alphas", "0", "--refs", "3"], check=True, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    summary = json.loads(gap.stdout[: gap.stdout.rindex("}") + 1])["summary"]
    assert set(summary) == {"real", "image_latent", "image_nn", "caption", "caption_nn", "caption_alpha=0",
                            "caption_ref=3"}
    assert all(0.0 <= v["mean"] <= 1.0 for v in summary.values())
    assert gap.stdout.strip().splitlines()[-1].startswith("text_gap (1 runs")
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks/text_gap.py"), str(tmp_path / "text_align-s0")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode != 0 and "no image decoder" in bad.stderr
