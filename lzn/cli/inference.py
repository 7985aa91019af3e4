"""The inference commands (sample, classify, embed, reconstruct, evaluate, retrieve): each loads an exported
model (``RUN_DIR/model`` or a ``save_pretrained`` folder) and calls the model or ``lzn.eval``; no training
recipe is rebuilt. A run folder also supplies its data config and evaluation settings (``run.yaml``).
A model with a text type (``lzn train text``) also samples for captions (``sample --caption``), classifies
by class prompts (``classify --prompts`` / ``--prompt-template``) and retrieves images for captions
(``retrieve``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import torch

from lzn.cli.output import say
from lzn.data import ImageDataset
from lzn.models import LatentZoningNetwork


class Loaded:
    """A model with where it came from: ``meta`` is the run's ``run.yaml`` (None for a bare model folder)."""

    def __init__(self, model: LatentZoningNetwork, meta: dict[str, Any] | None, path: Path) -> None:
        self.model, self.meta, self.path = model, meta, path

    def setting(self, key: str, default: Any) -> Any:
        """A value of the run's resolved config (e.g. ``eval_batch_size``), else ``default``."""
        config = (self.meta or {}).get("config", {})
        return config.get(key, default) if isinstance(config, dict) else default


def load(path: str, device: str | None) -> Loaded:
    """``path``: a model folder (config.json + model.safetensors) or a run folder with ``model/``."""
    from lzn.distributed import pick_device
    from lzn.recipes.config import load_yaml

    p = Path(path)
    dev = pick_device(device)
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return Loaded(LatentZoningNetwork.from_pretrained(str(p), dev).eval(), None, p)
    if not (p / "run.yaml").is_file():
        raise ValueError(f"{p} is neither an lzn run folder (run.yaml) nor a model folder (config.json and "
                         "model.safetensors); train one with `lzn train` or pass a save_pretrained folder")
    meta = load_yaml(p / "run.yaml")
    if not (p / "model" / "config.json").is_file():
        if meta.get("recipe") == "classifier":
            raise ValueError(f"{p} holds a 'classifier' run: a plain supervised classifier, not an LZN, so it exports "
                             "no model for these commands; its test accuracy is in results.json")
        raise ValueError(f"{p} has no exported model yet (model/ is written when training finishes); "
                         "finish it by rerunning the same `lzn train` command")
    return Loaded(LatentZoningNetwork.from_pretrained(str(p / "model"), dev).eval(), meta, p)


def raw_weights_model(loaded: Loaded) -> LatentZoningNetwork | None:
    """The run's model with the last checkpoint's live weights instead of the exported EMA weights (None for
    a bare model folder or a run without EMA). It has no reference bank: the bank holds anchors of the EMA
    encoder, so only the batch protocol applies to these weights."""
    from lzn.training.checkpoint import live_weights

    if loaded.meta is None:
        return None
    live = live_weights(loaded.path)
    if live is None:
        return None
    model = LatentZoningNetwork.from_pretrained(str(loaded.path / "model"), loaded.model.device)
    for name, module in model.parts().items():
        module.load_state_dict(live[name])
    model.reference = None
    return model.eval()


def protocol_batches(loaded: Loaded) -> tuple[int, ...]:
    """Evaluation anchor sets of the accuracy sweep: the run's training batch (the paper's protocol: a test
    anchor set as large as the training one, method.md §8.2) and its eval_batch_size; a bare model folder:
    2000."""
    sizes = (loaded.setting("batch_size", None), loaded.setting("eval_batch_size", 2000))
    return tuple(dict.fromkeys(int(s) for s in sizes if s))


def data(args: argparse.Namespace, loaded: Loaded):  # type: ignore[no-untyped-def]
    """The ``--split`` of the data set to run on: the run's own (``--root`` to move it), or ``--data NAME``."""
    from lzn.data import DataNotFoundError, load_split

    cfg = data_config(args, loaded)
    try:
        return load_split(cfg, args.split, class_names=loaded.model.class_names)
    except DataNotFoundError as err:
        if args.split == "train" or "split" not in str(err):
            raise
        raise DataNotFoundError(f"{str(err).split(': give')[0]}: use --split train, or train with a test source "
                                "(data.test_root, data.holdout, or train/ and test/ sub-folders)") from None


def data_config(args: argparse.Namespace, loaded: Loaded):  # type: ignore[no-untyped-def]
    """The run's data config (``--root`` to move it), or one for ``--data NAME`` sized for the model."""
    import dataclasses

    from lzn.data import SOURCES, DataConfig

    if args.data is not None and args.data not in SOURCES:
        raise ValueError(f"--data must be one of {', '.join(sorted(SOURCES))}, got {args.data!r}")
    model, run_data = loaded.model, (loaded.meta or {}).get("config", {}).get("data")
    if args.data is None and run_data is None:
        raise ValueError(f"{loaded.path} is a bare model folder: name the data with --data (digits, fashion, "
                         "cifar10, folder, arrays) and --root")
    if args.data is None or (run_data is not None and args.data == run_data.get("name")):
        cfg = DataConfig(**run_data)
        if args.root is not None:
            cfg = dataclasses.replace(cfg, root=args.root)
    else:
        net = model.encoder if model.encoder is not None else model.decoder
        size = getattr(net, "image_size", None) if args.data in ("digits", "folder") else None
        channels = getattr(net, "image_channels", None) if args.data == "folder" else None
        cfg = DataConfig(name=args.data, root=args.root, size=None if (args.data == "digits" and size == 8) else size,
                         channels=channels)
    return cfg


def chunks(ds: Any, size: int) -> Any:
    """(images, labels) of consecutive chunks of ``size`` of an in-memory or sharded set (a sharded one is
    read chunk by chunk, never whole)."""
    from lzn.data import iter_batches

    return iter_batches(ds, size)


def parse_labels(text: str, model: LatentZoningNetwork) -> list[int]:
    """``--labels 0,1,2`` or class names ``cat,dog`` -> class indices (``model.class_index`` each)."""
    names = model.class_names or ()
    if text.strip() in names:  # one class whose name holds a comma
        return [model.class_index(text.strip())]
    out = []
    for item in (t.strip() for t in text.split(",")):
        try:
            out.append(model.class_index(item))
        except (TypeError, ValueError):
            names = model.class_names
            valid = f"0..{model.num_classes - 1}" + (f" or names {', '.join(names)}" if names else "")
            raise ValueError(f"--labels expects comma-separated classes ({valid}), got {item!r}") from None
    return out


def npy_path(out: str) -> Path:
    """``--out x`` writes ``x.npy`` (numpy's convention), and the message names that file."""
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a directory; expected a .npy file path")
    path = Path(out)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    if path.is_dir():
        raise ValueError(f"--out {out} is a directory; expected a .npy file path")
    return path


def read_captions(args: argparse.Namespace) -> list[str] | None:
    """The captions of ``--caption`` (repeatable) and ``--captions-file`` (one per line, blank lines
    skipped), in that order; None when neither is given."""
    captions = list(args.caption or [])
    if getattr(args, "captions_file", None):
        path = Path(args.captions_file)
        if not path.is_file():
            raise ValueError(f"--captions-file {args.captions_file}: no such file; expected a text file with one "
                             "caption per line")
        raw = path.read_bytes().splitlines()
        for number, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"--captions-file {args.captions_file}: line {number} is not UTF-8 text; save the "
                                 "file as UTF-8") from None
        lines = [line.decode("utf-8").strip() for line in raw]
        found = [line for line in lines if line]
        if not found:
            raise ValueError(f"--captions-file {args.captions_file} holds no caption (one per line, blank lines "
                             "skipped)")
        captions += found
    elif not captions:
        return None
    if any(not c.strip() for c in captions):
        raise ValueError('--caption is empty; expected a text such as --caption "a fat zero"')
    return [c.strip() for c in captions]


def need_text(loaded: Loaded, flag: str) -> None:
    """A ValueError naming ``flag`` when the model has no text type."""
    types = loaded.model.data_types
    if "text" not in types:
        raise ValueError(f"{flag} needs a model with a text type; the model at {loaded.path} has data types "
                         f"{', '.join(types) or 'none'}: train one with `lzn train text --preset digits --out RUN`")


def margin_label(text: str, width: int = 32) -> str:
    """``text`` cut to ``width`` characters for a grid's left margin."""
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def sample(args: argparse.Namespace) -> int:
    from lzn.viz import save_image_grid

    default = Path(args.run_dir) / "samples" / "lzn-sample.png"
    out = Path(args.out) if args.out else default
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} is {'a directory' if out.is_dir() else 'not a .png'}; "
                         "expected a .png file path")
    captions = read_captions(args)
    if captions is not None and (args.labels is not None or args.num is not None):
        raise ValueError(f"give --caption / --captions-file (text-to-image) or "
                         f"{'--labels' if args.labels is not None else '--num'}, not both")
    if captions is None and args.per_caption is not None:
        raise ValueError('--per-caption applies to captions; add --caption "a fat zero" (or --captions-file)')
    if args.labels is not None and args.num is not None:
        raise ValueError("give --num (unconditional samples) or --labels (one sample per listed class), not both")
    if args.labels is not None and not args.labels.strip():
        raise ValueError("--labels is empty; expected comma-separated classes such as 0,1,2 or cat,dog")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.decoder is None:
        raise ValueError(f"the model at {loaded.path} has no image decoder to sample from "
                         "(representation / nogen runs only encode)")
    if loaded.meta is None and not args.out:
        out = Path("lzn-sample.png")  # never write into a model folder
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    if captions is not None:
        need_text(loaded, "--caption")
        per = args.per_caption or 8
        res = model.generate(given=("text", [c for c in captions for _ in range(per)]), sampler=args.sampler,
                             steps=args.steps, generator=gen)
        path = save_image_grid(res.images, out, nrow=per, row_labels=[margin_label(c) for c in captions])
        say(f"samples ({per} per caption, one row each): {Path(path).resolve()}")
        return 0
    labels = None
    if args.labels:
        if model.num_classes == 0:
            raise ValueError(f"--labels needs a model with classes; the model at {loaded.path} has none")
        labels = parse_labels(args.labels, model)
    res = model.generate(num=None if labels is not None else (args.num or 64), labels=labels, sampler=args.sampler,
                         steps=args.steps, generator=gen)
    path = save_image_grid(res.images, out)
    if res.labels is not None:
        names = model.class_names
        shown = [f"{int(v)} ({names[int(v)]})" if names and names[int(v)] != str(int(v)) else str(int(v))
                 for v in res.labels]
        say(f"labels: {','.join(shown)}")
    say(f"samples: {Path(path).resolve()}")
    return 0


def class_prompts(args: argparse.Namespace, ds: Any) -> list[str] | None:  # ds: ImageDataset
    """One prompt per class of ``ds``: ``--prompts`` as given, or ``--prompt-template`` filled with the class
    words (``{cls}``: "zero".."nine" for digits, else the class names; ``{kind}``: digit / item)."""
    from lzn.data.captions import class_words

    if args.prompts is None and args.prompt_template is None:
        return None
    k = ds.num_classes
    if args.prompt_template is not None:
        if k == 0:
            raise ValueError(f"--prompt-template needs labelled data with classes; the {args.split} split of "
                             f"{ds.name} has none: give one text per class with --prompts")
        words, kind = class_words(ds.class_names, k)
        return [args.prompt_template.format(cls=w, kind=kind) for w in words]
    prompts = [p.strip() for p in args.prompts]
    if any(not p for p in prompts):
        raise ValueError('--prompts holds an empty text; expected one text per class, e.g. --prompts "the digit zero" '
                         '"the digit one" ...')
    if k and len(prompts) != k:
        names = f" ({', '.join(ds.class_names)})" if ds.class_names else ""
        raise ValueError(f"--prompts gives {len(prompts)} texts, but {ds.name} has {k} classes{names}: give one per "
                         "class, in class order")
    return prompts


def classify(args: argparse.Namespace) -> int:
    from lzn.atomic import atomic_save_npy

    if args.prompts is not None and args.prompt_template is not None:
        raise ValueError("give --prompts (one text per class) or --prompt-template (e.g. \"the digit {cls}\"), "
                         "not both")
    if args.prompt_template is not None:
        import string

        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(args.prompt_template) if f is not None}
        except ValueError as err:
            raise ValueError(f"--prompt-template {args.prompt_template!r}: {err}") from None
        if "cls" not in fields or fields - {"cls", "kind"}:
            raise ValueError(f"--prompt-template must hold {{cls}} (the class word) and no field other than {{kind}}, "
                             f"e.g. \"the digit {{cls}}\"; got {args.prompt_template!r}")
    out = npy_path(args.out) if args.out else None
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    prompted = args.prompts is not None or args.prompt_template is not None
    if prompted:
        need_text(loaded, "--prompts" if args.prompts is not None else "--prompt-template")
        if model.encoder is None:
            raise ValueError(f"the model at {loaded.path} has no image encoder to classify with")
    elif model.label_anchors is None or model.encoder is None:
        also = (" (this model has a text type: classify by class prompts with --prompt-template \"the digit {cls}\" "
                "or --prompts)" if "text" in model.data_types else "")
        raise ValueError(f"the model at {loaded.path} has no label decoder (label anchors and an image encoder); "
                         f"classify needs a joint or nogen model{also}")
    batch = int(loaded.setting("eval_batch_size", 2000))
    context: Literal["reference", "batch"] = args.context or ("reference" if model.reference is not None else "batch")
    ds = data(args, loaded)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    how = (f"reference bank of {model.reference.shape[0]} anchors" if context == "reference" and model.reference is not None
           else f"anchor sets of {min(batch, len(ds))} images")
    prompts = None
    if prompted:
        prompts = class_prompts(args, ds)
        assert prompts is not None
        alpha = args.noise_scale if args.noise_scale is not None else 0.0
        how = f"prompt classification over {len(prompts)} prompts such as {prompts[0]!r}, {how}"
    else:
        alpha = args.noise_scale if args.noise_scale is not None else float(loaded.setting("eval_noise_scale", 1.0))
    parts = []
    for images, _ in chunks(ds, batch):  # each chunk one anchor set of the batch protocol, as in memory
        extra = {"prompts": prompts} if prompts is not None else {}
        parts.append(model.classify(images.to(model.device), noise_scale=alpha, batch_size=batch, generator=gen,
                                    context=context, **extra).cpu())
    pred = torch.cat(parts)
    if ds.labels is not None:
        acc = (pred == ds.labels).float().mean().item()
        say(f"{args.split} accuracy: {acc:.4f} on {len(pred)} images ({how}, alpha = {alpha:g})")
    else:  # unlabelled: no accuracy, but say what was predicted
        counts = torch.bincount(pred, minlength=len(prompts) if prompts else model.num_classes).tolist()
        names = prompts or list(model.class_names or range(len(counts)))
        shown = ", ".join(f"{str(n)!r}: {c}" for n, c in zip(names, counts))
        say(f"{args.split} split of {ds.name} is unlabelled (no accuracy); predictions of {len(pred)} images "
            f"({how}): {shown}" + ("" if out else "; write them with --out FILE.npy"))
    if out is not None:
        atomic_save_npy(out, pred.numpy())
        say(f"predictions: {out.resolve()}")
    return 0


def retrieve(args: argparse.Namespace) -> int:
    """The ``--k`` best images of the split for each caption (text -> image retrieval), as a labelled grid."""
    from lzn.viz import save_image_grid

    captions = read_captions(args)
    if captions is None:
        raise ValueError('retrieve needs captions: --caption "a fat zero" (repeatable) or --captions-file FILE')
    default = Path(args.run_dir) / "samples" / "lzn-retrieve.png"
    out = Path(args.out) if args.out else default
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} is {'a directory' if out.is_dir() else 'not a .png'}; "
                         "expected a .png file path")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    need_text(loaded, "retrieve")
    if model.encoder is None:
        raise ValueError(f"the model at {loaded.path} has no image encoder to retrieve images with")
    if loaded.meta is None and not args.out:
        out = Path("lzn-retrieve.png")  # never write into a model folder
    ds = data(args, loaded)
    batch = int(loaded.setting("eval_batch_size", 2000))
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    images = ds.images if isinstance(ds, ImageDataset) else ds.load().images  # every image is a candidate
    choices = model.retrieve("text", captions, "image", images.to(model.device), k=args.k, batch_size=batch,
                             generator=gen, context=args.context)
    idx = choices.indices.cpu()  # (len(captions), k)
    for caption, row in zip(captions, idx.tolist()):
        shown = [f"{i} ({ds.class_names[int(ds.labels[i])] if ds.class_names else int(ds.labels[i])})"
                 if ds.labels is not None else str(i) for i in row]
        say(f"{caption!r}: {', '.join(shown)}")
    path = save_image_grid(images[idx.flatten()], out, nrow=idx.shape[1],
                           row_labels=[margin_label(c) for c in captions])
    say(f"best {idx.shape[1]} of {len(ds)} {args.split} images per caption (one row each): {Path(path).resolve()}")
    return 0


def embed(args: argparse.Namespace) -> int:
    from lzn.atomic import atomic_save_npy
    from lzn.eval import extract_features

    out = npy_path(args.out)
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.encoder is None:
        raise ValueError(f"the model at {loaded.path} has no image encoder to embed with")
    ds = data(args, loaded)
    encoder = model.encoder
    fn = encoder if args.head else encoder.features
    with torch.no_grad():
        feats = extract_features(fn, ds.images if isinstance(ds, ImageDataset) else ds, device=model.device)
    atomic_save_npy(out, feats.numpy())
    say(f"embeddings {tuple(feats.shape)}: {out.resolve()}")
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    from lzn.eval import reconstruction_error
    from lzn.viz import save_image_grid

    out = Path(args.out) if args.out else Path(args.run_dir) / "samples"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is an existing file; expected a folder for reconstructions.png")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.decoder is None:
        raise ValueError(f"the model at {loaded.path} has no decoder to reconstruct with")
    if loaded.meta is None and not args.out:
        out = Path(".")
    model_dir = (loaded.path / "model" if loaded.meta else loaded.path).resolve()
    if loaded.meta is not None and out.resolve() == loaded.path.resolve():
        raise ValueError(f"--out {args.out} would write over the run's own reconstructions.png (made at the end of "
                         "training, shown in its report); choose another folder (default: RUN_DIR/samples)")
    if out.resolve() == model_dir or model_dir in out.resolve().parents:
        raise ValueError(f"--out {args.out} lies inside the model folder {model_dir}; choose another folder")
    ds = data(args, loaded)
    n = min(args.num, len(ds))
    labels = ds.labels[:n] if ds.labels is not None else None
    sampler = args.sampler or loaded.setting("sampler", "euler")
    steps = args.steps or loaded.setting("sampler_steps", 20)
    originals = ds.batch(torch.arange(n))[0]  # (n, C, H, W); a sharded set reads only these
    err, rec = reconstruction_error(model, originals, labels, sampler=sampler, steps=steps,
                                    context=args.context or "batch")
    m = min(n, 32)
    pairs = torch.stack([originals[:m], rec[:m]], dim=1).flatten(0, 1)  # (2m, C, H, W): original, reconstruction
    path = save_image_grid(pairs, out / "reconstructions.png", nrow=8)
    say(f"reconstruction L2 per image: {err:.4f} ({n} {args.split} images, {sampler})")
    say(f"reconstructions (each original followed by its reconstruction, left to right): {path.resolve()}")
    return 0


def metrics_out(args: argparse.Namespace, loaded: Loaded) -> tuple[Path, dict[str, Any]]:
    """Where ``lzn evaluate`` writes (``--out``, default RUN_DIR/metrics.json, or ./metrics.json beside a bare
    model folder) and the metrics already there (empty for a new file). Refused: a folder, a name not ending
    .json, an existing file that is not a metrics file, and any existing file inside the model folder."""
    out = Path(args.out) if args.out else (loaded.path / "metrics.json" if loaded.meta else Path("metrics.json"))
    if out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; expected a .json file path")
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out {args.out} does not end in .json; expected a .json file path")
    model_dir = (loaded.path / "model" if loaded.meta else loaded.path).resolve()
    inside = model_dir == out.resolve().parent or model_dir in out.resolve().parents
    if not out.exists():
        return out, {}
    if inside:
        raise ValueError(f"--out {out} is an existing file of the model folder {model_dir}; lzn evaluate never "
                         "writes over a model's files: choose a new .json path")
    return out, read_metrics(out)


def read_metrics(path: Path) -> dict[str, Any]:
    """The metrics of an earlier ``lzn evaluate`` at ``path``; a ValueError for any other file."""
    import json

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        old = None
    if not isinstance(old, dict) or "evaluated_on" not in old:
        raise ValueError(f"--out {path} exists and is not a metrics file of lzn evaluate; it is left as it is: "
                         "choose a new .json path")
    return old


def why_not(metric: str, model: LatentZoningNetwork, extractor: Any, train: Any, test: Any) -> str | None:
    """Why ``metric`` does not apply to this model and data (None: it applies), by the rules of
    ``lzn.eval.evaluate_model``."""
    data = test if test is not None else train
    if metric in ("fid", "kid", "pr", "recon") and model.decoder is None:
        return "the model has no image decoder"
    if metric in ("fid", "kid", "pr"):
        return "--extractor none" if extractor is None else None
    if metric == "recon":
        return None
    if model.encoder is None:
        return "the model has no image encoder"
    if metric == "accuracy":
        if model.label_anchors is None:
            also = " (a text model: lzn classify --prompt-template)" if "text" in model.data_types else ""
            return f"the model has no label decoder{also}"
        return "the data are unlabelled" if data.labels is None else None
    if metric in ("probe", "knn"):
        if test is None:
            return "the data have no test split"
        return "the data are unlabelled" if test.labels is None or train.labels is None else None
    return "fewer than 2 images" if len(data) < 2 else None


def evaluate(args: argparse.Namespace) -> int:
    import json

    from lzn.atomic import atomic_write_text
    from lzn.data import has_split, load_split
    from lzn.eval import METRICS, evaluate_model, fast_extractor, inception_extractor, metric_rows
    from lzn.eval.features import INSTALL_HINT
    from lzn.eval.suite import merge_results

    loaded = load(args.run_dir, args.device)
    out, _ = metrics_out(args, loaded)
    metrics = args.metrics
    extractor = None
    if args.extractor != "none" and loaded.model.decoder is not None and (metrics is None or
                                                                          set(metrics) & {"fid", "kid", "pr"}):
        try:
            extractor = fast_extractor() if args.extractor == "fast" else inception_extractor()  # before any work
        except ImportError as err:
            raise ImportError(f"{str(err).rstrip('.')}; or skip sample quality with --extractor none") from None
        extractor = extractor.to(loaded.model.device)  # features where the model runs (--device)
    cfg = data_config(args, loaded)
    names = loaded.model.class_names
    train = load_split(cfg, "train", class_names=names)
    test = load_split(cfg, "test", class_names=names) if has_split(cfg, "test") else None
    asked = metrics or METRICS
    reasons = {m: r for m in asked if (r := why_not(m, loaded.model, extractor, train, test)) is not None}
    said = "; ".join(f"{m}: {r}" for m, r in reasons.items())
    if len(reasons) == len(asked):
        raise ValueError(f"no requested metric applies to this model and data ({said}); {out} is left as it is")
    batch_sizes = args.batch_sizes or protocol_batches(loaded)
    results = evaluate_model(loaded.model, train, test, extractor=extractor, num_samples=args.num,
                             sampler=args.sampler or loaded.setting("sampler", "euler"),
                             sampler_steps=args.steps or loaded.setting("sampler_steps", 20),
                             eval_batch_size=int(loaded.setting("eval_batch_size", 2000)), alphas=args.alphas,
                             batch_sizes=batch_sizes, metrics=metrics, seed=args.seed)
    raw = raw_weights_model(loaded) if args.weights == "both" else None
    wanted = [m for m in (metrics or ("accuracy", "probe", "knn")) if m in ("accuracy", "probe", "knn")]
    if raw is not None and wanted:  # the paper logs both; sample quality stays with the EMA weights
        raw_results = evaluate_model(raw, train, test, eval_batch_size=int(loaded.setting("eval_batch_size", 2000)),
                                     alphas=args.alphas, batch_sizes=batch_sizes, metrics=wanted, seed=args.seed,
                                     progress=False)
        raw_results.pop("evaluated_on")
        if raw_results:
            results["raw_weights"] = raw_results
    if metrics is not None and reasons:
        say(f"not measured: {said}")
    earlier = read_metrics(out) if out.exists() else {}  # read again now: merge into what is there at the end
    merged = merge_results(earlier, results)
    atomic_write_text(out, json.dumps(merged, indent=2) + "\n")
    rows = metric_rows(results)  # (metric, value, what it was measured on)
    width = max((len(r[0]) for r in rows), default=0)
    for name, value, detail in rows:
        say(f"{name:<{width}}  {value:>8}  {detail}")
    kept = len(metric_rows(merged)) - len(rows)
    say(f"evaluation: {out.resolve()}" + (f" (merged: {kept} earlier figure(s) kept with their own settings)"
                                          if earlier and kept > 0 else ""))
    return 0
