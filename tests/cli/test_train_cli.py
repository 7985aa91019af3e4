"""The `lzn` commands end to end on digits with tiny networks, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lzn.cli.main import main
from tests.recipes.tiny import sets


def train_args(recipe: str, out, *extra: str) -> list[str]:
    args = ["train", recipe, "--preset", "digits", "--out", str(out)]
    for item in [*sets(recipe), *extra]:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "joint"
    assert main(train_args("joint", out)) == 0
    return out


def test_train_then_every_command(joint_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["sample", str(joint_run), "--labels", "0,1,2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert "labels: 0,1,2" in capsys.readouterr().out
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG"
    assert main(["classify", str(joint_run), "--data", "digits", "--noise-scale", "0.5"]) == 0
    assert "accuracy:" in capsys.readouterr().out
    assert main(["embed", str(joint_run), "--out", str(tmp_path / "e.npy")]) == 0
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape[0] == 359 and np.isfinite(emb).all()
    assert main(["reconstruct", str(joint_run), "--out", str(tmp_path / "rec")]) == 0
    assert (tmp_path / "rec" / "reconstructions.png").exists()


def _fails(args, capsys, *needles):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_config_errors_name_the_key(tmp_path, capsys):
    _fails(train_args("joint", tmp_path / "a", "batch_sise=3"), capsys, "batch_sise", "did you mean 'batch_size'")
    _fails(train_args("joint", tmp_path / "a", "train.steps=many"), capsys, "train.steps", "integer")
    _fails(train_args("joint", tmp_path / "a", "data.name=fashion", "data.root=/no/such/dir"), capsys,
           "/no/such/dir")
    _fails(["train", "jont", "--out", str(tmp_path / "b")], capsys, "unknown recipe 'jont'")
    assert not (tmp_path / "a").exists()  # nothing written for a bad config


def test_run_folder_of_another_recipe_is_refused(joint_run, capsys):
    before = (joint_run / "run.yaml").read_text()
    _fails(train_args("rf", joint_run), capsys, "holds a 'joint' run")
    assert (joint_run / "run.yaml").read_text() == before


def test_corrupted_checkpoint_is_reported_and_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args("classifier", out)) == 0
    ckpts = sorted((out / "checkpoints").glob("step-*.pt"))
    ckpts[-1].write_bytes(b"garbage")
    before = (out / "run.yaml").read_text()
    _fails(train_args("classifier", out, "train.steps=5"), capsys, ckpts[-1].name)
    assert ckpts[-1].read_bytes() == b"garbage" and (out / "run.yaml").read_text() == before


@pytest.mark.parametrize("recipe,extra", [("joint", ["data.flip=true"]), ("representation", [])])
def test_resumed_run_matches_uninterrupted_run(tmp_path, recipe, extra):
    # random flips, two-view augmentations, latent noise and RF noise all replay exactly on resume
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(train_args(recipe, full, "train.steps=4", *extra)) == 0
    assert main(train_args(recipe, part, "train.steps=2", *extra)) == 0  # stops with a checkpoint at step 2
    assert main(train_args(recipe, part, "train.steps=4", *extra)) == 0  # resumes from it
    rows = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["loss"] for r in rows(full)] == [r["loss"] for r in rows(part)]


def test_demo_command_reports_accuracy_and_files(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path / "demo")]
    for item in [*sets("joint"), "sample_every=2"]:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test accuracy: " in out and "class-conditional samples" in out
    assert (tmp_path / "demo" / "samples.png").exists() and (tmp_path / "demo" / "reconstructions.png").exists()
    assert (tmp_path / "demo" / "samples" / "step-000000002.png").exists()  # the periodic sample grid
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists()
    assert "report (one HTML page)" in out and (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    assert f"explore it in a browser: lzn serve {tmp_path / 'demo' / 'model'}  (then open http://127.0.0.1:8000/)" in out
    capsys.readouterr()
    assert main(["report", str(tmp_path / "demo"), "--out", str(tmp_path / "r.html"), "--max-points", "50"]) == 0
    assert str(tmp_path / "r.html") in capsys.readouterr().out and (tmp_path / "r.html").exists()
