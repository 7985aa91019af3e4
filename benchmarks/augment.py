"""Throughput of the two-view SimCLR augmentation (docs/method.md §6.2) on CPU.

Workload: ``TwoViewAugment(TwoViewConfig.for_size(S))`` on a batch of 256 random images in [-1, 1],
for CIFAR-like 3x32x32 and Fashion-MNIST-like 1x28x28 inputs (crops to the input size, 3-tap blur).
images/s counts source images (each yields two views) over the median of ``--repeats`` timed calls
after one warm-up call. Prints one JSON object, then a one-line summary.

    python benchmarks/augment.py
    python benchmarks/augment.py --batch 64 --repeats 2    # seconds
    python benchmarks/augment.py --threads 1               # steadier on a shared machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lzn.data import TwoViewAugment, TwoViewConfig


def _measure(shape: tuple[int, int, int], batch: int, repeats: int) -> dict[str, float | int | str]:
    c, h, w = shape
    augment = TwoViewAugment(TwoViewConfig.for_size(h))
    images = torch.rand(batch, c, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    generator = torch.Generator().manual_seed(1)
    augment(images, generator)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        augment(images, generator)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"shape": f"{c}x{h}x{w}", "batch": batch, "seconds_per_call": median, "images_per_s": batch / median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [_measure(shape, args.batch, args.repeats) for shape in ((3, 32, 32), (1, 28, 28))]
    report = {"device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__, "runs": runs}
    print(json.dumps(report, indent=2))
    print("TwoViewAugment on CPU: " + ", ".join(
        f"{r['shape']} {float(r['images_per_s']):,.0f} images/s" for r in runs) + f" ({report['threads']} threads)")


if __name__ == "__main__":
    main()
