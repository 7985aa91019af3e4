"""What the quality studies share, through lzn's public API only: a finished run's exported model and
settings, and the mean and sample sd of figures over seeds."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lzn import LatentZoningNetwork
from lzn.data import ImageDataset, load_split
from lzn.recipes.runner import resolve_config
from lzn.run_folder import RunFolder, read_run_file


def budget_folder(name: str, steps: int | None) -> str:
    """The cache folder of a data set's or preset's runs: ``name`` at its own budget, ``name-<steps>steps`` with a
    ``--steps`` override (so that another budget's runs never continue these)."""
    return name if steps is None else f"{name}-{steps}steps"


def device() -> str:
    """Where the studies run their models: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_model(run_dir: Path) -> LatentZoningNetwork:
    """The model a finished run exported (``RUN/model``: its EMA weights and reference sets), in eval mode."""
    folder = RunFolder(run_dir).model
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{run_dir} has no exported model (model/ is written when an LZN run finishes); "
                         "finish it by rerunning its training, or give a finished run")
    return LatentZoningNetwork.from_pretrained(str(folder), device())


def run_settings(run_dir: Path) -> tuple[str, Any]:
    """(recipe, typed config) of a run folder: the ``config:`` section of its ``run.yaml``, through
    ``resolve_config`` (which reads a run's own run.yaml as a config file)."""
    path = RunFolder(run_dir).run_file
    if not path.is_file():
        raise SystemExit(f"{run_dir} is not a run folder (no run.yaml)")
    recipe = str(read_run_file(run_dir).get("recipe"))
    return recipe, resolve_config(recipe, config_file=str(path))


def labelled_test_split(run_dir: Path, script: str) -> tuple[Any, ImageDataset]:
    """(typed config, labelled test split) of a finished ``joint`` / ``nogen`` run, the runs a label readout
    diagnosis reads; any other recipe or an unlabelled split stops ``script`` with one line."""
    recipe, cfg = run_settings(run_dir)
    if recipe not in ("joint", "nogen"):
        raise SystemExit(f"{script}: {run_dir} is a run of the {recipe!r} recipe; expected 'joint' or "
                         "'nogen' (a run with a label decoder)")
    test = load_split(cfg.data, "test")
    if test.labels is None:
        raise SystemExit(f"{script}: the test split of {run_dir} has no labels")
    return cfg, test


def diagnose_runs(runs: list[Path], script: str, hint: str,
                  diagnose: Callable[[Path], dict[str, float]]) -> dict[str, dict[str, float]]:
    """``diagnose`` each run folder (all checked first: ``hint`` says how to train one), each run's figures
    printed to stderr as they come; {run: figures}."""
    for run in runs:
        if not RunFolder(run).run_file.is_file():
            raise SystemExit(f"{script}: {run} is not a run folder (no run.yaml); train one with {hint}")
    per_run: dict[str, dict[str, float]] = {}
    for run in runs:
        per_run[str(run)] = diagnose(run)
        print(f"{run}: " + ", ".join(f"{k} {v:.3f}" for k, v in per_run[str(run)].items()), file=sys.stderr)
    return per_run


def seed_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per recipe and float metric (final_loss aside): mean, sample sd and count over the seeds' results."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for recipe, results in runs.items():
        keys = sorted({k for r in results for k, v in r.items() if isinstance(v, float) and k != "final_loss"})
        summary[recipe] = {}
        for key in keys:
            values = [r[key] for r in results if key in r]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[recipe][key] = {"mean": statistics.fmean(values), "sd": sd, "n": len(values)}
    return summary
