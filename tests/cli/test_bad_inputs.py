"""The command line's bad-input surface, table-driven: every expected failure exits with code 2 and
one line ``lzn COMMAND: error: ...`` naming the problem, and leaves every file it could touch as it
was. Reruns of finished runs are no-ops; a larger step budget continues a run, a smaller one is refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch
from PIL import Image

from lzn.cli.main import main
from tests.recipes.tiny import sets


def train_args(recipe: str, out, *extra: str, preset: str | None = "digits") -> list[str]:
    args = ["train", recipe, "--out", str(out)] + (["--preset", preset] if preset else [])
    for item in [*sets(recipe), *extra]:
        args += ["--set", item]
    return args


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash and modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "joint"
    assert main(train_args("joint", out)) == 0
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """A two-class image folder (no test split) with 8x8 grayscale PNGs."""
    root = tmp_path_factory.mktemp("folder") / "pets"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def fails(args: list[str], capsys, *needles: str) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"lzn {args[0]}: error: ") or err.startswith("lzn: error:") or \
        err.startswith(f"lzn {args[0]}: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def _folder_sets(root: Path) -> list[str]:
    return [f"data.name=folder", f"data.root={root}", "data.size=8", "data.channels=1", "batch_size=32"]


TRAIN_CASES = [
    # (extra --set items, needles)
    (["batch_sise=3"], ["unknown config key 'batch_sise'", "did you mean 'batch_size'"]),
    (["train.steps=many"], ["train.steps", "integer"]),
    (["encoder.kwargs.hiden=64"], ["encoder.kwargs.hiden", "did you mean 'encoder.kwargs.hidden'"]),
    (["encoder.name=smal_encoder"], ["encoder.name", "did you mean 'small_encoder'"]),
    (["train.lr=.nan"], ["train.lr must be a finite number > 0"]),
    (["train.lr.encoder=-1e-3"], ["train.lr.encoder must be a finite number > 0", "-0.001"]),
    (["train.ema_decay=1"], ["train.ema_decay must lie in [0, 1)"]),
    (["batch_size=0"], ["batch_size must be an integer >= 1"]),
    (["noise_scale=-1"], ["noise_scale must be a finite number >= 0"]),
    (["eval_noise_scale=.inf"], ["eval_noise_scale must be a finite number >= 0"]),
    (["data.name=fashion", "data.root=/no/such/dir"], ["/no/such/dir"]),
    (["data.holdout=0.1"], ["holdout"]),
    (["train.device=cuda:7"], ["cuda:7"]),
    (["train.lr.unknown_module=1e-3"], ["unknown_module"]),
    (["train.amp=fp8"], ["amp"]),
    (["sampler=rk4"], ["sampler", "'rk4'"]),
    (["train.steps=0"], ["train.steps must be an integer >= 1"]),
    (["train.lr={encodr: 1.0e-3}"], ["train.lr names unknown modules ['encodr']", "did you mean 'encoder'"]),
    (["data.root=/somewhere"], ["data.root does not apply to digits"]),
]


@pytest.mark.parametrize("extra,needles", TRAIN_CASES, ids=[c[0][-1] for c in TRAIN_CASES])
def test_bad_train_settings_write_nothing(tmp_path, capsys, extra, needles):
    fails(train_args("joint", tmp_path / "new", *extra), capsys, *needles)
    assert not (tmp_path / "new").exists()


def test_bad_settings_leave_an_existing_run_alone(run, tmp_path, capsys):
    before = snapshot(run)
    for extra, needles in TRAIN_CASES:
        fails(train_args("joint", run, *extra), capsys, *needles)
    fails(train_args("rf", run), capsys, "holds a 'joint' run")
    fails(train_args("joint", run, "latent_dim=4"), capsys, "different config", "latent_dim")
    fails(train_args("joint", run, "train.steps=2"), capsys, "already trained 3 steps", "cannot be shortened")
    assert snapshot(run) == before


def test_a_decayed_run_keeps_its_budget_when_resumed(tmp_path, capsys):
    out = tmp_path / "decayed"
    assert main(train_args("nogen", out, "train.lr_decay=cosine", "train.checkpoint_every=1")) == 0
    before = snapshot(out)
    fails(train_args("nogen", out, "train.lr_decay=cosine", "train.checkpoint_every=1", "train.steps=5"), capsys,
          "decays the LR of module 'encoder' over its budget of 3 steps", "train.lr_decay=cosine", "keep train.steps")
    assert snapshot(out) == before
    fails(train_args("nogen", out, "train.lr_decay=cosin"), capsys, "lr_decay must be null", "cosine, linear")


def test_a_run_from_before_a_new_key_resumes_and_refuses_another_value(tmp_path, capsys):
    out = tmp_path / "older"
    assert main(train_args("nogen", out, "train.checkpoint_every=1")) == 0
    text = (out / "run.yaml").read_text()
    assert "balanced: false" in text and "lr_decay: null" in text
    older = "".join(line for line in text.splitlines(keepends=True)  # as a version without the two keys wrote it
                    if "balanced: false" not in line and "lr_decay: null" not in line)
    (out / "run.yaml").write_text(older)
    fails(train_args("nogen", out, "data.balanced=true", "train.steps=4"), capsys, "different config (data.balanced)")
    assert main(train_args("nogen", out, "train.steps=4")) == 0  # the keys' defaults are what the older run did
    assert '"step": 4' in (out / "metrics.jsonl").read_text()


@pytest.mark.parametrize("args,needles", [
    (["train", "jont", "--out", "{tmp}/a"], ["unknown recipe 'jont'"]),
    (["train", "joint", "--preset", "digitz", "--out", "{tmp}/a"], ["unknown preset 'digitz'"]),
    (["train", "joint", "--preset", "digits", "--config", "{tmp}", "--out", "{tmp}/a"], ["is a directory"]),
    (["train", "joint", "--preset", "digits", "--config", "{tmp}/none.yaml", "--out", "{tmp}/a"], ["does not exist"]),
    (["train", "joint", "--preset", "digits", "--set", "train.lr", "--out", "{tmp}/a"], ["key=value"]),
    (["train", "joint", "--preset", "digits", "--out", "{tmp}/file.txt"], ["is an existing file"]),
    (["classify", "{tmp}", "--data", "digits"], ["neither an lzn run folder", "nor a model folder"]),
    (["report", "{tmp}"], ["not an lzn run folder"]),
])
def test_bad_command_lines(tmp_path, capsys, args, needles):
    (tmp_path / "file.txt").write_text("keep me\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = snapshot(tmp_path)
    fails(args, capsys, *needles)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args,needles", [
    (["classify", "{run}", "--noise-scale", "nan"], ["--noise-scale", "finite number >= 0"]),
    (["classify", "{run}", "--noise-scale", "-1"], ["--noise-scale"]),
    (["classify", "{run}", "--device", "cuda:7"], ["cuda:7"]),
    (["classify", "{run}", "--split", "val"], ["--split", "invalid choice"]),
    (["sample", "{run}", "--labels", "a,b"], ["--labels expects", "'a'"]),
    (["sample", "{run}", "--labels", "1,12"], ["--labels expects", "'12'"]),
    (["sample", "{run}", "--num", "0"], ["--num", "positive integer"]),
    (["sample", "{run}", "--out", "{run}"], ["is a directory"]),
    (["reconstruct", "{run}", "--out", "{run}/run.yaml"], ["is an existing file"]),
    (["sample", "{run}", "--out", "{run}/s.jpg"], ["not a .png"]),
    (["sample", "{run}", "--labels", ""], ["--labels is empty"]),
    (["sample", "{run}", "--labels", "1,2", "--num", "3"], ["not both"]),
    (["classify", "{run}", "--out", "{run}/model"], ["is a directory"]),
    (["classify", "{run}", "--data", "digts"], ["--data must be one of"]),
])
def test_bad_inference_inputs_leave_the_run_alone(run, capsys, args, needles):
    args = [a.replace("{run}", str(run)) for a in args]
    before = snapshot(run)
    fails(args, capsys, *needles)
    assert snapshot(run) == before


def test_missing_optional_package_is_named_before_training(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    fails(train_args("joint", tmp_path / "tb", "train.tensorboard=true"), capsys, "tensorboard",
          "pip install 'lzn[tensorboard]'")
    assert not (tmp_path / "tb").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_on_a_cpu_build_is_one_line(run, tmp_path, capsys):
    fails(train_args("joint", tmp_path / "c", "train.device=cuda"), capsys, "'cuda'", "use cpu")
    fails(["classify", str(run), "--device", "cuda"], capsys, "'cuda'", "use cpu")
    assert not (tmp_path / "c").exists()


def test_rerunning_a_finished_run_changes_nothing(run, capsys):
    before = snapshot(run)
    stored = json.loads((run / "results.json").read_text())
    capsys.readouterr()
    assert main(train_args("joint", run)) == 0
    io = capsys.readouterr()
    assert "already finished" in io.err and f"final_loss: {stored['final_loss']:.4f}" in io.out
    assert snapshot(run) == before and stored["final_loss"] is not None


def test_a_failed_start_does_not_poison_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    fails(train_args("joint", out, "train.lr={encoder: 1.0e-3}", "train.lr=.nan"), capsys, "train.lr")
    fails(train_args("joint", out, "data.name=arrays", f"data.root={tmp_path}/none.npz"), capsys, "none.npz")
    assert not out.exists()
    assert main(train_args("joint", out)) == 0  # the corrected command runs


def test_a_larger_budget_continues_and_reports_the_real_final_loss(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args("classifier", out)) == 0
    assert main(train_args("classifier", out, "train.steps=5")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 5 and res["final_loss"] is not None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 5 and rows[-1]["loss"] == res["final_loss"]
    assert "steps: 5" in (out / "run.yaml").read_text()  # the config in force


def test_run_folder_inside_the_image_folder_is_refused(image_folder, capsys):
    out = image_folder / "runs"
    fails(train_args("classifier", out, *_folder_sets(image_folder)), capsys, "lies inside the image folder")
    assert not out.exists()


def test_own_data_without_a_test_split_is_named_train(image_folder, tmp_path, capsys):
    out = tmp_path / "pets"
    assert main(train_args("joint", out, *_folder_sets(image_folder))) == 0
    res = json.loads((out / "results.json").read_text())
    assert "test_accuracy" not in res and 0 <= res["train_accuracy"] <= 1 and res["evaluated_on"] == "train"
    assert "cat" in (out / "run.yaml").read_text()
    assert json.loads((out / "model" / "config.json").read_text())["class_names"] == ["cat", "dog"]
    before = snapshot(out)
    fails(["classify", str(out)], capsys, "no 'test' split", "use --split train")
    capsys.readouterr()
    assert main(["classify", str(out), "--split", "train"]) == 0
    assert "train accuracy:" in capsys.readouterr().out
    assert main(["sample", str(out), "--labels", "dog,cat", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert "labels: 1 (dog),0 (cat)" in capsys.readouterr().out
    assert {k: v for k, v in snapshot(out).items()} == before


def test_own_data_with_a_held_out_fraction_reports_test_accuracy(image_folder, tmp_path):
    out = tmp_path / "held"
    assert main(train_args("classifier", out, *_folder_sets(image_folder), "data.holdout=0.25")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["evaluated_on"] == "test" and "test_accuracy" in res


def test_labels_with_gaps_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 10)
    labels[0] = 99
    path = tmp_path / "gaps.npz"
    np.savez(path, images=rng.integers(0, 256, (100, 8, 8), dtype=np.uint8), labels=labels)
    fails(train_args("joint", tmp_path / "r", "data.name=arrays", f"data.root={path}", "batch_size=32"), capsys,
          "missing", "10-98")
    assert not (tmp_path / "r").exists()


def test_corrupt_image_is_named_and_skipped_only_when_asked(image_folder, tmp_path, capsys):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(image_folder, root)
    (root / "cat" / "bad.png").write_bytes(b"not a png")
    extra = ["data.test_split=null", "train.steps=1"]
    fails(train_args("classifier", tmp_path / "r", *_folder_sets(root), *extra), capsys, "bad.png",
          "data.skip_bad_files")
    assert not (tmp_path / "r").exists()
    assert main(train_args("classifier", tmp_path / "r", *_folder_sets(root), *extra,
                           "data.skip_bad_files=true")) == 0


def test_outputs_name_the_files_they_write(run, tmp_path, capsys):
    capsys.readouterr()
    old = os.umask(0o022)
    try:
        assert main(["embed", str(run), "--out", str(tmp_path / "emb")]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr().out
    assert str(tmp_path / "emb.npy") in out and np.load(tmp_path / "emb.npy").shape[0] == 359
    assert (tmp_path / "emb.npy").stat().st_mode & 0o044  # group/other readable under a usual umask


def test_inference_commands_work_from_a_bare_model_folder(run, tmp_path, capsys):
    import shutil

    model_dir = tmp_path / "exported"
    shutil.copytree(run / "model", model_dir)
    before = snapshot(model_dir)
    capsys.readouterr()
    assert main(["classify", str(model_dir), "--data", "digits"]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert main(["sample", str(model_dir), "--labels", "0,1", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["embed", str(model_dir), "--data", "digits", "--out", str(tmp_path / "e.npy")]) == 0
    assert main(["reconstruct", str(model_dir), "--data", "digits", "--num", "4", "--sampler", "euler", "--steps", "2",
                 "--out", str(tmp_path / "rec")]) == 0  # fewer than the 32 pairs of the picture
    assert (tmp_path / "rec" / "reconstructions.png").is_file()
    assert main(["evaluate", str(model_dir), "--data", "digits", "--metrics", "accuracy,recon", "--steps", "2",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert {"classification", "reconstruction"} <= set(json.loads((tmp_path / "m.json").read_text()))
    fails(["classify", str(model_dir)], capsys, "bare model folder", "--data")
    assert snapshot(model_dir) == before  # nothing written into the model folder


def test_a_classifier_run_is_refused_by_the_model_commands(tmp_path, capsys):
    out = tmp_path / "clf"
    assert main(train_args("classifier", out)) == 0
    fails(["classify", str(out)], capsys, "'classifier' run", "results.json")


def test_evaluate_writes_every_applicable_metric(run, tmp_path, capsys):
    import importlib.util

    extractor = "fast" if importlib.util.find_spec("efficientnet_lite_pytorch") else "none"
    before = snapshot(run)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--extractor", extractor, "--num", "8", "--steps", "2",
                 "--out", str(tmp_path / "ev.json")]) == 0
    res = json.loads((tmp_path / "ev.json").read_text())
    assert res["evaluated_on"] == "test" and {"classification", "reconstruction", "representation", "zones"} <= set(res)
    contexts = {row["context"] for row in res["classification"]["sweep"]}
    assert contexts == {"batch", "reference"}  # the exported model carries a reference bank
    cfg = yaml.safe_load((run / "run.yaml").read_text())["config"]
    sweep = {(r["alpha"], r["batch_size"]) for r in res["classification"]["sweep"] if r["context"] == "batch"}
    assert sweep == {(a, b) for a in (0.0, 0.5, 1.0, 1.2) for b in (cfg["batch_size"], cfg["eval_batch_size"])}
    assert "raw_weights" in res and "zones" not in res["raw_weights"]  # the paper's raw and EMA figures
    if extractor == "fast":
        g = res["generation"]
        assert g["extractor"] == "efficientnet-lite0-imagenet" and g["num_fake"] == 8 and g["fid"] >= 0
    printed = capsys.readouterr().out
    assert "accuracy (alpha 1)" in printed and "reference bank" in printed and "zones: round trip" in printed
    size = min(cfg["eval_batch_size"], res["zones"]["num_images"])  # the anchor set the round trip is measured in
    assert res["zones"]["anchor_set"] == size and f"anchor sets of {size}" in printed
    assert "raw weights: accuracy (alpha 1.2)" in printed
    assert str(tmp_path / "ev.json") in printed and snapshot(run) == before
    fails(["evaluate", str(run), "--out", str(tmp_path)], capsys, "is a directory")


def test_evaluate_metrics_subset_and_sweeps(run, tmp_path, capsys):
    """--metrics runs only what it names; --alphas and --batch-sizes span the accuracy sweep."""
    assert main(["evaluate", str(run), "--metrics", "accuracy,knn", "--alphas", "0,1", "--batch-sizes", "37,400",
                 "--num-samples", "8", "--out", str(tmp_path / "m.json")]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res) == {"evaluated_on", "classification", "representation", "raw_weights"}  # no generation, recon, zones
    assert set(res["representation"]) == {"features", "split", "knn_accuracy", "knn_accuracy_anchors"}  # no probe
    batch = {(r["alpha"], r["batch_size"]) for r in res["classification"]["sweep"] if r["context"] == "batch"}
    assert batch == {(0.0, 37), (1.0, 37), (0.0, 400), (1.0, 400)}
    raw = res["raw_weights"]  # the live weights: the same sweep, batch protocol only (the bank is the EMA encoder's)
    assert set(raw) == {"classification", "representation"}
    assert {(r["alpha"], r["batch_size"], r["context"]) for r in raw["classification"]["sweep"]} == \
        {(a, b, "batch") for a, b in batch}
    fails(["evaluate", str(run), "--metrics", "fid,acc"], capsys, "--metrics", "'acc'", "fid, kid, pr")
    fails(["evaluate", str(run), "--alphas", "0,2.5"], capsys, "--alphas", "[0, 2]")
    fails(["evaluate", str(run), "--batch-sizes", "0"], capsys, "--batch-sizes", "positive integer")
    fails(["evaluate", str(run), "--partitions", "-1"], capsys, "--partitions", ">= 0")


def test_evaluate_partitions(run, tmp_path, capsys):
    """--partitions averages a batch row over random partitions where the images fill more than one batch."""
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metrics", "accuracy", "--alphas", "0", "--batch-sizes", "100,400",
                 "--partitions", "2", "--weights", "ema", "--out", str(tmp_path / "p.json")]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())["classification"]["sweep"]
    small = next(r for r in rows if r["context"] == "batch" and r["batch_size"] == 100)  # 359 test images: 4 sets
    assert small["partitions"]["partitions"] == 2 and 0.0 <= small["partitions"]["mean"] <= 1.0
    assert all("partitions" not in r for r in rows if r["batch_size"] == 400 or r["context"] != "batch")  # one set
    assert "over 2 random partitions into batches" in capsys.readouterr().out
