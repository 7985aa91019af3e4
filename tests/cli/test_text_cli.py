"""The text commands of `lzn` on a tiny text run: sample for captions, classify by class prompts,
retrieve images for captions, `lzn evaluate --metrics retrieval` (the run's own figures), and their
one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from lzn.cli.main import main
from lzn.data import load_split
from lzn.data.captions import DIGIT_WORDS
from lzn.models import LatentZoningNetwork
from lzn.recipes import runner
from tests.recipes.tiny import sets

PROMPTS = [f"the digit {w}" for w in DIGIT_WORDS]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is faster than two contending ones
    out = tmp_path_factory.mktemp("runs") / "text"
    overrides = [s for s in sets("text") if not s.startswith("train.checkpoint_every")]
    runner.train("text", runner.resolve_config("text", "digits", sets=overrides), out)
    yield out
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def no_text_model(text_run, tmp_path_factory):
    """A save_pretrained folder of the run's image encoder and decoder alone: data types ("image",)."""
    m = LatentZoningNetwork.from_pretrained(str(text_run / "model"))
    out = tmp_path_factory.mktemp("models") / "image-only"
    LatentZoningNetwork(m.encoder, m.decoder, None, m.flow).save_pretrained(str(out))
    return out


def _fails(args, capsys, *needles):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"lzn {args[0]}: error:"), err
    for needle in needles:
        assert needle in err, err


def test_sample_for_captions_writes_one_labelled_row_per_caption(text_run, tmp_path, capsys):
    (tmp_path / "captions.txt").write_text("a thin one\n\n  \n")
    capsys.readouterr()
    args = ["sample", str(text_run), "--caption", "a fat zero", "--caption", "seven, drawn thin and slanted",
            "--captions-file", str(tmp_path / "captions.txt"), "--per-caption", "3", "--steps", "2",
            "--out", str(tmp_path / "t2i.png")]
    assert main(args) == 0
    assert "3 per caption" in capsys.readouterr().out
    with Image.open(tmp_path / "t2i.png") as im:  # 3 rows of 3 digits (32 px cells, 1 px padding), captions left
        assert im.format == "PNG" and im.height == 3 * 33 + 1 and im.width > 3 * 33 + 1 + 40


def test_classify_by_prompts_equals_the_model(text_run, tmp_path, capsys):
    model = LatentZoningNetwork.from_pretrained(str(text_run / "model"))
    test = load_split(_data_config(text_run), "test")
    context = "reference" if model.reference is not None else "batch"
    pred = model.classify(test.images, prompts=PROMPTS, batch_size=200, context=context,
                          generator=torch.Generator().manual_seed(0))
    want = (pred == test.labels).float().mean().item()
    for flags in (["--prompts", *PROMPTS], ["--prompt-template", "the {kind} {cls}"]):
        capsys.readouterr()
        assert main(["classify", str(text_run), *flags, "--out", str(tmp_path / "p.npy")]) == 0
        out = capsys.readouterr().out
        acc = float(out.split("accuracy: ")[1].split()[0])
        assert 0.0 <= acc <= 1.0 and acc == pytest.approx(want, abs=1e-4), out
        assert "prompt classification over 10 prompts" in out


def test_retrieve_writes_k_images_per_caption(text_run, tmp_path, capsys):
    capsys.readouterr()
    args = ["retrieve", str(text_run), "--caption", "a fat zero", "--caption", "the digit seven", "--k", "4",
            "--out", str(tmp_path / "r.png")]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("'a fat zero': ") and len(lines[0].split(": ", 1)[1].split(", ")) == 4
    with Image.open(tmp_path / "r.png") as im:
        assert im.height == 2 * 33 + 1 and im.width > 4 * 33 + 1 + 40


def test_text_flags_fail_in_one_line(text_run, no_text_model, tmp_path, capsys):
    run = str(text_run)
    _fails(["sample", str(no_text_model), "--caption", "a fat zero", "--out", str(tmp_path / "s.png")], capsys,
           "--caption", "data types image", "lzn train text")
    _fails(["classify", str(no_text_model), "--data", "digits", "--prompts", *PROMPTS], capsys,
           "--prompts", "data types image", "lzn train text")
    _fails(["classify", run, "--prompts", "zero", "one"], capsys, "--prompts gives 2 texts", "10 classes")
    _fails(["classify", run, "--prompts", *PROMPTS, "--prompt-template", "the digit {cls}"], capsys,
           "--prompts", "--prompt-template", "not both")
    _fails(["classify", run, "--prompt-template", "the digit"], capsys, "--prompt-template", "{cls}")
    _fails(["sample", run, "--caption", "a fat zero", "--labels", "0,1"], capsys, "--caption", "--labels", "not both")
    _fails(["sample", run, "--captions-file", str(tmp_path / "none.txt")], capsys, "--captions-file", "no such file")
    _fails(["retrieve", run], capsys, "--caption")
    _fails(["classify", run], capsys, "no label decoder", "--prompt-template")


def _data_config(run):
    from lzn.data import DataConfig
    from lzn.recipes.config import load_yaml

    return DataConfig(**load_yaml(run / "run.yaml")["config"]["data"])


def test_prompts_on_unlabelled_data_print_the_predictions(text_run, tmp_path, capsys):
    """Issue 20: --prompts on data without classes exited 0 and printed nothing; it says what it predicted."""
    import numpy as np

    np.save(tmp_path / "u.npy", np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8))
    capsys.readouterr()
    assert main(["classify", str(text_run), "--data", "arrays", "--root", str(tmp_path / "u.npy"), "--split", "train",
                 "--prompts",
                 "a zero", "a one"]) == 0
    out = capsys.readouterr().out
    assert "train split of u is unlabelled (no accuracy); predictions of 12 images" in out and "'a zero': " in out
    assert "--out FILE.npy" in out


def test_evaluate_on_a_text_model_names_what_does_not_apply(text_run, tmp_path, capsys):
    _fails(["evaluate", str(text_run), "--metrics", "accuracy", "--out", str(tmp_path / "m.json")], capsys,
           "no requested metric applies", "no label decoder")
    assert not (tmp_path / "m.json").exists()


def _evaluate_retrieval(target, out, capsys, *extra):
    capsys.readouterr()
    assert main(["evaluate", str(target), "--metrics", "retrieval", *extra, "--out", str(out)]) == 0
    return json.loads(out.read_text())["retrieval"], capsys.readouterr().out


def test_evaluate_retrieval_reproduces_the_runs_figures(text_run, tmp_path, capsys):
    """The exported model, drawn and scored with the run's settings, gives results.json's figures exactly."""
    r, printed = _evaluate_retrieval(text_run, tmp_path / "m.json", capsys)
    res = json.loads((text_run / "results.json").read_text())
    for key in ("pairs", "distinct_captions", "i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5",
                "prompt_accuracy"):
        assert r[key] == res[f"test_{key}"], key
    assert r["split"] == "test" and r["captions"] == "composed" and r["settings"].startswith("the run's")
    assert (r["eval_pairs"], r["batch_size"], r["prompt_images"]) == (50, 200, 359) and "note" not in r
    assert "image -> text recall@1" in printed and "text -> image recall@5" in printed
    assert "prompt accuracy" in printed and "'the {kind} {cls}'" in printed


def test_evaluate_retrieval_on_a_bare_model_folder_says_it_uses_defaults(text_run, tmp_path, capsys):
    r, printed = _evaluate_retrieval(text_run / "model", tmp_path / "m.json", capsys, "--data", "digits")
    assert r["settings"].startswith("defaults") and (r["eval_pairs"], r["seed"], r["caption_seed"]) == (400, 0, 0)
    assert r["pairs"] == 359 and r["prompt"] == "the {kind} {cls}" and 0.0 <= r["prompt_accuracy"] <= 1.0
    assert "settings: defaults" in printed


def test_evaluate_retrieval_fails_in_one_line_where_it_does_not_apply(text_run, no_text_model, tmp_path, capsys):
    import numpy as np

    _fails(["evaluate", str(no_text_model), "--data", "digits", "--metrics", "retrieval", "--out",
            str(tmp_path / "m.json")], capsys, "no requested metric applies", "no text type", "lzn train text")
    np.save(tmp_path / "u.npy", np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8))
    _fails(["evaluate", str(text_run), "--data", "arrays", "--root", str(tmp_path / "u.npy"), "--metrics",
            "retrieval", "--out", str(tmp_path / "m.json")], capsys, "no requested metric applies", "unlabelled")
    assert not (tmp_path / "m.json").exists()


def test_evaluate_on_user_captions_measures_recall_alone_with_a_note(tmp_path, capsys):
    from tests.recipes.test_user_captions import captions_cfg, pair_list

    root = tmp_path / "pairs"
    root.mkdir()
    for name, pixels, caption in pair_list():
        Image.fromarray(pixels).save(root / f"{name}.png")
        (root / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    res = runner.train("text", captions_cfg("text", root), tmp_path / "run")
    r, printed = _evaluate_retrieval(tmp_path / "run", tmp_path / "m.json", capsys)
    for key in ("pairs", "distinct_captions", "i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5"):
        assert r[key] == res[f"test_{key}"], key
    assert r["captions"] == "the data's own" and "prompt_accuracy" not in r and "prompt accuracy" not in printed
    assert (r["pairs"], r["distinct_captions"]) == (6, 4)  # 4 distinct captions: image -> text recall@5 is 1.0
    assert "image -> text recall@5 is 1.0 whatever the model" in r["note"] and "says nothing" in printed


def test_evaluate_on_a_clip_run_says_it_exports_no_model(tmp_path, capsys):
    out = tmp_path / "clip"
    runner.train("clip", runner.resolve_config("clip", "digits", sets=sets("clip")), out)
    _fails(["evaluate", str(out)], capsys, "'clip' run", "CLIP-style baseline", "exports no model",
           "results.json")
