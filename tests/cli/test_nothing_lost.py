"""Issue 20, "nothing lost, nothing silent": evaluation merges instead of replacing, no command writes over
a model's files, a run folder has one writer, inference works on runs trained on shards, and what the data
or a figure cannot support is said. Each case is one test (the bad-input table's siblings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lzn.cli.main import main
from lzn.eval.suite import merge_results, metric_rows
from tests.cli.test_bad_inputs import fails, snapshot, train_args


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "joint"
    assert main(train_args("joint", out)) == 0
    return out


# ---- lzn evaluate: merged by metric, never over another file -------------------------------------------

def test_evaluate_merges_by_metric_and_keeps_earlier_figures(run, capsys):
    metrics = run / "metrics.json"
    assert main(["evaluate", str(run), "--extractor", "none", "--steps", "2", "--weights", "ema"]) == 0
    first = json.loads(metrics.read_text())
    assert {"classification", "reconstruction", "representation", "zones"} <= set(first)
    assert main(["evaluate", str(run), "--metrics", "accuracy,zones", "--alphas", "0.5", "--weights", "ema"]) == 0
    second = json.loads(metrics.read_text())
    assert second["reconstruction"] == first["reconstruction"]  # not measured again: kept
    assert second["representation"] == first["representation"]
    rows = {(r["alpha"], r["batch_size"], r["context"]): r["accuracy"] for r in second["classification"]["sweep"]}
    earlier = {(r["alpha"], r["batch_size"], r["context"]) for r in first["classification"]["sweep"]}
    assert earlier <= set(rows)  # the earlier sweep's alphas stay beside the new one
    assert "merged" in capsys.readouterr().out


def test_evaluate_with_nothing_that_applies_fails_and_changes_nothing(run, tmp_path, capsys):
    assert main(["evaluate", str(run), "--metrics", "recon", "--steps", "2", "--weights", "ema"]) == 0
    before = snapshot(run)
    fails(["evaluate", str(run), "--metrics", "fid", "--extractor", "none"], capsys, "no requested metric applies",
          "fid: --extractor none", "left as it is")
    fails(["evaluate", str(run), "--metrics", "fid,kid", "--extractor", "none", "--out", str(tmp_path / "n.json")],
          capsys, "no requested metric applies")
    assert snapshot(run) == before and not (tmp_path / "n.json").exists()


@pytest.mark.parametrize("target,needles", [
    ("{run}/model/config.json", ["existing file of the model folder"]),
    ("{run}/run.yaml", ["does not end in .json"]),
    ("{tmp}/notes.json", ["not a metrics file", "left as it is"]),
    ("{tmp}", ["is a directory"]),
])
def test_evaluate_out_never_writes_over_other_files(run, tmp_path, capsys, target, needles):
    (tmp_path / "notes.json").write_text('{"mine": 1}\n')
    before, mine = snapshot(run), snapshot(tmp_path)
    fails(["evaluate", str(run), "--metrics", "recon", "--out", target.format(run=run, tmp=tmp_path)], capsys, *needles)
    assert snapshot(run) == before and snapshot(tmp_path) == mine


def test_evaluate_out_may_be_a_new_json_in_the_model_folder(run, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    assert main(["evaluate", str(model), "--data", "digits", "--metrics", "recon", "--steps", "2",
                 "--out", str(model / "eval.json")]) == 0
    assert "reconstruction" in json.loads((model / "eval.json").read_text())


def test_merge_keeps_each_metric_with_its_own_settings():
    """A metric measured again with other settings replaces only itself; its section neighbours measured
    before keep theirs (an entry of their own)."""
    gen = {"extractor": "x", "num_real": 10, "num_fake": 10, "sampler": "euler", "sampler_steps": 2, "split": "test"}
    old = {"evaluated_on": "test", "generation": {**gen, "fid": 3.0, "kid_mean": 0.1, "kid_std": 0.01},
           "zones": {"latent_ks_mean": 0.1, "latent_mean_norm": 0.1, "latent_cov_max_abs_dev": 0.1, "round_trip": {}}}
    new = {"evaluated_on": "train", "generation": {**gen, "num_fake": 5, "kid_mean": 0.2, "kid_std": 0.02,
                                                   "split": "train"}}
    out = merge_results(old, new)
    assert out["generation"]["kid_mean"] == 0.2 and "fid" not in out["generation"]
    assert out["generation:fid"] == {**gen, "fid": 3.0} and out["zones"]["split"] == "test"
    names = [r[0] for r in metric_rows(out)]
    assert names.count("FID") == 1 and names.count("KID") == 1
    same = merge_results(old, {"evaluated_on": "test", "generation": {**gen, "kid_mean": 0.3, "kid_std": 0.0}})
    assert same["generation"]["fid"] == 3.0 and "generation:fid" not in same  # same settings: one entry


# ---- one writer per run folder -------------------------------------------------------------------------

def _lock_of(pid: int) -> str:
    import socket

    from lzn.run_folder import _start_time

    return json.dumps({"pid": pid, "host": socket.gethostname(), "start": _start_time(pid), "since": 0,
                       "command": "lzn train joint --out elsewhere"})


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_one_is_taken_over(run, capsys):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(_lock_of(holder.pid))
        before = snapshot(run)
        fails(train_args("joint", run, "train.steps=4"), capsys, "is in use by", f"process {holder.pid}",
              "lzn train joint --out elsewhere")
        assert snapshot(run) == before  # nothing trained, the holder's lock kept
    finally:
        holder.kill()
        holder.wait()
    assert main(train_args("joint", run, "train.steps=4")) == 0  # the holder is gone: its lock is taken over
    assert not (run / ".lock").exists()  # and given back at the end
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no step twice


# ---- inference on a run trained on shards --------------------------------------------------------------

@pytest.fixture(scope="module")
def shards_run(tmp_path_factory) -> tuple[Path, Path]:
    from lzn.data import shard_source

    base = tmp_path_factory.mktemp("shards")
    shard_source("digits", base / "sh", shard_size=500, progress=False)
    out = base / "run"
    assert main(train_args("joint", out, "data.name=shards", f"data.root={base / 'sh'}")) == 0
    return out, base / "sh"


@pytest.mark.parametrize("command", [
    ["classify", "{run}"],
    ["classify", "{run}", "--context", "batch", "--out", "{tmp}/pred.npy"],
    ["embed", "{run}", "--out", "{tmp}/emb.npy"],
    ["reconstruct", "{run}", "--num", "4", "--steps", "2", "--out", "{tmp}/rec"],
    ["evaluate", "{run}", "--extractor", "none", "--steps", "2", "--out", "{tmp}/m.json"],
    ["report", "{run}", "--out", "{tmp}/report.html"],
    ["classify", "{model}", "--data", "shards", "--root", "{shards}"],
    ["embed", "{model}", "--data", "shards", "--root", "{shards}", "--split", "train", "--out", "{tmp}/e2.npy"],
])
def test_inference_commands_run_on_a_run_trained_on_shards(shards_run, tmp_path, capsys, command):
    run, shards = shards_run
    args = [a.format(run=run, tmp=tmp_path, model=run / "model", shards=shards) for a in command]
    capsys.readouterr()
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    if args[0] == "classify":
        assert "test accuracy:" in printed and "on 359 images" in printed
    if args[0] == "embed":
        import numpy as np

        assert np.load(args[-1]).shape[0] == (1438 if "train" in args else 359)
    if args[0] == "evaluate":
        res = json.loads((tmp_path / "m.json").read_text())
        assert {"classification", "reconstruction", "representation", "zones"} <= set(res)


def test_classify_on_shards_equals_classify_in_memory(shards_run, tmp_path, capsys):
    """Shards are read chunk by chunk (one anchor set each): the predictions are those of the same images
    in memory (digits as 8-bit PNG come back within 1/255, so compare with the split decoded from shards)."""
    import numpy as np

    run, shards = shards_run
    for context in ("batch", "reference"):
        assert main(["classify", str(run), "--context", context, "--out", str(tmp_path / "a.npy")]) == 0
        from lzn.cli.common import load
        from lzn.data import ShardedDataset

        model = load(str(run), "cpu").model
        images = ShardedDataset(shards / "test").load().images
        import torch

        cfg = json.loads(json.dumps(__import__("yaml").safe_load((run / "run.yaml").read_text())["config"]))
        pred = model.classify(images, noise_scale=cfg["eval_noise_scale"], batch_size=cfg["eval_batch_size"],
                              generator=torch.Generator().manual_seed(0), context=context)
        assert np.array_equal(np.load(tmp_path / "a.npy"), pred.numpy())


def test_reconstruct_never_writes_over_the_runs_own_picture(run, capsys):
    own = (run / "reconstructions.png").read_bytes()
    before = snapshot(run)
    fails(["reconstruct", str(run), "--out", str(run)], capsys, "the run's own reconstructions.png")
    fails(["reconstruct", str(run), "--out", str(run / "model")], capsys, "inside the model folder")
    assert snapshot(run) == before
    capsys.readouterr()
    assert main(["reconstruct", str(run), "--num", "4", "--steps", "2"]) == 0
    assert str(run / "samples" / "reconstructions.png") in capsys.readouterr().out
    assert (run / "reconstructions.png").read_bytes() == own


# ---- config files --------------------------------------------------------------------------------------

def test_a_duplicated_config_key_is_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  steps: 5\nlatent_dim: 4\ntrain:\n  lr: 1.0e-3\n")
    fails(train_args("joint", tmp_path / "r") + ["--config", str(tmp_path / "c.yaml")], capsys,
          "'train' appears twice", "lines 1 and 4")
    assert not (tmp_path / "r").exists()


def test_a_runs_own_run_yaml_is_accepted_as_config(run, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["train", "joint", "--config", str(run / "run.yaml"), "--out", str(out), "--set", "train.steps=1"]) == 0
    fails(["train", "rf", "--config", str(run / "run.yaml"), "--out", str(tmp_path / "rf")], capsys,
          "run.yaml of a 'joint' run")


# ---- lzn data shard / info -----------------------------------------------------------------------------

def _npz(path: Path, labels) -> Path:
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8), labels=labels)
    return path


def test_shard_refuses_an_out_inside_its_source(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "pets" / "cat"
    src.mkdir(parents=True)
    Image.new("L", (8, 8)).save(src / "0.png")
    fails(["data", "shard", str(tmp_path / "pets"), "--out", str(tmp_path / "pets" / "shards")], capsys,
          "lies inside the source")
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == ["cat"]


def test_shard_refuses_labels_with_gaps_where_it_writes_them(tmp_path, capsys):
    src = _npz(tmp_path / "g.npz", [0, 2, 0, 2])
    fails(["data", "shard", str(src), "--out", str(tmp_path / "sh")], capsys, "missing: 1", "--split test")
    assert not (tmp_path / "sh" / "train").exists()
    assert main(["data", "shard", str(src), "--out", str(tmp_path / "sh"), "--split", "test"]) == 0


def test_shard_removes_a_killed_writers_temporary_split_and_names_the_missing_one(tmp_path, capsys):
    out = tmp_path / "d"
    (out / "train").mkdir(parents=True)
    (out / "train" / "index.json").write_text("{}")
    stale = out / ".test.999999999.abcd.tmp"  # a writer killed during the test split (no such process)
    stale.mkdir()
    fails(["data", "shard", "digits", "--out", str(out)], capsys, "test missing", "--split test")
    assert main(["data", "shard", "digits", "--out", str(out), "--split", "test", "--shard-size", "500"]) == 0
    assert not stale.exists() and (out / "test" / "index.json").is_file()


def test_shard_never_replaces_a_split_written_meanwhile(tmp_path):
    from lzn.data import write_shards
    from lzn.data.shard_writer import Sample, encode_png

    import numpy as np

    out = tmp_path / "sh" / "train"

    def samples():
        yield Sample(encode_png(np.zeros((8, 8), np.uint8)), "png", 0, (8, 8), 1)
        out.mkdir(parents=True)  # another writer's split appears while this one writes
        (out / "index.json").write_text("theirs")

    with pytest.raises(FileExistsError, match="meanwhile"):
        write_shards(samples(), out, progress=False)
    assert (out / "index.json").read_text() == "theirs"
    assert [p.name for p in out.parent.iterdir()] == ["train"]


def test_data_info_finds_a_truncated_shard(tmp_path, capsys):
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "d"), "--shard-size", "500"]) == 0
    shard = tmp_path / "d" / "train" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    fails(["data", "info", str(tmp_path / "d")], capsys, "shard-000001.tar is truncated", "write the split again")


def test_shards_with_only_a_test_split_say_so(tmp_path, capsys):
    assert main(["data", "shard", "digits", "--out", str(tmp_path / "d"), "--split", "test"]) == 0
    fails(train_args("joint", tmp_path / "r", "data.name=shards", f"data.root={tmp_path / 'd'}"), capsys,
          "hold only a test split", "--split train")


def test_a_resume_on_other_data_is_refused_unless_asked(tmp_path, capsys):
    import numpy as np

    src = _npz(tmp_path / "a.npz", np.arange(160) % 4)
    assert main(["data", "shard", str(src), "--out", str(tmp_path / "sh")]) == 0
    data = ["data.name=shards", f"data.root={tmp_path / 'sh'}", "data.test_split=null", "reference_size=0"]
    assert main(train_args("joint", tmp_path / "r", *data)) == 0
    assert "shards:" in (tmp_path / "r" / "run.yaml").read_text()  # the fingerprint
    _npz(src, np.arange(150) % 4)
    assert main(["data", "shard", str(src), "--out", str(tmp_path / "sh"), "--overwrite"]) == 0
    before = snapshot(tmp_path / "r")
    fails(train_args("joint", tmp_path / "r", *data, "train.steps=4"), capsys, "trained on other data",
          "num_train 160 -> 150", "--allow-other-data")
    assert snapshot(tmp_path / "r") == before
    assert main(train_args("joint", tmp_path / "r", *data, "train.steps=4") + ["--allow-other-data"]) == 0


# ---- clearer messages ----------------------------------------------------------------------------------

def test_a_captions_file_that_is_not_utf8_names_the_line(run, tmp_path, capsys):
    (tmp_path / "c.txt").write_bytes(b"a fat zero\n\xff\xfe bad\n")
    fails(["sample", str(run), "--captions-file", str(tmp_path / "c.txt")], capsys, "c.txt: line 2 is not UTF-8")


def test_class_names_shorter_than_the_labels_are_named(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "n.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), labels=np.arange(30) % 3,
             class_names=np.array(["a", "b"]))
    fails(train_args("joint", tmp_path / "r", "data.name=arrays", f"data.root={path}"), capsys,
          "labels go up to 2", "names only 2 classes")


def test_a_class_name_holding_a_comma_can_be_sampled(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "c.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (64, 8, 8), dtype=np.uint8), labels=np.arange(64) % 2,
             class_names=np.array(["cat, black", "dog"]))
    out = tmp_path / "r"
    assert main(train_args("joint", out, "data.name=arrays", f"data.root={path}", "data.test_split=null",
                           "train.steps=1")) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--labels", "cat, black", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert "labels: 0 (cat, black)" in capsys.readouterr().out


def test_the_report_does_not_embed_the_absolute_run_path(run):
    from lzn.eval import write_report

    html = write_report(run, run.parent / "r.html").read_text()
    assert str(run.resolve()) not in html and run.name in html
