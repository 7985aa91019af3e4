"""Issue 20's remaining new-user cases: a held-out split that disappears during training, the notes on
figures that say nothing (one class), the missing-extractor hint and the no-test-split warning on shards.
Each case is one test beside the bad-input table (tests/cli/test_bad_inputs.py)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from lzn.cli.main import main
from tests.cli.test_bad_inputs import fails, train_args


def test_a_test_split_deleted_during_training_is_named_and_the_model_is_kept(tmp_path, capsys, monkeypatch):
    from lzn.data import shard_source
    from lzn.recipes import runner

    shard_source("digits", tmp_path / "sh", shard_size=500, progress=False)
    real = runner._evaluation_data

    def then_delete(data, train_data):  # the split is found at the start, then removed while training runs
        found = real(data, train_data)
        shutil.rmtree(tmp_path / "sh" / "test")
        return found

    monkeypatch.setattr(runner, "_evaluation_data", then_delete)
    run = tmp_path / "run"
    args = train_args("joint", run, "data.name=shards", f"data.root={tmp_path / 'sh'}")
    fails(args, capsys, "training finished", "exported to", "'test' split could not be read",
          "rerun the same command")
    assert (run / "model" / "model.safetensors").is_file() and not (run / "results.json").exists()
    monkeypatch.setattr(runner, "_evaluation_data", real)
    steps = len((run / "metrics.jsonl").read_text().splitlines())
    assert main(args) == 0  # no test split now: evaluated on the training set, named so, without training again
    assert len((run / "metrics.jsonl").read_text().splitlines()) == steps
    assert json.loads((run / "results.json").read_text())["evaluated_on"] == "train"
    assert "no 'test' split" in capsys.readouterr().err


def test_shards_without_a_test_split_are_told_how_to_write_one(tmp_path, caplog):
    from lzn.data import shard_source
    from lzn.recipes.runner import resolve_config, train

    shard_source("digits", tmp_path / "sh", shard_size=500, split="train", progress=False)
    cfg = resolve_config("nogen", "digits", sets=["data.name=shards", f"data.root={tmp_path / 'sh'}", "train.steps=2",
                                                  "train.progress=false", "reference_size=0"])
    with caplog.at_level(logging.WARNING, logger="lzn"):
        results = train("nogen", cfg, tmp_path / "run")
    said = caplog.text
    assert "no 'test' split" in said and "--split test" in said and "data.holdout" not in said
    assert results["evaluated_on"] == "train"


def test_a_one_class_probe_says_it_says_nothing():
    from lzn.data import ImageDataset
    from lzn.eval import evaluate_model
    from lzn.models import LatentZoningNetwork, build

    model = LatentZoningNetwork(encoder=build("small_encoder", image_channels=1, image_size=8, latent_dim=4,
                                              channels=[4, 8], hidden=16))
    g = torch.Generator().manual_seed(0)
    one = ImageDataset(torch.rand(40, 1, 8, 8, generator=g) * 2 - 1, torch.zeros(40, dtype=torch.int64), 1, "one")
    res = evaluate_model(model, one, one, metrics=("probe", "knn"), progress=False)
    rep = res["representation"]
    assert rep["probe_accuracy"] == 1.0 and "one class" in rep["note"] and "says nothing" in rep["note"]


def test_a_missing_extractor_package_offers_extractor_none(tmp_path, capsys, monkeypatch):
    import lzn.eval

    out = tmp_path / "gen"
    assert main(train_args("generation", out, "train.steps=2")) == 0

    def missing():
        raise ImportError("the fast extractor needs the package 'timm-free-weights': pip install 'lzn[fid]'")

    monkeypatch.setattr(lzn.eval, "fast_extractor", missing)
    fails(["evaluate", str(out), "--metrics", "fid"], capsys, "pip install 'lzn[fid]'", "--extractor none")


def _npz(path: Path, labels) -> Path:
    import numpy as np

    labels = np.asarray(labels)
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (len(labels), 8, 8), dtype=np.uint8), labels=labels)
    return path


def test_data_info_finds_a_missing_shard(tmp_path, capsys):
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "d"), "--shard-size", "500"]) == 0
    (tmp_path / "d" / "train" / "shard-000001.tar").unlink()
    fails(["data", "info", str(tmp_path / "d")], capsys, "shard-000001.tar is missing")


def test_shards_with_label_gaps_are_refused_where_training_reads_them(tmp_path, capsys):
    """A split written as a test split (gaps allowed there) and then moved to train/ by hand: training names
    the missing classes before any step."""
    src = _npz(tmp_path / "g.npz", [0, 2] * 20)
    assert main(["data", "shard", str(src), "--out", str(tmp_path / "sh"), "--split", "test"]) == 0
    (tmp_path / "sh" / "test").rename(tmp_path / "sh" / "train")
    fails(train_args("joint", tmp_path / "r", "data.name=shards", f"data.root={tmp_path / 'sh'}", "batch_size=8",
                     "data.test_split=null"), capsys, "every class present in training", "missing: 1")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_prompt_template_on_unlabelled_data_points_at_prompts(tmp_path, capsys):
    from lzn.cli.classify import class_prompts
    from types import SimpleNamespace

    ds = SimpleNamespace(num_classes=0, class_names=None, name="pets")
    with pytest.raises(ValueError, match="has none: give one text per class with --prompts"):
        class_prompts(SimpleNamespace(prompts=None, prompt_template="a {cls}", split="test"), ds)
    assert class_prompts(SimpleNamespace(prompts=["a cat", "a dog"], prompt_template=None, split="test"), ds) == \
        ["a cat", "a dog"]  # --prompts needs no classes: the hint leads somewhere that works


def test_one_class_notes_reach_the_printed_table():
    from lzn.eval.suite import metric_rows

    note = "the test labels hold one class, so any classifier scores 1.0: the figure says nothing"
    res = {"evaluated_on": "test",
           "classification": {"note": note, "num_images": 8, "sweep": [{"alpha": 0.0, "batch_size": 8,
                                                                         "context": "batch", "accuracy": 1.0}]},
           "representation": {"note": note, "probe_accuracy": 1.0, "knn_accuracy": 1.0, "split": "test",
                              "num_train": 8, "num_test": 8}}
    rows = metric_rows(res)
    assert rows and all("says nothing" in detail for _, _, detail in rows)


def test_counts_print_as_counts(capsys):
    from lzn.cli.train import _print_results

    _print_results({"steps": 4, "test_pairs": 50, "test_i2t_recall@1": 0.25})
    out = capsys.readouterr().out
    assert "test_pairs: 50\n" in out and "test_i2t_recall@1: 0.2500" in out
