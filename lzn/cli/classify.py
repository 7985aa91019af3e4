"""``lzn classify``: classes of a data split by the label decoder, or by class prompts (a text model)."""

from __future__ import annotations

import argparse
from typing import Any, Literal

import torch

from lzn.cli.common import chunks, CONTEXTS, data, data_args, load, model_command, need_text, non_negative, npy_path
from lzn.cli.output import say
from lzn.data import ImageDataset


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = model_command(sub, "classify", "classify a data set with a trained model", run)
    data_args(p, split="test")
    p.add_argument("--out", default=None, help="output .npy file")
    p.add_argument("--noise-scale", type=non_negative, default=None,
                   help="alpha of the test latents, >= 0 (default: the run's eval_noise_scale)")
    p.add_argument("--context", choices=CONTEXTS, default=None,
                   help="anchor set of each latent: the model's reference bank (default when it has one) "
                        "or the batch (the paper's protocol)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                   help="prompt classification (a text model): one text per class of the data, in class "
                        "order, e.g. --prompts \"the digit zero\" \"the digit one\" ...")
    p.add_argument("--prompt-template", default=None, metavar="TEMPLATE",
                   help="prompt classification with one prompt per class from a template: {cls} is the class "
                        "word (zero..nine for digits, else the class name), e.g. \"the digit {cls}\"")


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


def run(args: argparse.Namespace) -> int:
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
