"""The speed and memory benchmarks still run (tiny sizes); their figures live in the README, not in assertions.
The quality studies live in experiments/ (tests/test_experiments.py)."""

import json
import os
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


def test_serve_benchmark_starts_a_server_and_reports_each_case(tmp_path):
    import torch

    from lzn.recipes import runner
    from tests.recipes.tiny import sets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/serve/conftest.py: two shared cores
    try:
        overrides = [s for s in sets("joint") if not s.startswith("train.checkpoint_every")]
        runner.train("joint", runner.resolve_config("joint", "digits", sets=overrides), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/serve.py"), "--model", str(tmp_path / "run/model"),
                          "--requests", "3", "--warmup", "1", "--images", "2", "--json", str(tmp_path / "serve.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert report == json.loads((tmp_path / "serve.json").read_text())
    assert set(report["cases"]) == {"classify_1_image", "generate_2_images"}
    for case in report["cases"].values():
        assert set(case) == {"clients_1", "clients_8"}
        for r in case.values():
            assert r["requests"] == 3 and r["errors"] == 0 and r["requests_per_s"] > 0
            assert r["p95_ms"] >= r["p50_ms"] > 0
    assert "exit code 0" in report["server"]  # stopped by Ctrl-C, cleanly
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("summary: lzn serve ") and "classify 1 image: 1 client " in summary
    assert "generate 2 images: 1 client " in summary and "8 clients" in summary
