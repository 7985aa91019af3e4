"""Training-step cost: the LZN generation step against the plain RF step (same decoder, same batch), eager
and with ``train.compile`` (docs/method.md §2.11); the same at the CIFAR-10 networks on a small synthetic
batch; ``classify`` throughput against the supervised classifier's forward pass on the same encoder; and
images/s of every recipe on the digits preset. Steps of the compared recipes alternate, so that machine
noise hits them alike. Prints JSON, then a one-line summary.

    python benchmarks/train_step.py            # digits batch 256, 30 timed steps per recipe; CIFAR-10 batch 8
    python benchmarks/train_step.py --quick    # digits batch 64, 3 timed steps, eager only, no CIFAR-10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from lzn.core.budget import flow_memory
from lzn.data import load_split
from lzn.recipes.common import DataInfo, Recipe, data_info
from lzn.recipes.runner import RECIPES, resolve_config

LRS = {"generation": "{encoder: 1.0e-3, decoder: 1.0e-3}", "joint": "{encoder: 1.0e-3, decoder: 1.0e-3, "
       "label_anchors: 1.0e-2}", "nogen": "{encoder: 1.0e-3, label_anchors: 1.0e-2}"}
CIFAR_INFO = DataInfo(channels=3, size=32, num_classes=10, num_train=50_000)


def recipe(name: str, batch: int, preset: str = "digits", compile: bool = False) -> Recipe:
    sets = [f"batch_size={batch}", f"train.lr={LRS.get(name, '1.0e-3')}", f"train.compile={str(compile).lower()}"]
    cfg = resolve_config(name, preset, sets=sets)
    torch.manual_seed(0)
    if preset == "cifar10":  # synthetic images: the cost does not depend on the pixels
        return RECIPES[name](cfg, CIFAR_INFO)
    data = load_split(cfg.data, "train")
    rec = RECIPES[name](cfg, data_info(data))
    rec.attach_data(data)
    return rec


def build(name: str, batch: int, preset: str = "digits", compile: bool = False) -> Callable[[int], float]:
    """A timed training step (forward, backward, Adam) of recipe ``name``: iteration -> seconds."""
    rec = recipe(name, batch, preset, compile)
    opt = torch.optim.Adam([p for m in rec.modules.values() for p in m.parameters()], lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def batch_of(i: int):  # type: ignore[no-untyped-def]
        if rec.loader is not None:
            return rec.batches(i)
        x = torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1
        return x, torch.randint(0, 10, (batch,), generator=gen)

    def step(i: int) -> float:
        data = batch_of(i)
        start = time.perf_counter()
        out = rec.step(data, i)
        opt.zero_grad(set_to_none=True)
        assert out.loss is not None
        out.loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def alternate(steps: dict[str, Callable[[int], float]], timed: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of each step function, the functions taking turns every iteration; the warm-up
    iterations (compilation included) are reported as ``<name>_warmup_s``."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(warmup + timed):
        for k, fn in steps.items():
            times[k].append(fn(i))
    out = {k: statistics.median(v[warmup:]) for k, v in times.items()}
    out.update({f"{k}_warmup_s": sum(v[:warmup]) for k, v in times.items()})
    return out


def time_recipe(name: str, batch: int, steps: int, warmup: int = 3) -> dict[str, float]:
    step = build(name, batch)
    times = [step(i) for i in range(warmup + steps)][warmup:]
    med = statistics.median(times)
    return {"step_seconds": med, "images_per_s": batch / med}


def breakdown(batch: int, timed: int, compile: bool) -> dict[str, float]:
    """Where the LZN step's extra time goes (digits preset): the encoder's forward + backward, and the latent
    flow's forward + backward over the batch's anchors, eager and (with ``compile``) compiled."""
    rec = recipe("generation", batch)
    encoder, lzn = rec.modules["encoder"], rec.lzn  # type: ignore[attr-defined]
    x, _ = rec.batches(0)
    anchors = encoder(x).detach()
    proj = torch.randn_like(anchors)

    def enc(i: int) -> float:
        start = time.perf_counter()
        encoder(x).sum().backward()
        return time.perf_counter() - start

    def flow(comp: bool, memory: int | None = None) -> Callable[[int], float]:
        def run(i: int) -> float:
            a = anchors.clone().requires_grad_(True)
            start = time.perf_counter()
            with flow_memory(memory):
                (lzn.latents_from_anchors(a, allow_nonfinite=True, compile=comp) * proj).sum().backward()
            return time.perf_counter() - start
        return run

    # the default budget keeps the responsibilities for backward; 4 MiB recomputes them (the earlier default)
    fns = {"encoder_fwd_bwd": enc, "flow_fwd_bwd": flow(False), "flow_fwd_bwd_recomputed": flow(False, 4 << 20)}
    if compile:
        fns["flow_fwd_bwd_compiled"] = flow(True)
    return {k: v for k, v in alternate(fns, timed, warmup=3).items() if not k.endswith("_warmup_s")}


@torch.no_grad()
def classify_throughput(images: int, repeats: int) -> dict[str, float]:
    """Images/s of ``LatentZoningNetwork.classify`` (joint recipe, the paper's batch protocol, alpha 0 as the
    digits preset evaluates) against the supervised classifier's logits, same encoder, same images."""
    joint, clf = recipe("joint", 256), recipe("classifier", 256)
    assert joint.train_data is not None
    x = joint.train_data.images[:images]  # type: ignore[union-attr]
    for m in (*joint.modules.values(), *clf.modules.values()):
        m.eval()
    cfg = joint.cfg

    def lzn() -> None:
        joint.lzn.classify(x, noise_scale=cfg.eval_noise_scale,  # type: ignore[attr-defined]
                           batch_size=cfg.eval_batch_size, context="batch")

    def sup() -> None:
        clf.logits(x).argmax(1)  # type: ignore[attr-defined]

    best = {"lzn": float("inf"), "classifier": float("inf")}
    for _ in range(repeats):
        for k, fn in (("lzn", lzn), ("classifier", sup)):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return {"images": images, "eval_batch": cfg.eval_batch_size, "lzn_images_per_s": images / best["lzn"],
            "classifier_images_per_s": images / best["classifier"],
            "lzn_over_classifier_time": best["lzn"] / best["classifier"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cifar-batch", type=int, default=8)
    parser.add_argument("--cifar-steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the train.compile measurement")
    args = parser.parse_args()
    batch, steps = (64, 3) if args.quick else (args.batch, args.steps)
    compiled = not (args.quick or args.no_compile)

    fns = {"lzn": build("generation", batch), "rf": build("rf", batch)}
    if compiled:
        fns["lzn_compiled"] = build("generation", batch, compile=True)
    digits = alternate(fns, 2 * steps)
    ratios = {k: digits[k] / digits["rf"] for k in fns if k != "rf"}
    report: dict[str, object] = {"batch": batch, "threads": torch.get_num_threads(),
                                 "load_avg_1min_start": os.getloadavg()[0], "lzn_step_s": digits["lzn"],
                                 "rf_step_s": digits["rf"], "lzn_over_rf": ratios["lzn"], "digits": digits}
    if compiled:
        report["lzn_compiled_over_rf"] = ratios["lzn_compiled"]
    report["breakdown"] = breakdown(batch, 2 * steps, compiled)
    report["flow_share"] = report["breakdown"]["flow_fwd_bwd"] / digits["lzn"]  # type: ignore[index]
    if not args.quick:
        cifar = alternate({"lzn": build("generation", args.cifar_batch, "cifar10"),
                           "rf": build("rf", args.cifar_batch, "cifar10")}, args.cifar_steps, warmup=1)
        report["cifar10"] = {"batch": args.cifar_batch, **cifar, "lzn_over_rf": cifar["lzn"] / cifar["rf"]}
    report["classify"] = classify_throughput(400, 2 if args.quick else 5)
    recipes = {name: time_recipe(name, batch, steps) for name in sorted(RECIPES)}
    report["recipes"] = recipes
    print(json.dumps(report, indent=2))

    parts = [f"train_step: LZN generation step {digits['lzn'] * 1e3:.1f} ms vs RF {digits['rf'] * 1e3:.1f} ms = "
             f"{ratios['lzn']:.2f}x (target <= 1.15x) at digits batch {batch}"]
    if compiled:
        parts.append(f"train.compile {digits['lzn_compiled'] * 1e3:.1f} ms = {ratios['lzn_compiled']:.2f}x "
                     f"(first steps incl. compiling {digits['lzn_compiled_warmup_s']:.0f} s)")
    b = report["breakdown"]
    parts.append(f"extra over RF {(digits['lzn'] - digits['rf']) * 1e3:.1f} ms: encoder fwd+bwd "  # type: ignore[index]
                 f"{b['encoder_fwd_bwd'] * 1e3:.1f} ms, latent flow fwd+bwd {b['flow_fwd_bwd'] * 1e3:.1f} ms"  # type: ignore[index]
                 + (f" ({b['flow_fwd_bwd_compiled'] * 1e3:.1f} ms compiled)" if compiled else "")  # type: ignore[index]
                 + f", {report['flow_share']:.1%} of the LZN step (target <= 6%; "
                 f"{b['flow_fwd_bwd_recomputed'] * 1e3:.1f} ms recomputing the responsibilities)")  # type: ignore[index]
    if "cifar10" in report:
        c = report["cifar10"]
        parts.append(f"CIFAR-10 networks batch {c['batch']}: {c['lzn']:.2f} s vs {c['rf']:.2f} s = "  # type: ignore[index]
                     f"{c['lzn_over_rf']:.2f}x")  # type: ignore[index]
    cl = report["classify"]
    parts.append(f"classify {cl['lzn_images_per_s']:.0f} images/s vs classifier forward "  # type: ignore[index]
                 f"{cl['classifier_images_per_s']:.0f}")  # type: ignore[index]
    parts.append("images/s: " + ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in recipes.items()))
    load = max(float(report["load_avg_1min_start"]), os.getloadavg()[0])  # type: ignore[arg-type]
    parts.append(f"load average {load:.1f} on {os.cpu_count()} CPUs"
                 + (" (machine loaded: absolute times noisy)" if load > 0.5 * (os.cpu_count() or 1) else ""))
    print("; ".join(parts))


if __name__ == "__main__":
    main()
