"""lzn.data.config: DataConfig validation, which splits exist, where each split is read, label checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lzn.data import DataConfig, DataNotFoundError, ImageDataset, check_labels, has_split, load_split

pytest.importorskip("PIL")


def _png(path: Path, value: int, size: int = 6) -> None:
    """A size x size gray PNG of one pixel value, so a loaded image says which file it came from."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value).save(path)


def _folder(root: Path, classes: dict[str, list[int]]) -> Path:
    """root/class/i.png for each pixel value listed under a class."""
    for cls, values in classes.items():
        for i, v in enumerate(values):
            _png(root / cls / f"{i}.png", v)
    return root


def _pixel_values(data: ImageDataset) -> list[int]:
    """The uint8 value each (uniform) image was written with."""
    return [round((float(x) + 1) * 127.5) for x in data.images[:, 0, 0, 0]]


def _npz(path: Path, values: list[int], labels: list[int] | None = None, **extra: np.ndarray) -> str:
    images = np.repeat(np.array(values, np.uint8)[:, None, None], 4, 1).repeat(4, 2)  # (N,) -> (N, 4, 4)
    arrays = {"images": images, **extra} if labels is None else {"images": images, "labels": np.array(labels), **extra}
    np.savez(path, **arrays)
    return str(path)


# ------------------------------------------------------------------------------------------------
# DataConfig


def test_default_config_is_valid_and_replace_validates():
    cfg = DataConfig()
    assert cfg.name == "digits" and cfg.test_split == "test" and cfg.holdout == 0.0
    ok = dataclasses.replace(cfg, name="folder", root="x", size=8, holdout=0.25)
    assert ok.holdout == 0.25
    with pytest.raises(ValueError, match=r"^holdout must lie in \[0, 1\), got 1.5"):
        dataclasses.replace(ok, holdout=1.5)


@pytest.mark.parametrize("changes,match", [
    (dict(name="imagenet"), r"^name must be one of \['arrays', 'captions', 'cifar10', 'digits', 'fashion', 'folder', 'shards'\], "
                            r"got 'imagenet'"),
    (dict(size=0), r"^size must be a positive"),
    (dict(channels=2), r"^channels must be 1 .* or 3 .*got 2"),
    (dict(train_split="all"), r"^train_split must be one of \['train', 'test'\], got 'all'"),
    (dict(test_split="val"), r"^test_split must be one of"),
    (dict(name="folder", holdout=-0.1), r"^holdout must lie in \[0, 1\), got -0.1"),
    (dict(name="folder", holdout=float("nan")), r"^holdout must lie"),
    (dict(name="folder", holdout=0.1, test_root="t"),
     r"^holdout \(0.1\) and test_root \('t'\) are mutually exclusive"),
    (dict(name="cifar10", test_root="t"),
     r"^test_root applies to folder and arrays .*'cifar10' has a fixed test split"),
    (dict(name="digits", holdout=0.2), r"^holdout applies to folder and arrays .*digits, fashion, cifar10"),
])
def test_config_rejects_meaningless_values(changes, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**changes)


def test_has_split_without_loading(tmp_path):
    missing = str(tmp_path / "nowhere")
    for name in ("digits", "fashion", "cifar10"):
        root = None if name == "digits" else missing  # digits ships with scikit-learn: a root is refused
        assert has_split(DataConfig(name=name, root=root), "train") and has_split(DataConfig(name=name), "test")
    for name in ("folder", "arrays"):
        assert has_split(DataConfig(name=name, root=missing), "train")
        assert not has_split(DataConfig(name=name, root=missing), "test")
        assert has_split(DataConfig(name=name, root=missing, test_root=missing), "test")
        assert has_split(DataConfig(name=name, root=missing, holdout=0.1), "test")
    (tmp_path / "split" / "train").mkdir(parents=True)
    assert not has_split(DataConfig(name="folder", root=str(tmp_path / "split")), "test")  # train/ alone
    (tmp_path / "split" / "test").mkdir()
    assert has_split(DataConfig(name="folder", root=str(tmp_path / "split")), "test")
    assert not has_split(DataConfig(name="arrays", root=str(tmp_path / "split")), "test")  # layout is folders only
    with pytest.raises(ValueError, match="split must be one of"):
        has_split(DataConfig(), "val")


# ------------------------------------------------------------------------------------------------
# where each split is read


def test_fixed_splits_dispatch_and_missing_roots():
    cfg = DataConfig(name="digits", size=4)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) == 1438 and len(test) == 359 and train.images.shape[-1] == 4
    with pytest.raises(ValueError, match="split must be one of \\['train', 'test'\\], got 'val'"):
        load_split(cfg, "val")
    with pytest.raises(ValueError, match="data.name=folder needs data.root .* and data.size"):
        load_split(DataConfig(name="folder", root="x"), "train")
    with pytest.raises(ValueError, match="data.name=arrays needs data.root"):
        load_split(DataConfig(name="arrays"), "train")
    with pytest.raises(ValueError, match="data.name=cifar10 needs data.root"):
        load_split(DataConfig(name="cifar10"), "test")


def test_folder_with_train_and_test_subfolders(tmp_path):
    _folder(tmp_path / "train", {"a": [10, 11], "b": [20]})
    _folder(tmp_path / "test", {"a": [110], "b": [120, 121]})
    cfg = DataConfig(name="folder", root=str(tmp_path), size=4, channels=1)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    # a labelled folder comes in a fixed shuffled order (prefixes mix the classes): compare as sets of pairs
    assert sorted(_pixel_values(train)) == [10, 11, 20] and train.class_names == ("a", "b")  # not "test"/"train"
    assert sorted(zip(_pixel_values(test), test.labels.tolist())) == [(110, 0), (120, 1), (121, 1)]
    with pytest.raises(ValueError, match="data.holdout is set, but data.root .* already has train/ and test/"):
        load_split(dataclasses.replace(cfg, holdout=0.5), "test")


def test_folder_test_root_is_read_for_test_only(tmp_path):
    _folder(tmp_path / "data", {"a": [1], "b": [2, 3]})
    _folder(tmp_path / "held", {"a": [101], "b": [102]})
    cfg = DataConfig(name="folder", root=str(tmp_path / "data"), size=4, channels=1, test_root=str(tmp_path / "held"))
    assert sorted(_pixel_values(load_split(cfg, "train"))) == [1, 2, 3]
    assert sorted(_pixel_values(load_split(cfg, "test"))) == [101, 102]


def test_arrays_test_root_is_a_second_file(tmp_path):
    cfg = DataConfig(name="arrays", root=_npz(tmp_path / "a.npz", [1, 2, 3], [0, 1, 1]),
                     test_root=_npz(tmp_path / "b.npz", [200, 201], [1, 0]))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert _pixel_values(train) == [1, 2, 3] and _pixel_values(test) == [200, 201]
    assert test.labels.tolist() == [1, 0]


def test_holdout_is_seeded_disjoint_and_covers_root(tmp_path):
    values = list(range(0, 200, 10))  # 20 distinct images
    cfg = DataConfig(name="arrays", root=_npz(tmp_path / "a.npz", values, [v // 100 for v in values]), holdout=0.25)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(test) == 5 and len(train) == 15
    assert set(_pixel_values(train)).isdisjoint(_pixel_values(test))
    assert sorted(_pixel_values(train) + _pixel_values(test)) == values
    assert _pixel_values(load_split(cfg, "test")) == _pixel_values(test)  # deterministic
    assert all(label == v // 100 for label, v in zip(test.labels.tolist(), _pixel_values(test)))  # pairs kept
    other = load_split(dataclasses.replace(cfg, holdout_seed=1), "test")
    assert sorted(_pixel_values(other)) != sorted(_pixel_values(test))


def test_holdout_too_small_is_an_empty_split_error(tmp_path):
    cfg = DataConfig(name="arrays", root=_npz(tmp_path / "a.npz", [1, 2, 3]), holdout=0.1)
    assert len(load_split(cfg, "train")) == 3
    with pytest.raises(ValueError, match=r"\(test split\) is empty; data.holdout=0.1"):
        load_split(cfg, "test")


@pytest.mark.parametrize("name", ["folder", "arrays"])
def test_missing_test_split_says_how_to_add_one(tmp_path, name):
    root = _folder(tmp_path / "f", {"a": [1]}) if name == "folder" else _npz(tmp_path / "a.npz", [1])
    cfg = DataConfig(name=name, root=str(root), size=4)
    assert len(load_split(cfg, "train")) == 1  # training still loads
    with pytest.raises(DataNotFoundError) as info:
        load_split(cfg, "test")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"data set '{name}' (root {root}) has no 'test' split: give data.test_root")
    assert "data.holdout (a fraction of root, e.g. 0.1)" in msg
    assert ("train/ and test/ sub-folders" in msg) == (name == "folder")


@pytest.mark.parametrize("name", ["folder", "arrays"])
def test_missing_root_is_named_before_the_split(tmp_path, name):
    """A root that does not exist is the error, not the test split it therefore lacks."""
    cfg = DataConfig(name=name, root=str(tmp_path / "nowhere"), size=4)
    with pytest.raises(DataNotFoundError, match=rf"data set '{name}': data.root .*nowhere does not exist; expected"):
        load_split(cfg, "test")


# ------------------------------------------------------------------------------------------------
# class names of a separate test source


def test_test_folder_classes_follow_training_names(tmp_path):
    _folder(tmp_path / "train", {"ant": [1], "bee": [2], "cat": [3]})
    _folder(tmp_path / "test", {"cat": [30, 31]})  # fewer classes than training
    cfg = DataConfig(name="folder", root=str(tmp_path), size=4, channels=1)
    train = load_split(cfg, "train")
    test = load_split(cfg, "test", class_names=train.class_names)
    assert test.labels.tolist() == [2, 2] and test.num_classes == 3 and test.class_names == ("ant", "bee", "cat")
    check_labels(train, test)
    assert load_split(cfg, "test").labels.tolist() == [0, 0]  # without names: the folder's own order
    _folder(tmp_path / "test", {"dog": [40]})
    with pytest.raises(ValueError, match=r"class folders \['dog'\] are not among the training classes"):
        load_split(cfg, "test", class_names=train.class_names)


def test_test_arrays_with_class_names_are_reindexed(tmp_path):
    names = np.array(["ant", "bee", "cat"])
    cfg = DataConfig(name="arrays", root=_npz(tmp_path / "a.npz", [1, 2, 3], [0, 1, 2], class_names=names),
                     test_root=_npz(tmp_path / "b.npz", [9, 8], [0, 1], class_names=np.array(["cat", "ant"])))
    train = load_split(cfg, "train")
    assert train.class_names == ("ant", "bee", "cat")
    test = load_split(cfg, "test", class_names=train.class_names)
    assert test.labels.tolist() == [2, 0] and test.num_classes == 3
    _npz(tmp_path / "b.npz", [9], [0], class_names=np.array(["emu"]))
    with pytest.raises(ValueError, match=r"classes \['emu'\] are not among the training classes"):
        load_split(cfg, "test", class_names=train.class_names)


def test_skip_bad_files_reaches_the_folder_loader(tmp_path):
    _folder(tmp_path / "f", {"a": [1, 2]})
    (tmp_path / "f" / "a" / "x.png").write_bytes(b"not an image")
    cfg = DataConfig(name="folder", root=str(tmp_path / "f"), size=4)
    with pytest.raises(ValueError, match="x.png is not a readable image"):
        load_split(cfg, "train")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(load_split(dataclasses.replace(cfg, skip_bad_files=True), "train")) == 2


# ------------------------------------------------------------------------------------------------
# check_labels


def _labelled(labels: list[int], num_classes: int, name: str = "toy") -> ImageDataset:
    return ImageDataset(images=torch.zeros(len(labels), 1, 2, 2), labels=torch.tensor(labels),
                        num_classes=num_classes, name=name)


def test_check_labels_names_missing_classes_compactly():
    check_labels(_labelled([2, 0, 1, 1], 3), _labelled([1], 2))  # complete training, smaller test: fine
    with pytest.raises(ValueError, match=r"every class present in training .*missing: 10-98 \(found 0-9, 99\)"):
        check_labels(_labelled(list(range(10)) + [99], 100))
    with pytest.raises(ValueError, match=r"missing: 1, 3"):
        check_labels(_labelled([0, 2, 4], 5))


def test_check_labels_test_set_within_training_classes():
    train = _labelled([0, 1, 2], 3)
    with pytest.raises(ValueError, match=r"test labels must lie in \[0, 3\) .*found 3-4, 7"):
        check_labels(train, _labelled([0, 3, 4, 7], 8, "t"))
    with pytest.raises(ValueError, match="declares 5 classes, training has 3"):
        check_labels(train, _labelled([0, 1], 5, "t"))
    unlabelled = ImageDataset(images=torch.zeros(2, 1, 2, 2), labels=None, num_classes=0, name="u")
    check_labels(unlabelled, _labelled([0, 9], 10))
    check_labels(train, unlabelled)
