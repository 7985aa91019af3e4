"""Resolve a recipe's config, train it in a run folder, evaluate and export.

Run folder (its layout: :mod:`lzn.run_folder`): ``run.yaml`` (recipe, data facts, resolved config),
``checkpoints/``, ``metrics.jsonl``, ``metrics.csv``, ``samples/``, ``results.json`` and, for LZN recipes,
``model/`` (``save_pretrained``; the ``classifier`` baseline: ``classifier/``, ``lzn.eval.save_classifier``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from lzn import distributed
from lzn.distributed import pick_device
from lzn.atomic import atomic_write_text
from lzn.run_folder import RUN_FILE, RunFolder, RunFolderBusy, RunLock, read_results, read_run_file
from lzn.recipes.baselines import ClassifierRecipe, SimCLRRecipe
from lzn.eval.results import flat_figures
from lzn.data import DataConfig, ImageDataset, ShardedDataset, check_labels, has_split, load_split
from lzn.recipes.common import DataInfo, Recipe, RecipeConfig, data_info
from lzn.recipes.config import ConfigError, load_yaml, merge, parse_set, yaml_load
from lzn.recipes.clip import CLIPRecipe
from lzn.recipes.generation import GenerationRecipe
from lzn.recipes.joint import JointRecipe
from lzn.recipes.representation import RepresentationRecipe
from lzn.recipes.text import TextImageRecipe
from lzn.models.network import reference_indices
from lzn.training import Trainer, latest_checkpoint, load_checkpoint
from lzn.training.checkpoint import check_finite_weights

log = logging.getLogger("lzn")

@dataclass(frozen=True)
class RecipeSpec:
    """A recipe by name: its class (typed config, model, step, evaluation) and the config values that
    define it, e.g. ``nogen`` = ``joint`` with ``rf_weight: 0``. Calling it builds the recipe."""

    name: str
    cls: type[Recipe]
    defaults: tuple[tuple[str, Any], ...] = ()  # (key, value) over the class's config defaults

    @property
    def config_cls(self) -> type[RecipeConfig]:
        return self.cls.config_cls

    def __call__(self, cfg: RecipeConfig, info: DataInfo) -> Recipe:
        rec = self.cls(cfg, info)
        rec.name = self.name
        return rec


RECIPES: dict[str, RecipeSpec] = {spec.name: spec for spec in (
    RecipeSpec("generation", GenerationRecipe),
    RecipeSpec("representation", RepresentationRecipe),
    RecipeSpec("joint", JointRecipe),
    RecipeSpec("rf", GenerationRecipe, (("encoder", None),)),  # plain rectified flow: no encoder, no latent
    RecipeSpec("simclr", SimCLRRecipe),
    RecipeSpec("classifier", ClassifierRecipe),
    RecipeSpec("nogen", JointRecipe, (("rf_weight", 0.0),)),  # "RF+LZN (no gen)": no decoder, no RF loss
    RecipeSpec("text", TextImageRecipe),
    RecipeSpec("clip", CLIPRecipe),
)}
PRESETS = ("digits", "fashion", "cifar10", "imagenet")
# keys that may change when a run is resumed (e.g. to train longer); everything else must match
RESUMABLE_CHANGES = {"train.steps", "train.budgets", "train.log_every", "train.checkpoint_every", "train.progress",
                     "train.tensorboard", "train.keep_last", "train.device", "sample_every", "reference_size",
                     "eval_alphas", "eval_noise_scale"}  # evaluation-only: a finished run keeps the figures it reported
RETIRED_KEYS = {"retrieve_k"}  # keys older runs recorded that no longer exist: they never block a resume


def recipe_class(name: str) -> RecipeSpec:
    """The recipe called ``name``: call it with (config, data info) to build it."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def _preset(preset: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("lzn.recipes").joinpath("presets", f"{preset}.yaml").read_text()
    return yaml_load(text) or {}


def preset_overrides(preset: str, recipe: str) -> dict[str, Any]:
    """The preset file's ``common`` section merged with its section for ``recipe`` (if any)."""
    data = _preset(preset)
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
    """Defaults <- preset's ``common`` section <- the recipe's defining values (``nogen``: rf_weight 0) <-
    the preset's section for the recipe <- config file <- ``--set`` items, each checked against the typed
    config. A value that contradicts what defines the recipe (an encoder for ``rf``) is refused."""
    spec = recipe_class(recipe)
    data = _preset(preset) if preset else {}
    cfg = merge(spec.config_cls(), data.get("common", {}))
    cfg = merge(cfg, dict(spec.defaults))
    cfg = merge(cfg, data.get(recipe, {}))
    if config_file:
        cfg = merge(cfg, _config_file(config_file, recipe))
    if sets:
        cfg = merge(cfg, parse_set(sets))
    for key, value in spec.defaults:
        if getattr(cfg, key) != value:
            base = spec.cls.name
            raise ConfigError(f"{key}: recipe {recipe!r} is {base!r} with {key}={'null' if value is None else value}; "
                              f"remove the {key} setting, or train recipe {base!r}")
    return cfg


def _config_file(path: str, recipe: str) -> dict[str, Any]:
    """A ``--config`` file's overrides; a run's own ``run.yaml`` gives the settings under its ``config:``."""
    data = load_yaml(path)
    if {"recipe", "data_info", "config"} <= set(data) and isinstance(data["config"], dict):
        if data["recipe"] != recipe:
            raise ConfigError(f"--config {path} is the run.yaml of a {data['recipe']!r} run; train recipe "
                              f"{data['recipe']!r} with it, or give a file of {recipe!r} settings")
        return data["config"]
    return data


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("kwargs", "lr", "budgets", "ema_decay"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def data_fingerprint(data: Data) -> dict[str, Any]:
    """What identifies a training set without reading its images: its size, class counts and, for shards, a
    hash of the split's shard list (names and sample counts). Stored in run.yaml; a resume compares it."""
    import hashlib

    out: dict[str, Any] = {"num_images": len(data), "class_names": list(data.class_names) if data.class_names else None,
                           "class_counts": (torch.bincount(data.labels, minlength=data.num_classes).tolist()
                                            if data.labels is not None else None)}
    if isinstance(data, ShardedDataset):
        listing = json.dumps([data.index["shards"], data.index["num_samples"]], sort_keys=True)
        out["shards"] = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return out


def _check_same_data(run_dir: Path, old: dict[str, Any], info: DataInfo, fingerprint: dict[str, Any]) -> None:
    """A run resumes on the data it was trained on (``allow_other_data`` skips this)."""
    before = {**(old.get("data_info") or {}), **(old.get("data_fingerprint") or {})}
    now = {**dataclasses.asdict(info), **fingerprint}
    changed = sorted(k for k in before if k in now and before[k] != now[k])
    if changed:
        shown = ", ".join(f"{k} {_brief(before[k])} -> {_brief(now[k])}" for k in changed)
        raise ConfigError(f"{run_dir} was trained on other data ({shown}); resume it on the same data, choose "
                          "another --out, or pass --allow-other-data to continue on this data anyway")


def _brief(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_existing_run(run_dir: Path, recipe: str, config: dict[str, Any], info: DataInfo | None = None,
                        fingerprint: dict[str, Any] | None = None) -> None:
    """A folder holding checkpoints must have been started with this recipe and config (up to RESUMABLE_CHANGES;
    keys added since hold their defaults). A folder without checkpoints has nothing to protect: it starts anew."""
    has_checkpoints = latest_checkpoint(run_dir) is not None
    if not RunFolder(run_dir).run_file.exists():
        if has_checkpoints:
            raise ConfigError(f"{run_dir} has checkpoints but no {RUN_FILE}; refusing to reuse it")
        return
    if not has_checkpoints:
        return
    old = read_run_file(run_dir)
    if old.get("recipe") != recipe:
        raise ConfigError(f"{run_dir} holds a {old.get('recipe')!r} run, not {recipe!r}; choose another --out")
    a, b = _flat(old.get("config", {})), _flat(json.loads(json.dumps(config)))
    added = _flat(json.loads(json.dumps(dataclasses.asdict(recipe_class(recipe).config_cls()))))  # defaults
    changed = sorted(k for k in set(a) | set(b)
                     if a.get(k, added.get(k)) != b.get(k) and k not in RESUMABLE_CHANGES | RETIRED_KEYS)
    if changed:
        raise ConfigError(f"{run_dir} was started with a different config ({', '.join(changed)}); "
                          "resume with the same settings or choose another --out")
    if info is not None and fingerprint is not None:
        _check_same_data(run_dir, old, info, fingerprint)


def _check_out_dir(run_dir: Path, data: DataConfig) -> None:
    """The run folder must not lie inside an image folder it trains on (it would be read as data)."""
    if data.name != "folder":
        return
    here = run_dir.resolve()
    for key, root in (("data.root", data.root), ("data.test_root", data.test_root)):
        if root and (here == Path(root).resolve() or Path(root).resolve() in here.parents):
            raise ConfigError(f"--out {run_dir} lies inside the image folder {key}={root}; its files would be "
                              "read as data (an extra class): choose a run folder outside it")


def _check_resumable(run_dir: Path, state: dict[str, Any], trainer: Trainer) -> None:
    """A run (or a module) cannot be shortened; one whose LR decays over its budgets cannot change them."""
    done = int(state["step"])
    if done > trainer.total_steps:
        raise ConfigError(f"{run_dir} has already trained {done} steps, more than the {trainer.total_steps} asked "
                          f"for now; a run cannot be shortened: choose another --out, or set train.steps >= {done} "
                          "to continue it")
    old = state.get("config", {})
    old_budgets = old.get("budgets") or {}
    old_total = old.get("steps") if old.get("steps") is not None else max(old_budgets.values(), default=done)
    for name, budget in trainer.budgets.items():
        old_budget = int(old_budgets.get(name, old_total))
        if (trained := min(done, old_budget)) > budget:
            raise ConfigError(f"module {name!r} of {run_dir} has trained {trained} steps, more than its new budget "
                              f"of {budget} (train.budgets / train.steps); choose another --out")
        if trainer.config.lr_decay is not None and budget != old_budget:
            raise ConfigError(f"{run_dir} decays the LR of module {name!r} over its budget of {old_budget} steps "
                              f"(train.lr_decay={trainer.config.lr_decay}); a budget of {budget} would change that "
                              f"schedule mid-run: keep train.steps / train.budgets, or choose another --out")


def _check_optional_packages(cfg: RecipeConfig) -> None:
    """Optional packages a config needs, checked before anything is written."""
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install 'lzn[tensorboard]' "
                          "(or set train.tensorboard=false)")


def _write_run_file(run_dir: Path, recipe: str, info: DataInfo, config: dict[str, Any],
                    fingerprint: dict[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump({"recipe": recipe, "data_info": dataclasses.asdict(info), "config": config,
                           "data_fingerprint": fingerprint}, sort_keys=False)
    atomic_write_text(RunFolder(run_dir).run_file, text)


def train(recipe: str, cfg: RecipeConfig, run_dir: str | Path, *, allow_other_data: bool = False) -> dict[str, Any]:
    """Train ``recipe`` with ``cfg`` in ``run_dir`` and return its results (also in ``results.json``).

    Everything (config, data, networks, optional packages, an existing checkpoint) is checked before
    the first write. An existing run folder resumes from its newest checkpoint; a finished run with the
    same step budget is left untouched and its stored results are returned; a larger budget continues
    it; a smaller one is refused. Under torchrun this joins the process group and leaves it at the end."""
    joined = not distributed.is_active() and distributed.init_from_env()
    try:
        return _train(recipe, cfg, run_dir, allow_other_data)
    finally:
        if joined:
            distributed.shutdown()


def _train(recipe: str, cfg: RecipeConfig, run_dir: str | Path, allow_other_data: bool = False) -> dict[str, Any]:
    run_dir = Path(run_dir)
    device = pick_device(cfg.train.device)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=str(device)))
    config = dataclasses.asdict(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file; expected a run folder (new, or one to resume)")
    _check_out_dir(run_dir, cfg.data)
    _check_optional_packages(cfg)
    train_data = load_split(cfg.data, cfg.data.train_split)
    check_labels(train_data)
    eval_split, eval_data = _evaluation_data(cfg.data, train_data)
    if eval_split is not None and eval_split != cfg.data.train_split:
        check_labels(train_data, eval_data)
    info = data_info(train_data)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    rec = recipe_class(recipe)(cfg, info)
    for m in rec.modules.values():
        m.to(device)
    rec.attach_data(train_data)
    hooks = []
    if cfg.sample_every and rec.lzn is not None and rec.lzn.decoder is not None:  # a model that draws images
        def sample_hook(trainer: Trainer, step: int) -> None:
            if distributed.is_main():
                with trainer.ema_weights(), torch.no_grad():
                    rec.sample_grid(RunFolder(run_dir).sample_grid(step))

        hooks.append((cfg.sample_every, sample_hook))
    try:
        trainer = Trainer(rec.modules, rec.step, rec.batches, cfg.train, run_dir, hooks=hooks)
    except ValueError as err:  # per-module settings that name the wrong modules: config errors of train.*
        raise ConfigError(f"train.{err}") from None
    fingerprint = data_fingerprint(train_data)
    _check_existing_run(run_dir, recipe, config, None if allow_other_data else info,  # after every check of the
                        fingerprint)  # new config itself
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        state = load_checkpoint(latest)  # a corrupted checkpoint fails here, before anything is written
        _check_resumable(run_dir, state, trainer)
        if int(state["step"]) == trainer.total_steps and RunFolder(run_dir).results.is_file():
            log.info("%s already finished (%d steps); nothing to do. To train longer, raise train.steps.",
                     run_dir, trainer.total_steps)
            return read_results(run_dir)
    if eval_split == cfg.data.train_split:
        how = ("write it with `lzn data shard TEST_SOURCE --out DIR --split test`, or give data.test_root"
               if cfg.data.name == "shards" else "give data.test_root, data.holdout, or a root with train/ and test/")
        log.warning("data set %r has no %r split (%s): results are measured on the training set and named train_*",
                    cfg.data.name, cfg.data.test_split, how)
    lock = RunLock(run_dir)
    busy: RunFolderBusy | None = None
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except RunFolderBusy as err:
            busy = err
    if not distributed.all_true(busy is None, device):  # every rank stops when rank 0 cannot take the folder
        raise busy or RunFolderBusy(f"{run_dir} is in use by another run (rank 0 says which)")
    try:
        return _train_locked(recipe, rec, trainer, cfg, run_dir, info, config, train_data, eval_split, eval_data,
                             fingerprint)
    finally:
        lock.release()


def _train_locked(recipe: str, rec: Recipe, trainer: Trainer, cfg: RecipeConfig, run_dir: Path, info: DataInfo,
                  config: dict[str, Any], train_data: Data, eval_split: str | None,
                  eval_data: Data | None, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Training, evaluation and export, while this process holds the run folder (rank 0) or its peers do."""
    if distributed.is_main():
        _write_run_file(run_dir, recipe, info, config, fingerprint)
    try:
        last = trainer.fit()
    finally:
        if rec.loader is not None:
            rec.loader.close()
    results: dict[str, Any] = {"recipe": recipe, "steps": trainer.step, "final_loss": last.get("loss")}
    if eval_split is not None:
        results["evaluated_on"] = eval_split
    with trainer.ema_weights() if trainer.emas else nullcontext(), torch.no_grad():
        check_finite_weights(rec.modules)
        model = rec.lzn
        if model is not None and model.encoder is not None and cfg.reference_size:  # from the EMA encoder
            picked = reference_indices(len(train_data), train_data.labels, min(cfg.reference_size, len(train_data)),
                                       seed=cfg.train.seed)  # read only these images of a sharded set
            model.build_reference_from(train_data.batch(picked)[0], batch_size=cfg.eval_batch_size)
        rec.build_references()  # e.g. the text reference of text-to-image generation
        if distributed.is_main():  # before evaluation, which reads data that may be gone
            if model is not None:
                model.save_pretrained(str(RunFolder(run_dir).model))
            rec.export(run_dir)  # a baseline's own network (the classifier's)
        sections: dict[str, Any] = {}
        if eval_split is not None and eval_data is not None:
            sections = _evaluate(rec, eval_data, eval_split, run_dir, exported=model is not None)
            results.update(flat_figures(sections))
    if distributed.is_main():
        if sections:  # the same figures in lzn evaluate's schema; figures of an earlier model.pt would be stale
            metrics = {"evaluated_on": eval_split, **sections}
            atomic_write_text(RunFolder(run_dir).metrics, json.dumps(metrics, indent=2) + "\n")
        atomic_write_text(RunFolder(run_dir).results, json.dumps(results, indent=2) + "\n")
    return results


Data = ImageDataset | ShardedDataset


def _evaluate(rec: Recipe, data: Data, split: str, run_dir: Path, *, exported: bool) -> dict[str, Any]:
    """``rec.evaluate`` on the held-out split; a split that can no longer be read (deleted or moved during
    training) is one error naming it, after the model was exported, and the rerun evaluates without training."""
    try:
        if not isinstance(data, ImageDataset) and not rec.streams_eval:
            data = data.load()  # this recipe's evaluation takes the split in memory
        return rec.evaluate(data, run_dir if distributed.is_main() else None, split=split)
    except OSError as err:
        saved = f"the model is exported to {RunFolder(run_dir).model}, but " if exported else ""
        raise OSError(f"training finished ({saved}the {split!r} split could not be read to evaluate it: {err}); "
                      f"put the split back and rerun the same command: it evaluates without training again") from err


def _evaluation_data(data: DataConfig, train_data: Data) -> tuple[str | None, Data | None]:
    """The held-out split when the data has one; otherwise the training set, named "train" so that no
    training-set figure is ever reported as a test figure; None when ``data.test_split`` is null."""
    if data.test_split is None:
        return None, None
    if has_split(data, data.test_split):
        return data.test_split, load_split(data, data.test_split, class_names=train_data.class_names)
    return data.train_split, train_data

