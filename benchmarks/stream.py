"""Training from tar shards with bounded memory, and loader throughput (docs/method.md §9.8).

1. Writes a generated sharded set of ``--images`` 32x32 RGB images (100,000 by default; 10 classes of
   smooth random patterns, PNG), trains the representation recipe (small encoder, batch 256, two views)
   for one full pass over it with ``data.workers`` worker processes, and samples the resident memory
   (RSS, as proportional set size) of the training process plus its workers every 10 steps. Bounded memory means: the peak after
   the full pass is within 10 % of the peak after 100 steps (the in-memory path would first hold the
   whole set as float32: 1.2 GB for 100,000 images of 32x32 RGB).
2. Loader throughput in images/s, with 0, 1 and 2 workers: 224x224 crops of 256x256 JPEGs with the two-view
   augmentations of case study 2, and 32x32 PNGs single view.

Prints JSON, then a one-line summary.

    python benchmarks/stream.py                 # 100,000 images, one pass (a few minutes on 2 cores)
    python benchmarks/stream.py --quick         # 3,000 images, small throughput sets
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lzn.data import BatchLoader, ShardedDataset, TwoViewAugment, TwoViewConfig, load_split, write_shards
from lzn.data.shard_writer import Sample, encode_png


def rss_mib(pid: int | None = None, children: bool = True) -> float:
    """Resident memory of ``pid`` (default: this process) plus all its descendants, MiB (from /proc): the
    proportional set size, so that pages a forked worker shares with its parent count once, not twice."""
    pid = os.getpid() if pid is None else pid
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
            for task in os.listdir(f"/proc/{p}/task") if children else ():
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # a worker that just exited
    return total


def patterns(n: int, size: int, seed: int, encode: str = "png") -> Iterator[Sample]:
    """n smooth random RGB images (4x4 noise upsampled, a class colour shift): compressible, varied."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    shift = rng.integers(-60, 60, (10, 3))
    for i in range(n):
        label = i % 10
        coarse = rng.integers(40, 216, (4, 4, 3)).astype(np.int16) + shift[label]
        img = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
        if encode == "png":
            data = encode_png(np.asarray(img))
        else:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            data = buf.getvalue()
        yield Sample(data, encode, label, (size, size), 3)


def train_pass(root: Path, run_dir: Path, workers: int, steps: int) -> dict[str, float]:
    from lzn.recipes.common import data_info
    from lzn.recipes.representation import RepresentationRecipe
    from lzn.recipes.runner import resolve_config
    from lzn.training import Trainer

    sets = ["data.name=shards", f"data.root={root}", f"data.workers={workers}", "batch_size=256", "latent_dim=16",
            "encoder.name=small_encoder", "encoder.kwargs={channels: [16, 32], hidden: 64}", "flow.steps=8",
            f"train.steps={steps}", "train.lr=1.0e-3", "train.warmup_steps=10", "train.checkpoint_every=null",
            "train.log_every=50", "train.progress=false", "data.test_split=null"]
    cfg = resolve_config("representation", "digits", sets=sets)
    data = load_split(cfg.data, "train")
    torch.manual_seed(0)
    rec = RepresentationRecipe(cfg, data_info(data))  # type: ignore[arg-type]
    rec.attach_data(data)
    samples: list[tuple[int, float]] = [(0, rss_mib())]
    main_only: list[tuple[int, float]] = [(0, rss_mib(children=False))]

    def sample(step: int) -> None:
        samples.append((step, rss_mib()))
        main_only.append((step, rss_mib(children=False)))
    trainer = Trainer(rec.modules, rec.step, rec.batches, cfg.train, run_dir,
                      hooks=[(10, lambda tr, step: sample(step))])
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    assert rec.loader is not None
    rec.loader.close()
    at_100 = max(r for s, r in samples if s <= 100)
    peak = max(r for _, r in samples)
    return {"steps": steps, "images_seen": steps * 256, "seconds": seconds, "images_per_s": steps * 256 / seconds,
            "rss_start_mib": samples[0][1], "rss_peak_100_steps_mib": at_100, "rss_peak_full_pass_mib": peak,
            "rss_ratio_full_over_100": peak / at_100,
            "main_process_peak_100_steps_mib": max(r for s, r in main_only if s <= 100),
            "main_process_peak_full_pass_mib": max(r for _, r in main_only)}


def throughput(data: ShardedDataset, batch: int, workers: int, steps: int, two_view: TwoViewAugment | None) -> float:
    loader = BatchLoader(data, batch, seed=0, workers=workers)
    gen = torch.Generator().manual_seed(0)
    try:
        loader(0)  # start the workers before the clock
        start = time.perf_counter()
        for step in range(1, steps + 1):
            x, _ = loader(step)
            if two_view is not None:
                two_view(x, gen)
        return steps * batch / (time.perf_counter() - start)
    finally:
        loader.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3,000 images and small throughput sets")
    ap.add_argument("--images", type=int, default=None, help="images in the training set (default 100,000)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers while training (default 2)")
    ap.add_argument("--dir", default=None, help="where the generated shards go (default: a temporary folder)")
    args = ap.parse_args()
    n = args.images or (3000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_shards(patterns(n, 32, 0), root / "small" / "train", shard_size=5000, total=n, progress=False)
        write_seconds = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in (root / "small" / "train").iterdir()) / 2**20
        steps = n // 256  # one full pass (drop_last)
        result: dict[str, object] = {
            "images": n, "write_seconds": write_seconds, "shards_mib": disk,
            "in_memory_float32_mib": n * 3 * 32 * 32 * 4 / 2**20,
            "train": train_pass(root / "small", root / "run", args.workers, steps),
        }
        big_n, small_steps, big_steps = (192, 8, 2) if args.quick else (1024, 40, 8)
        write_shards(patterns(big_n, 256, 1, encode="jpg"), root / "big" / "train", shard_size=500, total=big_n,
                     progress=False)
        big = ShardedDataset(root / "big" / "train", size=224)
        small = ShardedDataset(root / "small" / "train")
        two_view = TwoViewAugment(TwoViewConfig.for_size(224))
        rates: dict[str, dict[str, float]] = {"224_two_view": {}, "32_single_view": {}}
        for w in (0, 1, 2):
            rates["224_two_view"][f"workers_{w}"] = throughput(big, 32, w, big_steps, two_view)
            rates["32_single_view"][f"workers_{w}"] = throughput(small, 256, w, small_steps, None)
        result["loader_images_per_s"] = rates
    print(json.dumps(result, indent=2))
    t = result["train"]
    assert isinstance(t, dict)
    r224, r32 = rates["224_two_view"], rates["32_single_view"]
    print(f"summary: {n} images on shards, one pass of {t['steps']} steps at {t['images_per_s']:.0f} img/s; peak RSS "
          f"{t['rss_peak_full_pass_mib']:.0f} MiB after the pass vs {t['rss_peak_100_steps_mib']:.0f} MiB after 100 "
          f"steps ({t['rss_ratio_full_over_100']:.3f}x, target <= 1.10; in memory the images alone would take "
          f"{result['in_memory_float32_mib']:.0f} MiB); loader img/s for 0/1/2 workers: 224 two-view "
          f"{r224['workers_0']:.0f}/{r224['workers_1']:.0f}/{r224['workers_2']:.0f}, 32 single "
          f"{r32['workers_0']:.0f}/{r32['workers_1']:.0f}/{r32['workers_2']:.0f}")


if __name__ == "__main__":
    main()
