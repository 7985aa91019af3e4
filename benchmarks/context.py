"""Does a classification depend on who else is in the batch? The digits joint model, test images
classified with the paper's batch protocol at several batch sizes (1 = one image at a time) and with the
reference bank (method.md §2.9), at alpha 0 and 1; also the bank's size, memory and time per image.

    python benchmarks/context.py                       # trains the digits joint preset into runs/context (resumed)
    python benchmarks/context.py --model runs/demo/model   # or measures an exported model

Prints JSON, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lzn import LatentZoningNetwork
from lzn.data import DataConfig, load_split


def accuracy(model: LatentZoningNetwork, images, labels, alpha: float, batch: int, context: str, seeds) -> float:
    accs = []
    for seed in seeds:  # alpha > 0 draws noise: average a few draws
        gen = torch.Generator().manual_seed(seed)
        pred = model.classify(images, noise_scale=alpha, batch_size=batch, generator=gen, context=context)
        accs.append(float((pred == labels).float().mean()))
    return sum(accs) / len(accs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an exported model folder (default: train runs/context)")
    parser.add_argument("--out", default="runs/context")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 37, 400, 2000])
    parser.add_argument("--banks", nargs="*", type=int, default=[250, 1000, 1438])
    parser.add_argument("--seeds", type=int, default=3, help="noise draws averaged at alpha > 0")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.model is None:
        from lzn.recipes.runner import resolve_config, train

        train("joint", resolve_config("joint", "digits"), args.out)
        args.model = str(Path(args.out) / "model")
    model = LatentZoningNetwork.from_pretrained(args.model).eval()
    train_set = load_split(DataConfig(name="digits"), "train")
    test = load_split(DataConfig(name="digits"), "test")
    x, y = test.images, test.labels
    rows = []
    for alpha in (0.0, 1.0):
        seeds = [0] if alpha == 0 else list(range(args.seeds))
        for batch in args.batches:
            rows.append({"context": "batch", "batch": batch, "alpha": alpha,
                         "accuracy": accuracy(model, x, y, alpha, batch, "batch", seeds)})
        for size in args.banks:
            model.build_reference(train_set.images, train_set.labels, size=size)
            start = time.perf_counter()
            acc = accuracy(model, x, y, alpha, 1, "reference", seeds)
            per_image = (time.perf_counter() - start) / (len(seeds) * len(x))
            rows.append({"context": "reference", "bank": size, "batch": 1, "alpha": alpha, "accuracy": acc,
                         "ms_per_image": 1000 * per_image, "bank_bytes": size * model.latent_dim * 4})
    print(json.dumps({"model": args.model, "test_images": len(x), "rows": rows}, indent=2))
    big = {r["alpha"]: r["accuracy"] for r in rows if r["context"] == "batch" and r["batch"] == max(args.batches)}
    one = {r["alpha"]: r["accuracy"] for r in rows if r["context"] == "batch" and r["batch"] == 1}
    ref = {r["alpha"]: r["accuracy"] for r in rows if r["context"] == "reference" and r["bank"] == max(args.banks)}
    print(f"summary: accuracy alpha 0 / 1 -- batch {max(args.batches)}: {big[0.0]:.3f} / {big[1.0]:.3f}; "
          f"one at a time, batch protocol: {one[0.0]:.3f} / {one[1.0]:.3f}; one at a time, reference bank "
          f"{max(args.banks)}: {ref[0.0]:.3f} / {ref[1.0]:.3f}")


if __name__ == "__main__":
    main()
