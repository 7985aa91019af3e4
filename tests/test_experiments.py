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
    assert not (tmp_path / "digits" / "classification" / "simplex" / "classifier-s0").exists()
    assert (tmp_path / "digits" / "classification" / "best-simplex+dropout" / "classifier-s0").exists()  # dropout applies to both
    cfg = (tmp_path / "digits" / "classification" / "best-simplex+dropout" / "joint-s1" / "run.yaml").read_text()
    assert "label_init: simplex" in cfg and "dropout: 0.15" in cfg
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("| variant | hyp. |") and "| simplex | H8 |" in md and "best: simplex + dropout" in md
    assert first.stdout.strip().splitlines()[-1].startswith("summary: ablate classification on digits (2 seeds)")
    # a rerun trains nothing: every run and its figures come from the cache
    again = _ablate(tmp_path, *args)
    assert json.loads((tmp_path / "t.json").read_text())["table"] == table
    assert again.stderr.count("done ") == 14


def test_ablation_representation_study_and_bad_arguments(tmp_path):
    out = _ablate(tmp_path, "--study", "representation", "--variants", "preset", "head_norm", "--seeds", "0")
    assert "| head_norm | H5 |" in out.stdout and "simclr kNN accuracy" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--variants", "simplex", "--study",
                          "representation"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown variant(s) ['simplex'] for --study representation" in bad.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "experiments/ablate.py"), "--variants", "best"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "needs --best" in bad.stderr
