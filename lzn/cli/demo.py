"""``lzn demo``: the joint recipe (or, with --text, the text recipe) on digits, then what it gives."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lzn.cli.output import say


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    d = sub.add_parser("demo", help="train the joint recipe on digits (CPU, minutes) and report")
    d.add_argument("--out", default=None, help="run folder (default: runs/demo, or runs/demo-text with --text)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--text", action="store_true",
                   help="the text recipe instead: digits with composed captions, retrieval, prompt classification, "
                        "text-to-image samples")
    d.set_defaults(func=run)


def explore_line(out: str) -> str:
    """The closing pointer to ``lzn serve`` on the demo's exported model (``out``: the --out folder as given)."""
    return f"explore it in a browser: lzn serve {Path(out) / 'model'}  (then open http://127.0.0.1:8000/)"


def run(args: argparse.Namespace) -> int:
    import time

    from lzn.recipes.joint import JointConfig
    from lzn.recipes.runner import resolve_config, train

    start = time.time()
    if args.out is None:
        args.out = "runs/demo-text" if args.text else "runs/demo"
    if args.text:
        return _text(args, start)
    say("lzn demo: the joint recipe (case study 3: generation + classification) on scikit-learn's digits")
    cfg = resolve_config("joint", "digits", None, args.set)
    results = train("joint", cfg, args.out)
    out = Path(args.out).resolve()
    assert isinstance(cfg, JointConfig)
    alpha = cfg.eval_noise_scale
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
    say(explore_line(args.out))
    say(f"done in {time.time() - start:.0f} s")
    return 0


def _text(args: argparse.Namespace, start: float) -> int:
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
    say(explore_line(args.out))
    say(f"done in {time.time() - start:.0f} s")
    return 0
