"""Image data sets as tar shards, read by random access: data larger than memory (method.md §9.8).

Layout of one split (``DIR/train``, ``DIR/test``), written by :func:`write_shards` (``lzn data shard``):

* ``shard-000000.tar``, ``shard-000001.tar``, ...: the WebDataset layout, one sample per key, members
  ``KEY.png`` (or the original ``.jpg`` / ``.jpeg`` bytes of an image folder) and ``KEY.cls`` (the
  class index as text, absent for unlabelled sets); KEY is the sample's index in the split, 9 digits.
  Any WebDataset reader can stream these files.
* ``index.json``: format, number of samples, class names and per-class counts, the shards with their
  sample counts, the stored image size (when every image has the same size) and channels.
* ``items.npz``: per sample, its shard, the byte offset and length of its image inside the tar, and its
  label (about 28 bytes a sample: 36 MB for ImageNet's 1.28 M images).

Reading (:class:`ShardedDataset`) seeks to a sample's bytes and decodes them with the image folder's
decoder (:func:`lzn.data.folder.decode_image`), so a batch is any list of indices: the data order stays
the in-memory path's pure function of (seed, step, rank) (:mod:`lzn.data.order`), resume is exact, and
every rank gets the same number of samples per step. Memory holds the per-sample table and the batches
in flight, whatever the data set's size. Samples are stored in the order the in-memory loaders give
(an image folder's fixed shuffle included), so for uint8 sources (image folders, Fashion-MNIST,
CIFAR-10, uint8 arrays) both paths give the same batches, pixel for pixel; float sources (digits, float
arrays) are stored as 8-bit PNG and come back within 1/255. Random access needs a seekable file
system (local disk, NFS, a mounted bucket); the shards themselves are plain sequential tars.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn.atomic import atomic_write_text, default_dir_mode
from lzn.data.dataset import DataNotFoundError, ImageDataset, hwc_to_signed
from lzn.data.folder import FOLDER_ORDER_SEED, UnreadableImageError, _labels_by_name, decode_image, folder_groups

FORMAT = "lzn-shards/1"
INDEX_FILE = "index.json"
ITEMS_FILE = "items.npz"
DEFAULT_SHARD_SIZE = 5000  # samples per tar: about 4 MB of 32x32 PNGs, 500 MB of ImageNet JPEGs
KEY_DIGITS = 9


@dataclass(frozen=True)
class Sample:
    """One sample to store: encoded image bytes, their suffix ("png", "jpg", "jpeg"), the label (-1:
    unlabelled), the image's (width, height) and channels (1 or 3) as stored."""

    data: bytes
    suffix: str
    label: int
    size: tuple[int, int]
    channels: int


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, C) with C in {1, 3} -> PNG bytes (lossless)."""
    from PIL import Image

    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def to_uint8(images: Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), the inverse of ``uint8_to_signed`` (exact on
    its outputs, nearest level otherwise)."""
    x = ((images.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def samples_from_dataset(data: ImageDataset, chunk: int = 1024) -> Iterator[Sample]:
    """The samples of an in-memory set as PNGs, in its order."""
    c, h, w = data.image_shape
    for start in range(0, len(data), chunk):
        pixels = to_uint8(data.images[start:start + chunk])
        for i, img in enumerate(pixels):
            label = -1 if data.labels is None else int(data.labels[start + i])
            yield Sample(encode_png(img), "png", label, (w, h), c)


def folder_samples(root: str | Path, class_names: Sequence[str] | None = None,
                   skip_bad_files: bool = False) -> tuple[list[tuple[Path, int]], tuple[str, ...] | None]:
    """An image folder's (file, label) pairs in the order :func:`lzn.data.load_image_folder` gives them
    (classes by name, then its fixed shuffle), and its class names (None: unlabelled). Each file's
    header is read: an unreadable one is an error, or skipped with ``skip_bad_files``."""
    from PIL import Image

    root = Path(root)
    groups, labelled = folder_groups(root)
    if class_names is not None and not labelled:
        raise ValueError(f"image folder {root} has no class sub-folders, but the training set is labelled "
                         f"with classes {list(class_names)}; expected root/class_name/*.png|jpg")
    labels = (_labels_by_name(root, [name for name, _ in groups], class_names) if class_names is not None
              else list(range(len(groups))))
    pairs: list[tuple[Path, int]] = []
    for label, (_, files) in zip(labels, groups):
        for path in files:
            try:
                with Image.open(path) as img:
                    img.verify()  # structure only, no pixel decode: cheap enough for a million files
            except Exception as err:  # PIL raises many types for a bad file
                if not skip_bad_files:
                    raise UnreadableImageError(f"{path} is not a readable image ({err}); remove it, or pass "
                                               "--skip-bad-files") from None
                continue
            pairs.append((path, label if labelled else -1))
    if labelled:
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(FOLDER_ORDER_SEED))
        pairs = [pairs[i] for i in order.tolist()]
        names = tuple(class_names) if class_names is not None else tuple(name for name, _ in groups)
        return pairs, names
    return pairs, None


def read_folder_sample(path: Path, label: int) -> Sample:
    """A folder image's own bytes (no re-encoding) with its size and channels from the header."""
    from PIL import Image

    with Image.open(path) as img:
        size, channels = img.size, 1 if img.mode in ("1", "L", "I", "I;16", "F") else 3
    suffix = path.suffix.lower().lstrip(".")
    return Sample(path.read_bytes(), suffix, label, (int(size[0]), int(size[1])), channels)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary split folders of ``out`` left by a writer that was killed (its process is gone): the name
    ``.NAME.PID.XXXX.tmp`` says whose it is; a live writer's folder is left alone."""
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        parts = tmp.name[len(out.name) + 2:].split(".")
        if not parts[0].isdigit() or int(parts[0]) == os.getpid():
            continue
        try:
            os.kill(int(parts[0]), 0)
            continue  # alive: another writer's
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            continue


def _check_every_class(labels: np.ndarray, num_classes: int, out: Path) -> None:
    """A training split holds every class 0..K-1 (training refuses gaps); refused here, where it is written."""
    from lzn.data.config import _ranges

    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"{out}: labels must be 0..K-1 with every class present in a training split (K="
                         f"{num_classes}); missing: {_ranges(missing)}: renumber the labels (or write it with "
                         "--split test, where fewer classes are fine)")


def write_shards(samples: Iterable[Sample], out: str | Path, *, class_names: Sequence[str] | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, source: str = "", total: int | None = None,
                 overwrite: bool = False, progress: bool = True, every_class: bool = False) -> Path:
    """Write ``samples`` as one split folder ``out`` (the layout of the module docstring); returns it.

    The split is assembled in a temporary folder beside ``out`` and moved into place at the end, so an
    interrupted run leaves no half-written split (and the next write removes a killed writer's temporary
    folder). ``out`` must not exist unless ``overwrite``, neither at the start nor at the end (a split written
    there meanwhile is not replaced). ``every_class``: refuse labels with gaps (a training split).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if shard_size < 1:
        raise ValueError(f"shard_size must be a positive number of samples per tar, got {shard_size}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, default_dir_mode())  # mkdtemp's folder is private; the split is an ordinary folder
    try:
        shards, labels, sizes, channels, suffixes = [], [], set(), set(), set()
        tar: tarfile.TarFile | None = None
        count = 0
        for i, sample in enumerate(tqdm(samples, total=total, desc=f"shard {out.name}", disable=not progress,
                                        unit="img")):
            if i % shard_size == 0:
                if tar is not None:
                    tar.close()
                shards.append({"name": f"shard-{len(shards):06d}.tar", "count": 0})
                tar = tarfile.open(tmp / shards[-1]["name"], "w", format=tarfile.USTAR_FORMAT)
            assert tar is not None
            key = f"{i:0{KEY_DIGITS}d}"
            _add(tar, f"{key}.{sample.suffix}", sample.data)
            if sample.label >= 0:
                _add(tar, f"{key}.cls", str(sample.label).encode())
            shards[-1]["count"] += 1
            labels.append(sample.label)
            sizes.add(sample.size)
            channels.add(sample.channels)
            suffixes.add(sample.suffix)
            count += 1
        if tar is not None:
            tar.close()
        if count == 0:
            raise ValueError(f"no images to write to {out}")
        label_array = np.asarray(labels, dtype=np.int64)
        labelled = bool((label_array >= 0).all())
        if not labelled and (label_array >= 0).any():
            raise ValueError(f"{out}: some samples have labels and some do not; a split is labelled or not")
        num_classes = len(class_names) if class_names is not None else (int(label_array.max()) + 1 if labelled else 0)
        if labelled and int(label_array.max()) >= num_classes:
            raise ValueError(f"{out}: labels go up to {int(label_array.max())}, but class_names names only "
                             f"{num_classes} classes; give one name per class")
        if labelled and every_class:
            _check_every_class(label_array, num_classes, out)
        shard_of, offsets, lengths = _member_table(tmp, shards)
        np.savez(tmp / ITEMS_FILE, shard=shard_of, offset=offsets, length=lengths, label=label_array)
        size = next(iter(sizes)) if len(sizes) == 1 else None
        index = {
            "format": FORMAT, "num_samples": count, "labelled": labelled, "num_classes": num_classes,
            "class_names": list(class_names) if class_names is not None else None,
            "class_counts": np.bincount(label_array, minlength=num_classes).tolist() if labelled else None,
            "image_size": list(size) if size is not None else None,  # [width, height] when every image shares it
            "channels": max(channels), "suffixes": sorted(suffixes), "source": source,
            "shards": shards,
        }
        atomic_write_text(tmp / INDEX_FILE, json.dumps(index, indent=1) + "\n")
        if out.exists() and overwrite:
            shutil.rmtree(out)
        try:
            os.rename(tmp, out)  # never over a split another writer put there meanwhile (an empty folder: fine)
        except OSError:
            raise FileExistsError(f"{out} was written by another process meanwhile; it is left as it is (pass "
                                  "--overwrite to replace it)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _member_table(folder: Path, shards: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image sample (in key order): its shard, the byte offset and length of its data in the tar."""
    shard_of, offsets, lengths = [], [], []
    for s, shard in enumerate(shards):
        with tarfile.open(folder / shard["name"]) as tar:
            for member in tar:
                if not member.name.endswith(".cls"):
                    shard_of.append(s)
                    offsets.append(member.offset_data)
                    lengths.append(member.size)
    return (np.asarray(shard_of, dtype=np.int32), np.asarray(offsets, dtype=np.int64),
            np.asarray(lengths, dtype=np.int64))


def is_split_folder(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


def read_index(path: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a split folder, checked for its format."""
    path = Path(path)
    if not is_split_folder(path):
        raise DataNotFoundError(f"{path} holds no {INDEX_FILE}: expected a folder written by `lzn data shard "
                                "SOURCE --out DIR` (DIR/train or DIR/test, or DIR with train/ and test/)")
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path / INDEX_FILE} is not valid JSON ({err}); write the split again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ValueError(f"{path / INDEX_FILE}: format {found!r}, expected {FORMAT!r}; write the split again")
    return index


def split_problems(path: str | Path) -> list[str]:
    """What is wrong with the files of a split folder (empty when it is whole): a missing or truncated shard
    (shorter than its last sample's bytes), a per-sample table that does not match the index."""
    path = Path(path)
    index = read_index(path)
    try:
        with np.load(path / ITEMS_FILE, allow_pickle=False) as items:
            shard, end = items["shard"], items["offset"] + items["length"]
    except (OSError, KeyError, ValueError) as err:
        return [f"{path / ITEMS_FILE} is missing or unreadable ({' '.join(str(err).split())})"]
    problems = []
    if len(shard) != index["num_samples"]:
        problems.append(f"{ITEMS_FILE} lists {len(shard)} samples, {INDEX_FILE} {index['num_samples']}")
    for i, entry in enumerate(index["shards"]):
        f = path / entry["name"]
        need = int(end[shard == i].max()) if (shard == i).any() else 0
        if not f.is_file():
            problems.append(f"{entry['name']} is missing")
        elif f.stat().st_size < need:
            problems.append(f"{entry['name']} is truncated ({f.stat().st_size} bytes, its samples need {need})")
    return problems


class ShardedDataset:
    """A split written by :func:`write_shards`, read by random access; the interface of
    :class:`~lzn.data.ImageDataset` minus ``images``: ``len``, ``labels`` (int64 (N,) or None),
    ``num_classes``, ``class_names``, ``name``, ``image_shape``, ``batch(indices)`` and ``subset``.

    ``size``: decode to size x size (shorter side resized, centre crop, as the image folder loader);
    default the stored size, which every image must share. ``channels``: 1 or 3 (default: stored).
    Open tar files are per process (re-opened after a fork), so DataLoader workers can share the object.
    """

    def __init__(self, root: str | Path, size: int | None = None, channels: int | None = None,
                 name: str | None = None, class_names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.index = index = read_index(self.root)
        with np.load(self.root / ITEMS_FILE, allow_pickle=False) as items:
            self._shard, self._offset = items["shard"], items["offset"]
            self._length, label = items["length"], items["label"]
        if len(self._shard) != index["num_samples"]:
            raise ValueError(f"{self.root}: {ITEMS_FILE} lists {len(self._shard)} samples, {INDEX_FILE} "
                             f"{index['num_samples']}; write the split again")
        stored = index.get("image_size")
        if size is None:
            if stored is None or stored[0] != stored[1]:
                what = "images of different sizes" if stored is None else f"{stored[0]}x{stored[1]} images"
                raise ValueError(f"{self.root} holds {what}: set data.size to resize and centre-crop them")
            size = int(stored[0])
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.size, self.channels = size, int(channels if channels is not None else index["channels"])
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        self.name = name or f"{self.root.parent.name}-{self.root.name}"
        own = tuple(index["class_names"]) if index.get("class_names") else None
        self.labels: Tensor | None = torch.from_numpy(label) if index["labelled"] else None
        self.num_classes = int(index["num_classes"]) if index["labelled"] else 0
        self.class_names = own
        if class_names is not None and self.labels is not None and own is not None and tuple(class_names) != own:
            lookup = {n: i for i, n in enumerate(class_names)}
            unknown = [n for n in own if n not in lookup]
            if unknown:
                raise ValueError(f"{self.root}: classes {unknown} are not among the training classes {list(class_names)}")
            self.labels = torch.tensor([lookup[n] for n in own], dtype=torch.int64)[self.labels]
            self.num_classes, self.class_names = len(class_names), tuple(class_names)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.index["num_samples"])

    def __repr__(self) -> str:
        return (f"ShardedDataset({str(self.root)!r}, {len(self)} images, {len(self.index['shards'])} shards, "
                f"{self.channels}x{self.size}x{self.size}, {self.num_classes} classes)")

    def __getstate__(self) -> dict[str, Any]:  # open files do not travel to worker processes
        return {**self.__dict__, "_files": {}}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.size, self.size

    def _file(self, shard: int) -> Any:
        if os.getpid() != self._pid:  # a forked worker: the parent's file offsets are shared, open anew
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.root / self.index["shards"][shard]["name"], "rb")
        return f

    def read(self, i: int) -> bytes:
        """The stored bytes of sample ``i``."""
        f = self._file(int(self._shard[i]))
        f.seek(int(self._offset[i]))
        data = f.read(int(self._length[i]))
        if len(data) != int(self._length[i]):
            raise ValueError(f"{self.root / self.index['shards'][int(self._shard[i])]['name']} is truncated at sample "
                             f"{i}; write the split again")
        return data

    def image(self, i: int) -> np.ndarray:
        """Sample ``i`` decoded: uint8 (size, size, channels)."""
        shard = self.index["shards"][int(self._shard[i])]["name"]
        return decode_image(io.BytesIO(self.read(i)), self.size, self.channels, f"sample {i} of {self.root / shard}",
                            "write the split again from its source")

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images (B, C, size, size) float32 in [-1, 1] and labels (B,) (or None) at ``indices`` (B,)."""
        idx = indices.to("cpu", torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got [{int(idx.min())}, {int(idx.max())}]")
        pixels = np.stack([self.image(i) for i in idx.tolist()]) if idx.numel() else \
            np.zeros((0, self.size, self.size, self.channels), np.uint8)
        images = hwc_to_signed(pixels)  # (B, H, W, C) -> (B, C, H, W)
        return images, None if self.labels is None else self.labels[idx]

    def subset(self, indices: Tensor | list[int], name: str | None = None) -> ImageDataset:
        """The samples at ``indices``, decoded into memory, as an :class:`ImageDataset`."""
        images, labels = self.batch(torch.as_tensor(indices, dtype=torch.long))
        return ImageDataset(images=images, labels=labels, num_classes=self.num_classes,
                            name=self.name if name is None else name, class_names=self.class_names)

    def load(self) -> ImageDataset:
        """The whole split in memory (for evaluations that need every image at once)."""
        return self.subset(torch.arange(len(self)))


def iter_batches(data: ImageDataset | ShardedDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(images, labels) of consecutive index ranges of ``data``, in order."""
    for start in range(0, len(data), batch_size):
        yield data.batch(torch.arange(start, min(start + batch_size, len(data))))



SOURCE_KINDS = ("auto", "folder", "cifar10", "fashion", "arrays", "digits")


def detect_kind(source: str | Path) -> str:
    """What ``lzn data shard`` reads from ``source``: "digits" (the word), "arrays" (a .npz / .npy file),
    "cifar10" (a cifar-10-batches-py folder or its parent), "fashion" (a folder of Fashion-MNIST IDX
    files) or "folder" (an image folder)."""
    from lzn.data.fashion import FASHION_FILES

    if str(source) == "digits":
        return "digits"
    path = Path(source)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist; expected an image folder, a cifar-10-batches-py folder, a "
                                "folder of Fashion-MNIST IDX files, a .npz / .npy file, or the word digits")
    if path.is_file():
        if path.suffix in (".npz", ".npy"):
            return "arrays"
        raise ValueError(f"{path} is a file but not a .npz / .npy; expected one of those, or a folder")
    if (path / "cifar-10-batches-py").is_dir() or (path / "data_batch_1").is_file():
        return "cifar10"
    idx_names = [n for names in FASHION_FILES.values() for n in names]
    if any((path / n).is_file() or (path / f"{n}.gz").is_file() for n in idx_names):
        return "fashion"
    return "folder"


def shard_source(source: str | Path, out: str | Path, *, kind: str = "auto", split: str | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False, skip_bad_files: bool = False,
                 progress: bool = True) -> dict[str, Path]:
    """Write the splits of ``source`` under ``out`` (``out/train``, ``out/test``); returns them by split.

    Data sets with fixed splits (digits, Fashion-MNIST, CIFAR-10) and image folders with train/ and test/
    sub-folders write both; any other source is one split, ``split`` ("train" by default). ``split``
    restricts a two-split source to one. Image folder files are stored as they are (no re-encoding);
    arrays are stored as PNG.
    """
    from lzn.data.cifar import load_cifar10
    from lzn.data.datasets import load_arrays, load_digits
    from lzn.data.fashion import load_fashion_mnist

    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {list(SOURCE_KINDS)}, got {kind!r}")
    if split is not None and split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' (or None for every split the source has), got {split!r}")
    kind = detect_kind(source) if kind == "auto" else kind
    path, out = Path(source), Path(out)
    two = kind in ("digits", "cifar10", "fashion") or (kind == "folder" and (path / "train").is_dir()
                                                        and (path / "test").is_dir())
    splits = ([split] if split else ["train", "test"]) if two else [split or "train"]
    if kind != "digits" and (out.resolve() == path.resolve() or path.resolve() in out.resolve().parents):
        raise ValueError(f"--out {out} lies inside the source {path}; the shards would be read as part of it: "
                         "choose an --out outside the source")
    done = [s for s in splits if (out / s).exists()]
    if done and not overwrite:
        rest = [s for s in splits if s not in done]
        also = (f" ({', '.join(rest)} missing: write it alone with --split {rest[0]}, or pass --overwrite to "
                "write every split again)" if rest else "; choose another --out or pass --overwrite")
        raise FileExistsError(f"{out / done[0]} already exists{also}")
    written: dict[str, Path] = {}
    train_names: tuple[str, ...] | None = None
    for s in splits:  # train first: a folder's test split takes the training class names
        label = f"{kind} {path}" + (f" ({s})" if two else "")
        if kind == "folder":
            root = path / s if two else path
            names = train_names if (two and s == "test") else None
            pairs, names = folder_samples(root, class_names=names, skip_bad_files=skip_bad_files)
            train_names = names if s == "train" else train_names
            samples: Iterable[Sample] = (read_folder_sample(p, y) for p, y in pairs)
            total = len(pairs)
        else:
            if kind == "digits":
                data = load_digits(split=s)
            elif kind == "fashion":
                data = load_fashion_mnist(path, split=s)
            elif kind == "cifar10":
                data = load_cifar10(path, split=s)
            else:
                data = load_arrays(path)
            if s == "train" and data.labels is not None:  # before any image is written
                _check_every_class(data.labels.numpy(), data.num_classes, out / s)
            names, samples, total = data.class_names, samples_from_dataset(data), len(data)
        written[s] = write_shards(samples, out / s, class_names=names, shard_size=shard_size, source=label,
                                  total=total, overwrite=overwrite, progress=progress, every_class=s == "train")
    return written
