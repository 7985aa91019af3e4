"""The ImageNet-scale presets run end to end at toy sizes: `imagenet` (shards, two-view augmentations, two
processes, linear probe and kNN on the shards) with a ResNet-18, and `cifar10` with the paper's NCSN++
networks for a few steps."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lzn.cli.main import main
from lzn.recipes.runner import resolve_config

ROOT = Path(__file__).resolve().parents[2]


def _imagenet_like(root: Path, per_class: dict[str, int], size: int = 64, seed: int = 0) -> None:
    """Class folders of JPEGs, each class a different dominant colour plus noise (a probe can separate them)."""
    rng = np.random.default_rng(seed)
    colours = {"n01440764": (200, 40, 40), "n01443537": (40, 200, 40), "n01484850": (40, 40, 200)}
    for split, count in per_class.items():
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-60, 60, (size + 8 * (i % 3), size, 3))  # varying heights: data.size crops
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}.JPEG", format="JPEG")


@pytest.mark.slow
def test_imagenet_preset_on_shards_with_two_processes(tmp_path):
    _imagenet_like(tmp_path / "imagenet", {"train": 8, "val": 4})
    assert main(["data", "shard", str(tmp_path / "imagenet" / "train"), "--out", str(tmp_path / "sh"),
                 "--split", "train"]) == 0
    assert main(["data", "shard", str(tmp_path / "imagenet" / "val"), "--out", str(tmp_path / "sh"),
                 "--split", "test", "--shard-size", "5"]) == 0
    cfg = resolve_config("representation", "imagenet")
    assert cfg.data.name == "shards" and cfg.batch_size == 8192 and cfg.encoder.name == "resnet50_encoder"
    sets = [f"data.root={tmp_path / 'sh'}", "data.size=64", "data.workers=1", "encoder.name=resnet18_encoder",
            "encoder.kwargs={}", "batch_size=8", "latent_dim=32", "eval_batch_size=12", "train.steps=2",
            "train.warmup_steps=1", "train.checkpoint_every=1", "train.log_every=1", "train.progress=false",
            "flow.steps=4", "probe_epochs=30", "knn_k=3", "reference_size=6"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lzn", "train",
           "representation", "--preset", "imagenet", "--out", str(tmp_path / "run")]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["steps"] == 2 and res["evaluated_on"] == "test"
    assert 0.0 <= res["probe_accuracy"] <= 1.0 and 0.0 <= res["knn_accuracy"] <= 1.0
    assert res["probe_accuracy"] >= 0.5  # three colours; chance is 1/3 (12 test images from shards, 24 train)
    run = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "run" / "run.yaml").read_text())))
    assert run["data_info"] == {"channels": 3, "size": 64, "num_classes": 3, "num_train": 24,
                                "class_names": ["n01440764", "n01443537", "n01484850"]}


def _fake_cifar(folder: Path, per_batch: int = 4) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = ((np.arange(per_batch) + i * per_batch) % 10).tolist()  # every class in the training batches
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)


@pytest.mark.slow
def test_cifar10_preset_trains_on_shards_with_the_paper_networks(tmp_path, capsys):
    """One step of the full NCSN++ pair at batch 4 (about a minute on 2 CPU cores, most of it the 64-sample
    grid of the evaluation): the preset's networks, flow and evaluation run on sharded CIFAR-10."""
    _fake_cifar(tmp_path / "src" / "cifar-10-batches-py")  # shards go beside the source, not inside it
    assert main(["data", "shard", str(tmp_path / "src"), "--out", str(tmp_path / "sh")]) == 0
    out = tmp_path / "run"
    args = ["train", "generation", "--preset", "cifar10", "--out", str(out)]
    for item in ["data.name=shards", f"data.root={tmp_path / 'sh'}", "batch_size=4", "train.steps=1",
                 "train.warmup_steps=1", "train.progress=false", "recon_images=4", "sampler=euler", "sampler_steps=1",
                 "eval_batch_size=4", "reference_size=4", "flow.steps=4"]:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 1 and np.isfinite(res["recon_l2"]) and np.isfinite(res["final_loss"])
    meta = (out / "run.yaml").read_text()
    assert "ncsnpp_decoder" in meta and "setting: cifar10" in meta and "latent_dim: 200" in meta
    assert (out / "samples.png").is_file() and (out / "model" / "config.json").is_file()
