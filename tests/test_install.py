"""A plain `pip install -c constraints.txt .` (no extras) runs the CLI, trains, saves and loads a model.

The install goes into a fresh virtual environment without system site packages, from a copy of the
source tree (setuptools builds in place: its build/ and lzn.egg-info/ land in the copy, not the repo),
and every command runs from a folder outside the repo so that only the installed lzn can be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.recipes.tiny import sets

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# what the copy leaves out: caches, environments, run outputs and build artefacts
SKIP = shutil.ignore_patterns(".git", ".venv", "venv", ".pytest_cache", ".mypy_cache", "__pycache__", "*.pyc",
                              "build", "dist", "*.egg-info", "runs", "benchmarks", "tests")

LOAD_AND_CLASSIFY = """
import sys
import torch
import lzn
from lzn.data import load_digits

model = lzn.LatentZoningNetwork.from_pretrained(sys.argv[1]).eval()
digits = load_digits(split="test")
with torch.no_grad():
    pred = model.classify(digits.images[:16], generator=torch.Generator().manual_seed(0))
assert pred.shape == (16,) and int(pred.min()) >= 0 and int(pred.max()) < 10, pred
model.save_pretrained(sys.argv[2])
print("classified", pred.tolist())
"""


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"{' '.join(proc.args)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with lzn installed from a copy of the repo, no extras: its bin/ folder."""
    base = tmp_path_factory.mktemp("install")
    if _run([sys.executable, "-m", "venv", "--help"], cwd=base).returncode != 0:
        pytest.skip("`python -m venv` is unavailable on this Python")
    made = _run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base)
    if made.returncode != 0 and "ensurepip" in made.stdout + made.stderr:
        pytest.skip(f"`python -m venv` cannot create an environment with pip here: {made.stdout.strip()}")
    _ok(made)
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    bindir = base / "venv" / ("Scripts" if os.name == "nt" else "bin")
    _ok(_run([str(bindir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-c", str(ROOT / "constraints.txt"), str(src)], cwd=base, timeout=900))
    return bindir


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder outside the repo: lzn is importable from the installed copy only."""
    return tmp_path_factory.mktemp("work")


def test_only_the_installed_package_is_imported_and_no_extra_leaked_in(venv, work):
    proc = _run([str(venv / "python"), "-c", "import lzn, lzn.cli.main; print(lzn.__file__)"], cwd=work)
    _ok(proc)
    assert "site-packages" in proc.stdout and str(ROOT) not in proc.stdout, proc.stdout
    proc = _run([str(venv / "python"), "-c", "import tensorboard"], cwd=work)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, "the tensorboard extra leaked into a plain install"


def test_zones_command(venv, work):
    out = work / "zones"
    _ok(_run([str(venv / "lzn"), "zones", "--out", str(out), "--per-anchor", "20", "--grid", "40", "--steps", "10"],
             cwd=work))
    assert (out / "zones.png").is_file()


def test_train_then_load_classify_and_save_again(venv, work):
    run = work / "run"
    cmd = [str(venv / "lzn"), "train", "joint", "--preset", "digits", "--out", str(run)]
    for item in sets("joint"):
        cmd += ["--set", item]
    _ok(_run(cmd, cwd=work))
    assert (run / "results.json").is_file() and (run / "model" / "model.safetensors").is_file()
    again = work / "resaved"
    proc = _run([str(venv / "python"), "-c", LOAD_AND_CLASSIFY, str(run / "model"), str(again)], cwd=work)
    _ok(proc)
    assert "classified" in proc.stdout
    assert (again / "model.safetensors").is_file() and (again / "config.json").is_file()
