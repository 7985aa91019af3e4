"""Resolve a recipe's config, train it in a run folder, evaluate and export; reload a finished run.

Run folder: ``run.yaml`` (recipe, data facts, resolved config), ``checkpoints/``, ``metrics.jsonl``,
``metrics.csv``, ``samples/``, ``results.json`` and, for LZN recipes, ``model/`` (``save_pretrained``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from lzn import distributed
from lzn.atomic import atomic_write_text
from lzn.recipes.baselines import ClassifierRecipe, NoGenRecipe, RFRecipe, SimCLRRecipe
from lzn.recipes.common import DataInfo, Recipe, RecipeConfig, data_info, load_data
from lzn.recipes.config import ConfigError, load_yaml, merge, parse_set
from lzn.recipes.generation import GenerationRecipe
from lzn.recipes.joint import JointRecipe
from lzn.recipes.representation import RepresentationRecipe
from lzn.training import Trainer, latest_checkpoint, load_checkpoint

RECIPES: dict[str, type[Recipe]] = {
    "generation": GenerationRecipe,
    "representation": RepresentationRecipe,
    "joint": JointRecipe,
    "rf": RFRecipe,
    "simclr": SimCLRRecipe,
    "classifier": ClassifierRecipe,
    "nogen": NoGenRecipe,
}
PRESETS = ("digits", "fashion", "cifar10", "imagenet")
RUN_FILE = "run.yaml"
# keys that may change when a run is resumed (e.g. to train longer); everything else must match
RESUMABLE_CHANGES = {"train.steps", "train.budgets", "train.log_every", "train.checkpoint_every", "train.progress",
                     "train.tensorboard", "train.keep_last", "sample_every"}


def recipe_class(name: str) -> type[Recipe]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def preset_overrides(preset: str, recipe: str) -> dict[str, Any]:
    """The preset file's ``common`` section merged with its section for ``recipe`` (if any)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("lzn.recipes").joinpath("presets", f"{preset}.yaml").read_text()
    import yaml

    data = yaml.safe_load(text) or {}
    out: dict[str, Any] = {}
    _deep_update(out, data.get("common", {}))
    _deep_update(out, data.get(recipe, {}))
    return out


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def resolve_config(recipe: str, preset: str | None = None, config_file: str | None = None,
                   sets: list[str] | None = None) -> RecipeConfig:
    """Defaults <- preset <- config file <- ``--set`` items, each checked against the typed config."""
    cfg = recipe_class(recipe).config_cls()
    if preset:
        cfg = merge(cfg, preset_overrides(preset, recipe))
    if config_file:
        cfg = merge(cfg, load_yaml(config_file))
    if sets:
        cfg = merge(cfg, parse_set(sets))
    return cfg


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("kwargs", "lr", "budgets", "ema_decay"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_existing_run(run_dir: Path, recipe: str, config: dict[str, Any]) -> None:
    path = run_dir / RUN_FILE
    if not path.exists():
        if (run_dir / "checkpoints").exists():
            raise ConfigError(f"{run_dir} has checkpoints but no {RUN_FILE}; refusing to reuse it")
        return
    old = load_yaml(path)
    if old.get("recipe") != recipe:
        raise ConfigError(f"{run_dir} holds a {old.get('recipe')!r} run, not {recipe!r}; choose another --out")
    a, b = _flat(old.get("config", {})), _flat(json.loads(json.dumps(config)))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(f"{run_dir} was started with a different config ({', '.join(changed)}); "
                          "resume with the same settings or choose another --out")


def _write_run_file(run_dir: Path, recipe: str, info: DataInfo, config: dict[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump({"recipe": recipe, "data_info": dataclasses.asdict(info), "config": config},
                           sort_keys=False)
    atomic_write_text(run_dir / RUN_FILE, text)


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def train(recipe: str, cfg: RecipeConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train ``recipe`` with ``cfg`` in ``run_dir`` (resuming if it holds a checkpoint); returns results.

    Under torchrun this joins the process group and leaves it at the end."""
    joined = not distributed.is_active() and distributed.init_from_env()
    try:
        return _train(recipe, cfg, run_dir)
    finally:
        if joined:
            distributed.shutdown()


def _train(recipe: str, cfg: RecipeConfig, run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    device = pick_device(cfg.train.device)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=str(device)))
    config = dataclasses.asdict(cfg)
    _check_existing_run(run_dir, recipe, config)
    train_data = load_data(cfg.data, cfg.data.train_split)
    test_data = load_data(cfg.data, cfg.data.test_split) if cfg.data.test_split else None
    info = data_info(train_data)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    rec = recipe_class(recipe)(cfg, info)  # type: ignore[arg-type]
    for m in rec.modules.values():
        m.to(device)
    rec.attach_data(train_data)
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        load_checkpoint(latest)  # a corrupted checkpoint fails here, before anything is written
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_file(run_dir, recipe, info, config)
    hooks = []
    if cfg.sample_every and hasattr(rec, "sample_grid"):
        def sample_hook(trainer: Trainer, step: int) -> None:
            if distributed.is_main():
                with trainer.ema_weights(), torch.no_grad():
                    rec.sample_grid(run_dir / "samples" / f"step-{step:09d}.png")  # type: ignore[attr-defined]

        hooks.append((cfg.sample_every, sample_hook))
    trainer = Trainer(rec.modules, rec.step, rec.batches, cfg.train, run_dir, hooks=hooks)
    last = trainer.fit()
    results: dict[str, Any] = {"recipe": recipe, "steps": trainer.step, "final_loss": last.get("loss")}
    with trainer.ema_weights() if trainer.emas else nullcontext(), torch.no_grad():
        results.update(rec.evaluate(test_data, run_dir if distributed.is_main() else None))
        if distributed.is_main() and getattr(rec, "lzn", None) is not None:
            rec.lzn.save_pretrained(str(run_dir / "model"))  # type: ignore[attr-defined]
    if distributed.is_main():
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[Recipe, RecipeConfig]:
    """Rebuild a run's recipe with its EMA weights (else live weights) from the latest checkpoint."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} is not an lzn run folder (no {RUN_FILE}); train one with `lzn train`")
    meta = load_yaml(path)
    name = meta.get("recipe")
    cls = recipe_class(str(name))
    cfg = merge(cls.config_cls(), meta["config"])
    dev = pick_device(device)
    info = DataInfo(**meta["data_info"])
    rec = cls(cfg, info)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet; train it first")
    state = load_checkpoint(ckpt)
    for n, m in rec.modules.items():
        ema = state.get("ema", {}).get(n)
        m.load_state_dict(ema["shadow"] if ema else state["modules"][n])
        m.to(dev).eval()
    return rec, cfg
