"""``lzn import-release``: the tiny release checkpoint (tests/data/release) becomes a model folder that the
inference commands take; bad files and contradicting options end in one line, code 2, nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from lzn.cli.main import main
from lzn.models import LatentZoningNetwork

CKPT = Path(__file__).resolve().parents[1] / "data" / "release" / "tiny_cs3.pt"


def _fake_cifar(folder: Path, per_batch: int = 4) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = ((np.arange(per_batch) + i * per_batch) % 10).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)


def test_import_release_then_sample_by_class_name(tmp_path, capsys):
    out = tmp_path / "cs3"
    assert main(["import-release", str(CKPT), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "case study 3" in said and "ema weights" in said and "iteration 2" in said
    model = LatentZoningNetwork.from_pretrained(str(out))
    assert model.class_names is not None and model.class_names[3] == "cat" and model.reference is None
    png = tmp_path / "cats.png"
    assert main(["sample", str(out), "--labels", "cat,dog", "--steps", "2", "--out", str(png), "--device", "cpu"]) == 0
    assert png.is_file() and "3 (cat),5 (dog)" in capsys.readouterr().out


def test_import_release_builds_the_reference_bank_from_cifar10(tmp_path, capsys):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    out = tmp_path / "cs3"
    args = ["import-release", str(CKPT), "--out", str(out), "--weights", "live", "--case-study", "3",
            "--data", "cifar10", "--root", str(tmp_path), "--device", "cpu"]
    assert main(args) == 0
    assert "reference bank: anchors of 20 of 20 training images" in capsys.readouterr().out
    model = LatentZoningNetwork.from_pretrained(str(out))
    assert model.reference is not None and tuple(model.reference.shape) == (20, 12)


def _fails(args: list[str], capsys, needle: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lzn import-release: error: ") and needle in err, err


def test_import_release_refuses_bad_files_and_options(tmp_path, capsys):
    out = tmp_path / "model"
    (tmp_path / "half.pt").write_bytes(CKPT.read_bytes()[:100_000])
    _fails(["import-release", str(tmp_path / "half.pt"), "--out", str(out)], capsys, "no zip archive")
    _fails(["import-release", str(tmp_path / "none.pt"), "--out", str(out)], capsys, "no such file")
    _fails(["import-release", str(CKPT), "--out", str(out), "--case-study", "1"], capsys,
           "holds case study 3's networks")
    _fails(["import-release", str(CKPT), "--out", str(out), "--data", "cifar10"], capsys, "--data cifar10 needs --root")
    _fails(["import-release", str(CKPT), "--out", str(out), "--data", "shards", "--root", str(tmp_path),
            "--case-study", "3"], capsys, "--data shards is the training set of case study 2, not of --case-study 3")
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "shards"), "--split", "train"]) == 0
    _fails(["import-release", str(CKPT), "--out", str(out), "--data", "shards", "--root", str(tmp_path / "shards")],
           capsys, "--data shards is the training set of case study 2, and this file is case study 3")
    _fails(["import-release", str(CKPT), "--out", str(out), "--data", "cifar10", "--root", str(tmp_path / "no")],
           capsys, "no")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.pt", "shards"]  # no model folder, no temporary
