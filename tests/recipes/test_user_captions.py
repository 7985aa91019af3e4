"""The image-text recipes on the user's own (image, caption) pairs (``data.name=captions``): the data source
(folder of NAME.png + NAME.txt, or .jsonl), its splits carrying the captions, training ``text`` and ``clip``
through the runner with retrieval-only evaluation, and the errors that name the key to fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lzn.data import DataConfig, DataNotFoundError, ImageDataset, has_split, load_split
from lzn.recipes import runner
from lzn.recipes.clip import CLIPRecipe
from lzn.recipes.common import data_info
from lzn.recipes.config import ConfigError
from lzn.recipes.text import TextImageRecipe
from lzn.training import latest_checkpoint, load_checkpoint
from tests.recipes.tiny import DEC, ENC

N_PAIRS = 24
SIZE = 8
TINY = ["batch_size=8", "latent_dim=8", "eval_batch_size=64", "train.steps=3", "train.warmup_steps=2",
        "train.checkpoint_every=3", "train.log_every=1", "train.progress=false", "train.lr=1.0e-3",
        "text_encoder=small", "text_width=32", "text_layers=1", "eval_pairs=50"] + ENC
TEXT = DEC + ["flow.steps=4", "align_steps=5", "sampler_steps=2", "gen_samples=4"]


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one thread per test is several times faster than two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def square(color: str, i: int) -> np.ndarray:
    """A 12 x 12 RGB image: a red or blue square (its position varies with i) on grey."""
    img = np.full((12, 12, 3), 128, dtype=np.uint8)
    r, c = 1 + i % 4, 1 + (i // 4) % 4
    img[r:r + 6, c:c + 6] = (220, 30, 30) if color == "red" else (30, 30, 220)
    return img


def pair_list(n: int = N_PAIRS) -> list[tuple[str, np.ndarray, str]]:
    """(name, pixels, caption), alternating red and blue squares, sorted by name."""
    out = []
    for i in range(n):
        color = "red" if i % 2 == 0 else "blue"
        size = "small" if i % 3 else "large"
        out.append((f"img{i:03d}", square(color, i), f"a {size} {color} square"))
    return out


@pytest.fixture
def pairs_folder(tmp_path) -> Path:
    root = tmp_path / "pairs"
    root.mkdir()
    for name, pixels, caption in pair_list():
        Image.fromarray(pixels).save(root / f"{name}.png")
        (root / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    return root


@pytest.fixture
def pairs_jsonl(pairs_folder) -> Path:
    """The same pairs, in the same (name) order, as a .jsonl beside the folder with relative paths."""
    path = pairs_folder.parent / "pairs.jsonl"
    lines = [json.dumps({"path": f"pairs/{name}.png", "caption": caption}) for name, _, caption in pair_list()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def captions_cfg(recipe: str, root: Path, *extra: str):
    sets = TINY + (TEXT if recipe == "text" else []) + [
        "data.name=captions", f"data.root={root}", f"data.size={SIZE}", "data.holdout=0.25", *extra]
    return runner.resolve_config(recipe, sets=sets)


def assert_retrieval_only(res: dict, split: str = "test") -> None:
    for key in (f"{split}_i2t_recall@1", f"{split}_i2t_recall@5", f"{split}_t2i_recall@1", f"{split}_t2i_recall@5"):
        assert math.isfinite(res[key]) and 0.0 <= res[key] <= 1.0, key
    assert res[f"{split}_pairs"] == 6  # round(0.25 * 24) held out
    assert all(isinstance(res[k], int) for k in (f"{split}_pairs", f"{split}_distinct_captions"))  # counts: "6", not "6.0000"
    assert not [k for k in res if "prompt" in k or "label" in k or "consistency" in k], sorted(res)
    if res[f"{split}_distinct_captions"] <= 5:  # image -> text recall@5 cannot miss: results.json says so
        assert "recall@5 is 1.0 whatever the model" in res[f"{split}_retrieval_note"]


# ---- the data source ---------------------------------------------------------------------------------------


def test_image_dataset_captions_one_per_image_and_carried_by_copies():
    x = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        ImageDataset(x, None, 0, "d", captions=("a", "b"))
    with pytest.raises(ValueError, match="captions must be a sequence of strings"):
        ImageDataset(x, None, 0, "d", captions=("a", "b", 3))  # type: ignore[arg-type]
    data = ImageDataset(x, None, 0, "d", captions=["a", "b", "c"])  # type: ignore[arg-type]
    assert data.captions == ("a", "b", "c")
    assert data.subset([2, 0]).captions == ("c", "a") and data.to("cpu").captions == data.captions
    assert data.captions_at(torch.tensor([1, 1, 0])) == ["b", "b", "a"]
    assert ImageDataset(x, None, 0, "d").captions is None  # unchanged default


def test_load_split_reads_folder_and_jsonl_with_holdout(pairs_folder, pairs_jsonl):
    expected = [c for _, _, c in pair_list()]
    for root in (pairs_folder, pairs_jsonl):
        cfg = DataConfig(name="captions", root=str(root), size=SIZE, holdout=0.25)
        assert has_split(cfg, "test")
        train, test = load_split(cfg, "train"), load_split(cfg, "test")
        assert isinstance(train, ImageDataset) and train.labels is None and train.num_classes == 0
        assert train.image_shape == (3, SIZE, SIZE) and (len(train), len(test)) == (18, 6)
        assert train.captions is not None and test.captions is not None
        assert sorted(train.captions + test.captions) == sorted(expected)
        # every image keeps its caption through the split: red squares have more red than blue
        for data in (train, test):
            red = data.images[:, 0].mean((1, 2)) > data.images[:, 2].mean((1, 2))
            assert [("red" in c) for c in data.captions] == red.tolist()
    gray = load_split(DataConfig(name="captions", root=str(pairs_folder), size=4, channels=1), "train")
    assert gray.image_shape == (1, 4, 4) and len(gray) == N_PAIRS
    assert not has_split(DataConfig(name="captions", root=str(pairs_folder), size=SIZE), "test")


def test_test_root_gives_the_held_out_pairs(pairs_folder, pairs_jsonl):
    cfg = DataConfig(name="captions", root=str(pairs_folder), size=SIZE, test_root=str(pairs_jsonl))
    test = load_split(cfg, "test")
    assert test.captions == tuple(c for _, _, c in pair_list())


def test_bad_caption_sources_name_the_key(tmp_path, pairs_folder):
    with pytest.raises(ValueError, match="data.name=captions needs data.root .*NAME.txt.*jsonl"):
        load_split(DataConfig(name="captions", size=SIZE), "train")
    with pytest.raises(ValueError, match="data.name=captions needs data.root .* and data.size"):
        load_split(DataConfig(name="captions", root=str(pairs_folder)), "train")
    other = tmp_path / "pairs.csv"
    other.write_text("path,caption\n")
    with pytest.raises(DataNotFoundError, match=r"^data.root: .*neither a folder of images with NAME.txt captions "
                                                r"nor a .jsonl"):
        load_split(DataConfig(name="captions", root=str(other), size=SIZE), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"^data.root: .*holds no \(image, caption\) pairs; expected NAME"):
        load_split(DataConfig(name="captions", root=str(empty), size=SIZE), "train")
    with pytest.raises(DataNotFoundError, match=r"^data.test_root: .*neither a folder"):
        load_split(DataConfig(name="captions", root=str(pairs_folder), size=SIZE, test_root=str(other)), "test")
    with pytest.raises(DataNotFoundError, match=r"has no 'test' split: give data.test_root \(a second folder"):
        load_split(DataConfig(name="captions", root=str(pairs_folder), size=SIZE), "test")
    with pytest.raises(ValueError, match="^skip_bad_files applies to data.name=folder"):
        DataConfig(name="captions", root=str(pairs_folder), size=SIZE, skip_bad_files=True)


# ---- the recipes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["text", "clip"])
def test_recipes_train_on_user_pairs_with_retrieval_only(recipe, pairs_folder, tmp_path):
    res = runner.train(recipe, captions_cfg(recipe, pairs_folder), tmp_path / "run")
    assert res["steps"] == 3 and math.isfinite(res["final_loss"]) and res["evaluated_on"] == "test"
    assert_retrieval_only(res)
    if recipe == "text":  # sample grid: rows of held-out captions
        with Image.open(tmp_path / "run" / "samples.png") as grid:
            assert grid.height >= 2 * SIZE
    cfg = runner.resolve_config(recipe, config_file=str(tmp_path / "run" / "run.yaml"))  # the run's own settings
    assert cfg.data.name == "captions"


def test_jsonl_run_equals_folder_run(pairs_folder, pairs_jsonl, tmp_path):
    """The same pairs in the same order give the same data, hence the same run."""
    a = runner.train("clip", captions_cfg("clip", pairs_folder), tmp_path / "folder")
    b = runner.train("clip", captions_cfg("clip", pairs_jsonl), tmp_path / "jsonl")
    assert a == b
    sa, sb = (load_checkpoint(latest_checkpoint(tmp_path / run)) for run in ("folder", "jsonl"))
    weights = [(name, sa["modules"][name], sb["modules"][name]) for name in sa["modules"]]
    weights += [(f"ema {name}", ema["shadow"], sb["ema"][name]["shadow"]) for name, ema in sa.get("ema", {}).items()]
    for name, a_state, b_state in weights:
        assert a_state.keys() == b_state.keys()
        for pname, p in a_state.items():
            assert torch.equal(p, b_state[pname]), f"{name}.{pname}"


def test_text_recipe_on_user_captions_batches_reference_and_grid(pairs_folder, tmp_path):
    cfg = captions_cfg("text", pairs_folder)
    train = load_split(cfg.data, "train")
    rec = TextImageRecipe(cfg, data_info(train))  # type: ignore[arg-type]
    rec.attach_data(train)
    assert rec.captions is None and rec.class_prompts() == []
    x, y, captions = rec.batches(1)
    assert y is None and x.shape == (8, 3, SIZE, SIZE)
    assert captions == train.captions_at(rec.loader.indices(1))
    assert len(rec.reference_captions) == cfg.batch_size - 1
    assert set(rec.reference_captions) <= set(train.captions)
    out = rec.step((x, y, captions), 1)
    assert torch.isfinite(out.loss)
    long = "a " + "very " * 40 + "long caption"
    rec.sample_grid(tmp_path / "grid.png", per_caption=2, captions=["a red square", "a red square", long])
    with Image.open(tmp_path / "grid.png") as grid:  # two distinct rows, the long label cut
        assert grid.height >= 2 * SIZE and grid.width < 2 * SIZE + 48 * 10


def test_user_caption_errors_name_the_key(pairs_folder, tmp_path):
    with pytest.raises(ValueError, match="batch_size 32 exceeds the 18 training images"):
        runner.train("clip", captions_cfg("clip", pairs_folder, "batch_size=32"), tmp_path / "big")
    cfg = captions_cfg("text", pairs_folder, "label_weight=1.0")
    train = load_split(cfg.data, "train")
    with pytest.raises(ValueError, match="^label_weight: label anchors need labels"):
        TextImageRecipe(cfg, data_info(train))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^data.flip"):
        CLIPRecipe(captions_cfg("clip", pairs_folder, "data.flip=true"), data_info(train))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="skip_bad_files"):
        captions_cfg("clip", pairs_folder, "data.skip_bad_files=true")
    # composed captions still need labels: an unlabelled RGB set without data.name=captions is refused
    unlabelled = ImageDataset(train.images, None, 0, "rgb")
    with pytest.raises(ValueError, match="needs a labelled data set .* or train on your own"):
        CLIPRecipe(runner.resolve_config("clip", sets=TINY), data_info(unlabelled))  # type: ignore[arg-type]
