"""Tar shards (lzn.data.shards), the step loader (lzn.data.loader) and training on shards: the sharded path
gives the in-memory path's batches pixel for pixel, and a run on shards equals the same run in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lzn.cli.main import main
from lzn.data import (BatchLoader, DataConfig, DataNotFoundError, ImageDataset, ShardedDataset, batch_at,
                      load_arrays, load_image_folder, load_split, shard_source, write_shards)
from lzn.data.shard_writer import Sample, folder_samples, read_folder_sample
from lzn.data.shards import ITEMS_FILE
from lzn.recipes.runner import resolve_config, train
from tests.recipes.tiny import sets

ROOT = Path(__file__).resolve().parents[2]


def _npz(path: Path, n: int = 150, size: int = 8, channels: int = 1, classes: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)
    labels = np.arange(n) % classes
    np.savez(path, images=images, labels=labels, class_names=np.array([f"c{k}" for k in range(classes)]))
    return path


def _folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    """Class sub-folders of RGB images of varying sizes, PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            w, h = int(rng.integers(10, 20)), int(rng.integers(10, 20))
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            img.save(root / name / (f"{i}.png" if i % 2 else f"{i}.jpg"))
    return root


def test_arrays_round_trip_pixel_for_pixel_and_webdataset_layout(tmp_path):
    src = _npz(tmp_path / "a.npz", channels=3)
    out = shard_source(src, tmp_path / "sh", shard_size=40, progress=False)["train"]
    mem, sh = load_arrays(src), ShardedDataset(out)
    assert len(sh) == len(mem) == 150 and sh.image_shape == mem.image_shape == (3, 8, 8)
    assert sh.class_names == mem.class_names and sh.num_classes == 4
    idx = torch.tensor([149, 0, 77, 40, 39, 41])  # across shard borders, any order
    xs, ys = sh.batch(idx)
    xm, ym = mem.batch(idx)
    assert torch.equal(xs, xm) and torch.equal(ys, ym)
    index = json.loads((out / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [40, 40, 40, 30] and index["class_counts"] == [38, 38, 37, 37]
    with tarfile.open(out / "shard-000001.tar") as tar:  # WebDataset: KEY.png + KEY.cls, key = sample index
        names = tar.getnames()
        assert names[:2] == ["000000040.png", "000000040.cls"]
        assert tar.extractfile("000000041.cls").read() == b"1"
        png = Image.open(tar.extractfile("000000041.png"))
        assert np.array_equal(np.asarray(png).transpose(2, 0, 1), np.load(src)["images"][41])


def test_folder_shards_decode_like_the_folder_loader(tmp_path):
    root = _folder(tmp_path / "imgs", {"cat": 7, "dog": 5, "eel": 6})
    _folder(tmp_path / "split" / "train", {"cat": 4, "dog": 4}, seed=1)
    _folder(tmp_path / "split" / "test", {"dog": 3}, seed=2)
    out = shard_source(root, tmp_path / "sh", shard_size=5, progress=False)
    assert set(out) == {"train"}
    with pytest.raises(ValueError, match="data.size"):  # sizes vary: a size must be chosen
        ShardedDataset(out["train"])
    sh, mem = ShardedDataset(out["train"], size=12), load_image_folder(root, 12)
    assert torch.equal(sh.batch(torch.arange(18))[0], mem.images)  # same order (the folder's fixed shuffle)
    assert torch.equal(sh.labels, mem.labels) and sh.class_names == ("cat", "dog", "eel")
    gray = ShardedDataset(out["train"], size=9, channels=1)
    assert torch.equal(gray.batch(torch.arange(3))[0], load_image_folder(root, 9, channels=1).images[:3])
    both = shard_source(tmp_path / "split", tmp_path / "sh2", progress=False)  # train/ and test/: both splits
    cfg = DataConfig(name="shards", root=str(tmp_path / "sh2"), size=8)
    test = load_split(cfg, "test", class_names=("cat", "dog"))
    assert set(both) == {"train", "test"} and test.labels.tolist() == [1, 1, 1] and test.num_classes == 2
    ref = load_split(DataConfig(name="folder", root=str(tmp_path / "split"), size=8), "test", class_names=("cat", "dog"))
    assert torch.equal(test.batch(torch.arange(3))[0], ref.images)


def test_loader_workers_and_restarts_give_the_step_batches(tmp_path):
    sh = ShardedDataset(shard_source(_npz(tmp_path / "a.npz"), tmp_path / "sh", shard_size=32,
                                     progress=False)["train"])
    plain = BatchLoader(sh, 40, seed=3, rank=1, world_size=2)
    expected = [sh.batch(batch_at(s, 150, 40, seed=3, rank=1, world_size=2)) for s in range(8)]
    assert all(torch.equal(plain(s)[0], e[0]) for s, e in enumerate(expected))
    ahead = BatchLoader(sh, 40, seed=3, rank=1, world_size=2, workers=2)
    try:
        got = [ahead(s) for s in (0, 1, 2, 3, 6, 7, 2)]  # a jump forward and one back restart the workers
    finally:
        ahead.close()
    for (x, y), s in zip(got, (0, 1, 2, 3, 6, 7, 2)):
        assert torch.equal(x, expected[s][0]) and torch.equal(y, expected[s][1])
    with pytest.raises(ValueError, match="workers must be >= 0"):
        BatchLoader(sh, 40, workers=-1)
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        BatchLoader(sh, 400)
    balanced = BatchLoader(sh, 40, seed=3, balanced=True)  # the shards' labels drive the class-balanced order
    x, y = balanced(5)
    assert torch.equal(y, sh.labels[batch_at(5, 150, 40, seed=3, labels=sh.labels)])
    counts = torch.bincount(y, minlength=4).double()
    share = torch.bincount(sh.labels, minlength=4).double() / 150
    assert ((counts - 40 * share).abs() <= 1 + 4 * share).all()
    unlabelled = ImageDataset(images=torch.zeros(50, 1, 4, 4), labels=None, num_classes=0, name="blank")
    with pytest.raises(ValueError, match="need labelled training data"):
        BatchLoader(unlabelled, 10, balanced=True)
    with pytest.raises(ValueError, match="balanced must be true or false"):
        DataConfig(balanced="yes")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    state = torch.load(ckpt, weights_only=False)
    return {f"{m}.{k}": v for m, sd in state["modules"].items() for k, v in sd.items()}


def test_training_on_shards_equals_training_in_memory_and_resumes(tmp_path):
    src = _npz(tmp_path / "a.npz", n=160)
    shard_source(src, tmp_path / "sh", shard_size=50, progress=False)
    common = sets("generation") + ["train.steps=4", "data.test_split=null", "reference_size=0", "data.flip=true"]
    mem = resolve_config("generation", "digits", sets=common + ["data.name=arrays", f"data.root={src}"])
    sh = resolve_config("generation", "digits", sets=common + ["data.name=shards", f"data.root={tmp_path / 'sh'}",
                                                               "data.workers=1"])
    train("generation", mem, tmp_path / "mem")
    train("generation", sh, tmp_path / "sh_run")
    a, b = _weights(tmp_path / "mem"), _weights(tmp_path / "sh_run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    half = resolve_config("generation", "digits", sets=common[:-3] + ["train.steps=2", "data.test_split=null",
                          "reference_size=0", "data.flip=true", "data.name=shards", f"data.root={tmp_path / 'sh'}",
                          "data.workers=1"])
    train("generation", half, tmp_path / "resumed")  # 2 steps, then resumed to 4: the loader restarts at step 2
    train("generation", sh, tmp_path / "resumed")
    c = _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], c[k]) for k in a)


KILLED_RUN = """
import os, signal, sys
from lzn.recipes import runner

class Killed(runner.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hooks.append((2, lambda tr, step: os.kill(os.getpid(), signal.SIGKILL)))

runner.Trainer = Killed
runner.train("generation", runner.resolve_config("generation", "digits", sets=sys.argv[2:]), sys.argv[1])
"""


def test_run_on_shards_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    """SIGKILL right after the step-2 checkpoint (a worker process is reading ahead), then resume. The
    killed run is a process of its own: a fork of this one could hang in torch's thread pool."""
    src = _npz(tmp_path / "a.npz", n=160)
    shard_source(src, tmp_path / "sh", shard_size=50, progress=False)
    items = sets("generation") + ["train.steps=4", "data.test_split=null", "reference_size=0", "data.name=shards",
                                  f"data.root={tmp_path / 'sh'}", "data.workers=1"]
    cfg = resolve_config("generation", "digits", sets=items)
    train("generation", cfg, tmp_path / "straight")
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path / "killed"), *items], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()] == ["step-000000002.pt"]
    train("generation", cfg, tmp_path / "killed")
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_shards_and_configs_name_the_problem(tmp_path):
    out = shard_source(_npz(tmp_path / "a.npz"), tmp_path / "sh", progress=False)["train"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        shard_source(tmp_path / "a.npz", tmp_path / "sh", progress=False)
    with pytest.raises(DataNotFoundError, match="lzn data shard"):
        ShardedDataset(tmp_path)
    with pytest.raises(DataNotFoundError, match="no test split"):
        load_split(DataConfig(name="shards", root=str(tmp_path / "sh")), "test")
    with pytest.raises(ValueError, match="holdout applies to folder and arrays"):
        DataConfig(name="shards", root="x", holdout=0.1)
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        DataConfig(workers=-2)
    shard = out / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:5000])  # truncated: the first samples still read, later ones fail
    data = ShardedDataset(out)
    data.batch(torch.tensor([0]))
    with pytest.raises(ValueError, match="truncated"):
        data.batch(torch.tensor([149]))
    (out / ITEMS_FILE).unlink()
    with pytest.raises(FileNotFoundError):
        ShardedDataset(out)

    def broken():  # an interrupted write leaves neither the split nor a temporary folder
        yield Sample(b"x", "png", 0, (1, 1), 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(broken(), tmp_path / "new" / "train", progress=False)
    assert list((tmp_path / "new").iterdir()) == []
    bad = _folder(tmp_path / "bad", {"a": 2, "b": 2})
    (bad / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        folder_samples(bad)
    pairs, _ = folder_samples(bad, skip_bad_files=True)
    assert len(pairs) == 4 and read_folder_sample(*pairs[0]).suffix in ("png", "jpg")


def test_cli_shard_and_info(tmp_path, capsys):
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "d"), "--shard-size", "500"]) == 0
    printed = capsys.readouterr().out
    assert "train: 1438 images 8x8" in printed and "test: 359 images" in printed and "data.name=shards" in printed
    assert main(["data", "info", str(tmp_path / "d")]) == 0
    assert "classes: 0 (140), 1 (151)" in capsys.readouterr().out
    assert main(["data", "shard", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist; expected an image folder" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "holds no sharded split" in capsys.readouterr().err
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "d")]) == 2
    assert "already exists" in capsys.readouterr().err
