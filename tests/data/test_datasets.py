"""lzn.data loaders on small files written by the tests (nothing is downloaded)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lzn.data import (
    DataNotFoundError,
    ImageDataset,
    load_arrays,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)

def _signed(pixels: np.ndarray) -> torch.Tensor:
    """Naive reference for uint8 -> [-1, 1]."""
    return torch.from_numpy(pixels.astype(np.float64) / 127.5 - 1).float()


# ------------------------------------------------------------------------------------------------
# ImageDataset


def _toy(n: int = 6, labelled: bool = True) -> ImageDataset:
    images = torch.linspace(-1, 1, n * 4).view(n, 1, 2, 2)
    labels = torch.arange(n) % 3 if labelled else None
    return ImageDataset(images=images, labels=labels, num_classes=3 if labelled else 0, name="toy")


def test_image_dataset_items_batches_and_subsets():
    data = _toy()
    assert len(data) == 6 and data.image_shape == (1, 2, 2)
    image, label = data[4]
    assert torch.equal(image, data.images[4]) and label == 1
    x, y = data.batch(torch.tensor([5, 0]))
    assert torch.equal(x, data.images[[5, 0]]) and y.tolist() == [2, 0]
    sub = data.subset([3, 1])
    assert len(sub) == 2 and sub.labels.tolist() == [0, 1] and sub.num_classes == 3
    assert _toy(labelled=False)[0][1] == -1 and _toy(labelled=False).batch(torch.tensor([0]))[1] is None


def test_train_test_split_is_a_deterministic_partition():
    data = _toy(20)
    train, test = data.train_test_split(0.25, seed=3)
    again, _ = data.train_test_split(0.25, seed=3)
    assert len(test) == 5 and len(train) == 15 and torch.equal(train.images, again.images)
    seen = torch.cat((train.images, test.images)).flatten(1)[:, 0].sort().values
    assert torch.equal(seen, data.images.flatten(1)[:, 0].sort().values)


@pytest.mark.parametrize("kwargs", [
    dict(images=torch.zeros(2, 2, 2), labels=None, num_classes=0),  # not 4-D
    dict(images=torch.zeros(2, 1, 2, 2, dtype=torch.float64), labels=None, num_classes=0),
    dict(images=torch.zeros(2, 1, 2, 2), labels=torch.tensor([0, 1, 2]), num_classes=3),  # wrong length
    dict(images=torch.zeros(2, 1, 2, 2), labels=torch.tensor([0, 3]), num_classes=3),  # out of range
    dict(images=torch.zeros(2, 1, 2, 2), labels=None, num_classes=4),  # unlabelled with classes
])
def test_image_dataset_rejects_bad_fields(kwargs):
    with pytest.raises(ValueError):
        ImageDataset(name="bad", **kwargs)


# ------------------------------------------------------------------------------------------------
# digits (scikit-learn's bundled copy)


def test_digits_range_shapes_and_fixed_split():
    pytest.importorskip("sklearn")
    data = load_digits()
    assert data.images.shape == (1797, 1, 8, 8) and data.images.dtype == torch.float32
    assert data.images.min() == -1 and data.images.max() == 1 and data.num_classes == 10
    train, test = load_digits(split="train"), load_digits(split="test")
    assert (len(train), len(test)) == (1438, 359)
    assert torch.equal(train.images, load_digits(split="train").images)  # fixed permutation
    rows = {tuple(r) for r in data.images.flatten(1).tolist()}
    assert {tuple(r) for r in torch.cat((train.images, test.images)).flatten(1).tolist()} == rows
    big = load_digits(size=16, split="test")
    assert big.images.shape == (359, 1, 16, 16) and big.images.abs().max() <= 1
    assert torch.equal(big.labels, test.labels)
    with pytest.raises(ValueError, match="split"):
        load_digits(split="val")


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(root: Path, prefix: str, n: int, gz_images: bool, gz_labels: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for kind, array, gz in (("images-idx3", images, gz_images), ("labels-idx1", labels, gz_labels)):
        path = root / f"{prefix}-{kind}-ubyte"
        if gz:
            with gzip.open(f"{path}.gz", "wb") as f:
                f.write(_idx_bytes(array))
        else:
            path.write_bytes(_idx_bytes(array))
    return images, labels


@pytest.mark.parametrize("gz_images,gz_labels", [(False, False), (True, True), (True, False)])
def test_fashion_reads_raw_and_gzipped_idx(tmp_path, gz_images, gz_labels):
    images, labels = _write_fashion(tmp_path, "train", 5, gz_images, gz_labels)
    data = load_fashion_mnist(tmp_path, "train")
    assert data.images.shape == (5, 1, 28, 28) and data.num_classes == 10 and data.name == "fashion-train"
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
    expected = _signed(images)
    assert torch.allclose(data.images[:, 0], expected, atol=1e-6)
    assert data.images.min() >= -1 and data.images.max() <= 1


def test_fashion_test_split_uses_t10k_files(tmp_path):
    _write_fashion(tmp_path, "t10k", 3, True, True)
    assert len(load_fashion_mnist(tmp_path, "test")) == 3
    assert len(load_dataset("fashion", root=tmp_path, split="test")) == 3


def test_fashion_missing_folder_names_path_files_and_package(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist(root, "train")
    message = str(err.value)
    assert str(root) in message and "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert isinstance(err.value, ValueError)  # DataNotFoundError is both


def test_idx_rejects_bad_magic_and_wrong_sizes(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x08\x03\x00\x00" + bytes(16))
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((2, 3, 3)))[:-1])
    with pytest.raises(ValueError, match="need 18 data bytes"):
        read_idx(short)
    floats = tmp_path / "floats"
    floats.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + bytes(4))
    with pytest.raises(ValueError, match="0x08"):
        read_idx(floats)


def test_fashion_rejects_mismatched_counts(tmp_path):
    _write_fashion(tmp_path, "train", 4, False, False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3)))
    with pytest.raises(ValueError, match="images \\(N, H, W\\) and labels \\(N,\\)"):
        load_fashion_mnist(tmp_path)


# ------------------------------------------------------------------------------------------------
# CIFAR-10 python pickles


def _write_cifar(folder: Path, per_batch: int = 3) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f, protocol=2)
        written[name] = data
    return written


def test_cifar10_reads_batches_in_order_with_rgb_planes(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    train = load_cifar10(tmp_path, "train")  # the parent of cifar-10-batches-py works too
    assert train.images.shape == (15, 3, 32, 32) and train.num_classes == 10 and train.labels.dtype == torch.int64
    first = written["data_batch_1"][0]
    assert torch.allclose(train.images[0, 0].flatten(), _signed(first[:1024]), atol=1e-6)
    assert torch.allclose(train.images[0, 2].flatten(), _signed(first[2048:]), atol=1e-6)
    last = written["data_batch_5"][-1]
    assert torch.allclose(train.images[-1, 1].flatten(), _signed(last[1024:2048]), atol=1e-6)
    test = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", split="test")
    assert len(test) == 3 and test.name == "cifar10-test"


def test_cifar10_missing_batches_and_unsafe_pickles(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path / "none", "train")
    _write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing"):
        load_cifar10(tmp_path / "c", "test")
    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path / "c", "test")


# ------------------------------------------------------------------------------------------------
# image folders


def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int]) -> None:
    from PIL import Image

    Image.new("RGB", size, color).save(path)


def test_image_folder_sorted_classes_resize_and_crop(tmp_path):
    pytest.importorskip("PIL")
    for cls, color in (("zebra", (255, 0, 0)), ("ant", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        _png(tmp_path / cls / "a.png", color, (20, 12))
        _png(tmp_path / cls / "b.PNG", color, (9, 15))
    (tmp_path / ".cache").mkdir()  # hidden folders are not classes
    data = load_image_folder(tmp_path, size=8)
    assert data.images.shape == (4, 3, 8, 8) and data.class_names == ("ant", "zebra")
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert torch.allclose(data.images[0], torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1))  # ant = blue
    assert torch.allclose(data.images[3], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1))  # zebra = red
    gray = load_dataset("folder", root=tmp_path, size=5, channels=1)
    assert gray.images.shape == (4, 1, 5, 5)


def test_image_folder_order_mixes_classes_and_is_fixed(tmp_path):
    """Sorted class folders must not give class-sorted data: an FID reference or an evaluation batch is a
    prefix, and a prefix of one class would bias both."""
    pytest.importorskip("PIL")
    for cls, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(16):
            _png(tmp_path / cls / f"{i:02d}.png", color, (4, 4))
    first, again = load_image_folder(tmp_path, size=4), load_image_folder(tmp_path, size=4)
    assert torch.equal(first.labels, again.labels) and torch.equal(first.images, again.images)
    assert set(first.labels[:8].tolist()) == {0, 1} and first.labels.bincount().tolist() == [16, 16]
    red = first.images[:, 0, 0, 0] > 0  # each image still carries its own class's colour
    assert torch.equal(red, first.labels == 0)


def test_image_folder_unlabelled_and_errors(tmp_path):
    pytest.importorskip("PIL")
    _png(tmp_path / "x.jpg", (10, 20, 30), (6, 6))
    flat = load_image_folder(tmp_path, size=4)
    assert flat.labels is None and flat.num_classes == 0 and len(flat) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing", size=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png"):
        load_image_folder(tmp_path / "empty", size=4)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "full").mkdir()
    (tmp_path / "two" / "hollow").mkdir()
    _png(tmp_path / "two" / "full" / "y.png", (0, 0, 0), (4, 4))
    with pytest.raises(ValueError, match="hollow"):
        load_image_folder(tmp_path / "two", size=4)


def _truncated_png(path: Path) -> None:
    """A real noise PNG cut in the middle of its pixel data: PIL opens it and fails only on decode."""
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("bad", ["garbage", "truncated"])
def test_image_folder_unreadable_file_names_the_path(tmp_path, bad):
    pytest.importorskip("PIL")
    from lzn.data import UnreadableImageError

    (tmp_path / "a").mkdir()
    _png(tmp_path / "a" / "ok.png", (1, 2, 3), (4, 4))
    if bad == "garbage":
        (tmp_path / "a" / "x.png").write_bytes(b"\x00garbage" * 20)
    else:
        _truncated_png(tmp_path / "a" / "x.png")
    with pytest.raises(UnreadableImageError) as info:
        load_image_folder(tmp_path, size=4)
    assert isinstance(info.value, ValueError)
    assert str(tmp_path / "a" / "x.png") in str(info.value) and "data.skip_bad_files=true" in str(info.value)


def test_image_folder_skips_unreadable_files_with_one_warning(tmp_path):
    pytest.importorskip("PIL")
    import warnings

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        _png(tmp_path / cls / "ok.png", (9, 9, 9), (4, 4))
    (tmp_path / "a" / "junk.jpg").write_bytes(b"junk")
    _truncated_png(tmp_path / "b" / "cut.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path, size=4, skip_bad_files=True)
    assert len(caught) == 1 and issubclass(caught[0].category, UserWarning)
    msg = str(caught[0].message)
    assert "skipped 2 unreadable" in msg and "junk.jpg" in msg and "cut.png" in msg
    assert len(data) == 2 and data.labels.tolist() == [0, 1]
    (tmp_path / "a" / "ok.png").unlink()  # class a now holds only an unreadable file
    with pytest.raises(ValueError, match=r"class folder .*a: none of its 1 image files is readable"):
        load_image_folder(tmp_path, size=4, skip_bad_files=True)


def test_image_folder_class_names_of_a_labelled_training_set(tmp_path):
    pytest.importorskip("PIL")
    _png(tmp_path / "flat.png", (0, 0, 0), (4, 4))
    with pytest.raises(ValueError, match="has no class sub-folders, but the training set is labelled"):
        load_image_folder(tmp_path, size=4, class_names=("a", "b"))
    (tmp_path / "b").mkdir()
    _png(tmp_path / "b" / "y.png", (0, 0, 0), (4, 4))
    data = load_image_folder(tmp_path, size=4, class_names=("a", "b"))
    assert data.labels.tolist() == [1] and data.num_classes == 2 and data.class_names == ("a", "b")


# ------------------------------------------------------------------------------------------------
# arrays


def test_arrays_accepts_nhwc_nchw_hw_uint8_and_float(tmp_path):
    rng = np.random.default_rng(2)
    nhwc = rng.integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=nhwc, labels=np.array([0, 2, 1, 2]))
    data = load_arrays(tmp_path / "a.npz")
    assert data.images.shape == (4, 3, 5, 6) and data.num_classes == 3
    assert torch.allclose(data.images, _signed(nhwc.transpose(0, 3, 1, 2)), atol=1e-6)
    nchw = rng.uniform(-1, 1, size=(2, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "b.npy", nchw)
    plain = load_dataset("arrays", path=tmp_path / "b.npy")
    assert plain.labels is None and torch.equal(plain.images, torch.from_numpy(nchw))
    np.savez(tmp_path / "c.npz", images=np.zeros((3, 7, 7), np.uint8), labels=np.zeros(3, np.int32))
    assert load_arrays(tmp_path / "c.npz", num_classes=10).images.shape == (3, 1, 7, 7)


@pytest.mark.parametrize("images,labels,match", [
    (np.full((2, 3, 4, 4), 2.0, np.float32), None, "in \\[-1, 1\\]"),
    (np.zeros((2, 5, 4, 4), np.uint8), None, "C = 1 or 3"),
    (np.zeros((2, 3, 4, 4), np.int32), None, "uint8"),
    (np.zeros((2, 3, 4, 4), np.uint8), np.zeros(3, np.int64), "labels must be integers of shape \\(2,\\)"),
    (np.zeros((0, 3, 4, 4), np.uint8), None, "no images"),
])
def test_arrays_rejects_bad_content(tmp_path, images, labels, match):
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_arrays(tmp_path / "bad.npz")


def test_arrays_class_names(tmp_path):
    images = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "n.npz", images=images, labels=np.array([0, 2, 0]), class_names=np.array(["x", "y", "z"]))
    data = load_arrays(tmp_path / "n.npz")
    assert data.class_names == ("x", "y", "z") and data.num_classes == 3
    np.savez(tmp_path / "n.npz", images=images, labels=np.array([0, 1, 0]), class_names=np.array(["x", "y", "z"]))
    assert load_arrays(tmp_path / "n.npz").num_classes == 3  # the names declare the classes, not max + 1
    np.savez(tmp_path / "n.npz", images=images, labels=np.array([0, 3, 0]), class_names=np.array(["x", "y", "z"]))
    with pytest.raises(ValueError, match=r"labels go up to 3, but class_names names only 3 classes"):
        load_arrays(tmp_path / "n.npz")
    np.savez(tmp_path / "n.npz", images=images, labels=np.array([0, 1, 0]), class_names=np.array([[1, 2]]))
    with pytest.raises(ValueError, match="class_names must be a 1-D array of strings"):
        load_arrays(tmp_path / "n.npz")
    np.savez(tmp_path / "n.npz", images=images, class_names=np.array(["x"]))
    with pytest.raises(ValueError, match="'class_names' but no 'labels'"):
        load_arrays(tmp_path / "n.npz")
    np.savez(tmp_path / "n.npz", images=images, labels=np.array([0, -1, -3]))
    with pytest.raises(ValueError, match=r"labels must be integers >= 0, found \[-3, -1\]"):
        load_arrays(tmp_path / "n.npz")


def test_arrays_missing_file_wrong_key_and_unknown_loader(tmp_path):
    with pytest.raises(FileNotFoundError, match="'images'"):
        load_arrays(tmp_path / "none.npz")
    np.savez(tmp_path / "k.npz", pixels=np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="'images'"):
        load_arrays(tmp_path / "k.npz")
    with pytest.raises(ValueError, match="choose one of"):
        load_dataset("imagenet")
    assert issubclass(DataNotFoundError, ValueError)
