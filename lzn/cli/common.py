"""What the commands share: loading a model folder or a run folder (the one preamble of every inference
command: ``load``, then ``data`` for the split to run on), reading captions and labels, and the argument
types (a bad value fails in argparse, exit code 2, one line)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lzn.data import DataConfig, ImageDataset, ShardedDataset
from lzn.models import LatentZoningNetwork
from lzn.run_folder import RunFolder, read_run_file

class Loaded:
    """A model with where it came from: ``meta`` is the run's ``run.yaml`` (None for a bare model folder)."""

    def __init__(self, model: LatentZoningNetwork, meta: dict[str, Any] | None, path: Path) -> None:
        self.model, self.meta, self.path = model, meta, path

    def setting(self, key: str, default: Any) -> Any:
        """A value of the run's resolved config (e.g. ``eval_batch_size``), else ``default``."""
        config = (self.meta or {}).get("config", {})
        return config.get(key, default) if isinstance(config, dict) else default


def load(path: str, device: str | None) -> Loaded:
    """``path``: a model folder (config.json + model.safetensors) or a run folder with ``model/``."""
    from lzn.distributed import pick_device

    p, run = Path(path), RunFolder(path)
    dev = pick_device(device)
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return Loaded(LatentZoningNetwork.from_pretrained(str(p), dev).eval(), None, p)
    if not run.run_file.is_file():
        raise ValueError(f"{p} is neither an lzn run folder (run.yaml) nor a model folder (config.json and "
                         "model.safetensors); train one with `lzn train` or pass a save_pretrained folder")
    meta = read_run_file(p)
    if not (run.model / "config.json").is_file():
        if meta.get("recipe") == "classifier":
            raise ValueError(f"{p} holds a 'classifier' run: a plain supervised classifier, not an LZN, so it exports "
                             "no model for these commands; its test accuracy is in results.json")
        if meta.get("recipe") == "clip":
            raise ValueError(f"{p} holds a 'clip' run: a CLIP-style baseline, not an LZN, so it exports no "
                             "model for these commands; its retrieval and prompt-classification figures "
                             "are in results.json")
        raise ValueError(f"{p} has no exported model yet (model/ is written when training finishes); "
                         "finish it by rerunning the same `lzn train` command")
    return Loaded(LatentZoningNetwork.from_pretrained(str(run.model), dev).eval(), meta, p)


def raw_weights_model(loaded: Loaded) -> LatentZoningNetwork | None:
    """The run's model with the last checkpoint's live weights instead of the exported EMA weights (None for
    a bare model folder or a run without EMA). It has no reference bank: the bank holds anchors of the EMA
    encoder, so only the batch protocol applies to these weights."""
    from lzn.training.checkpoint import live_weights

    if loaded.meta is None:
        return None
    live = live_weights(loaded.path)
    if live is None:
        return None
    model = LatentZoningNetwork.from_pretrained(str(RunFolder(loaded.path).model), loaded.model.device)
    for name, module in model.parts().items():
        module.load_state_dict(live[name])
    model.reference = None
    return model.eval()


def protocol_batches(loaded: Loaded) -> tuple[int, ...]:
    """Evaluation anchor sets of the accuracy sweep: the run's training batch (the paper's protocol: a test
    anchor set as large as the training one, method.md §8.2) and its eval_batch_size; a bare model folder:
    2000."""
    sizes = (loaded.setting("batch_size", None), loaded.setting("eval_batch_size", 2000))
    return tuple(dict.fromkeys(int(s) for s in sizes if s))


def data(args: argparse.Namespace, loaded: Loaded) -> ImageDataset | ShardedDataset:
    """The ``--split`` of the data set to run on: the run's own (``--root`` to move it), or ``--data NAME``."""
    from lzn.data import DataNotFoundError, load_split

    cfg = data_config(args, loaded)
    try:
        return load_split(cfg, args.split, class_names=loaded.model.class_names)
    except DataNotFoundError as err:
        if args.split == "train" or "split" not in str(err):
            raise
        raise DataNotFoundError(f"{str(err).split(': give')[0]}: use --split train, or train with a test source "
                                "(data.test_root, data.holdout, or train/ and test/ sub-folders)") from None


def data_config(args: argparse.Namespace, loaded: Loaded) -> DataConfig:
    """The run's data config (``--root`` to move it), or one for ``--data NAME`` sized for the model."""
    import dataclasses

    from lzn.data import SOURCES

    if args.data is not None and args.data not in SOURCES:
        raise ValueError(f"--data must be one of {', '.join(sorted(SOURCES))}, got {args.data!r}")
    model, run_data = loaded.model, (loaded.meta or {}).get("config", {}).get("data")
    if args.data is None and run_data is None:
        raise ValueError(f"{loaded.path} is a bare model folder: name the data with --data (digits, fashion, "
                         "cifar10, folder, arrays) and --root")
    if args.data is None or (run_data is not None and args.data == run_data.get("name")):
        cfg = DataConfig(**run_data)
        if args.root is not None:
            cfg = dataclasses.replace(cfg, root=args.root)
    else:
        net = model.encoder if model.encoder is not None else model.decoder
        size = getattr(net, "image_size", None) if args.data in ("digits", "folder") else None
        channels = getattr(net, "image_channels", None) if args.data == "folder" else None
        cfg = DataConfig(name=args.data, root=args.root, size=None if (args.data == "digits" and size == 8) else size,
                         channels=channels)
    return cfg


def chunks(ds: Any, size: int) -> Any:
    """(images, labels) of consecutive chunks of ``size`` of an in-memory or sharded set (a sharded one is
    read chunk by chunk, never whole)."""
    from lzn.data import iter_batches

    return iter_batches(ds, size)


def parse_labels(text: str, model: LatentZoningNetwork) -> list[int]:
    """``--labels 0,1,2`` or class names ``cat,dog`` -> class indices (``model.class_index`` each)."""
    names = model.class_names or ()
    if text.strip() in names:  # one class whose name holds a comma
        return [model.class_index(text.strip())]
    out = []
    for item in (t.strip() for t in text.split(",")):
        try:
            out.append(model.class_index(item))
        except (TypeError, ValueError):
            names = model.class_names
            valid = f"0..{model.num_classes - 1}" + (f" or names {', '.join(names)}" if names else "")
            raise ValueError(f"--labels expects comma-separated classes ({valid}), got {item!r}") from None
    return out


def npy_path(out: str) -> Path:
    """``--out x`` writes ``x.npy`` (numpy's convention), and the message names that file."""
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a directory; expected a .npy file path")
    path = Path(out)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    if path.is_dir():
        raise ValueError(f"--out {out} is a directory; expected a .npy file path")
    return path


def read_captions(args: argparse.Namespace) -> list[str] | None:
    """The captions of ``--caption`` (repeatable) and ``--captions-file`` (one per line, blank lines
    skipped), in that order; None when neither is given."""
    captions = list(args.caption or [])
    if getattr(args, "captions_file", None):
        path = Path(args.captions_file)
        if not path.is_file():
            raise ValueError(f"--captions-file {args.captions_file}: no such file; expected a text file with one "
                             "caption per line")
        raw = path.read_bytes().splitlines()
        for number, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"--captions-file {args.captions_file}: line {number} is not UTF-8 text; save the "
                                 "file as UTF-8") from None
        lines = [line.decode("utf-8").strip() for line in raw]
        found = [line for line in lines if line]
        if not found:
            raise ValueError(f"--captions-file {args.captions_file} holds no caption (one per line, blank lines "
                             "skipped)")
        captions += found
    elif not captions:
        return None
    if any(not c.strip() for c in captions):
        raise ValueError('--caption is empty; expected a text such as --caption "a fat zero"')
    return [c.strip() for c in captions]


def need_text(loaded: Loaded, flag: str) -> None:
    """A ValueError naming ``flag`` when the model has no text type."""
    types = loaded.model.data_types
    if "text" not in types:
        raise ValueError(f"{flag} needs a model with a text type; the model at {loaded.path} has data types "
                         f"{', '.join(types) or 'none'}: train one with `lzn train text --preset digits --out RUN`")


def margin_label(text: str, width: int = 32) -> str:
    """``text`` cut to ``width`` characters for a grid's left margin."""
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


CONTEXTS = ["reference", "batch"]  # --context: the anchor set of inference latents (method.md §2.9)


def model_command(sub: argparse._SubParsersAction[Any], name: str, help_: str,
                  func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A command on a trained model: RUN_OR_MODEL_DIR and --device, handled by ``func``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_)
    p.add_argument("run_dir", metavar="RUN_OR_MODEL_DIR",
                   help="a run folder (uses its model/ and run.yaml) or a save_pretrained model folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.set_defaults(func=func)
    return p


def data_args(p: argparse.ArgumentParser, split: str) -> None:
    """--data, --root and --split of a command that reads a data split."""
    p.add_argument("--data", default=None, help="data set name (default: the run's)")
    p.add_argument("--root", default=None, help="data path (default: the run's)")
    p.add_argument("--split", default=split, choices=["train", "test"])


def _int_at_least(text: str, low: int, expected: str) -> int:
    """``text`` as an int >= ``low``; otherwise an argparse error naming the ``expected`` form."""
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "a whole number >= 0")


def metric_list(text: str) -> tuple[str, ...]:
    from lzn.eval.suite import check_metrics

    try:
        return check_metrics(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 2] like 0,0.5,1,1.2, got {text!r}") from None
    if not all(0.0 <= v <= 2.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 2] like 0,0.5,1,1.2, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(v) for v in text.split(","))


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> float:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def caption_args(p: argparse.ArgumentParser) -> None:
    """``--caption`` (repeatable) and ``--captions-file``."""
    p.add_argument("--caption", action="append", default=None, metavar="TEXT",
                   help="a caption (repeatable), e.g. --caption \"a fat zero\"; needs a text model (lzn train text)")
    p.add_argument("--captions-file", default=None, metavar="FILE",
                   help="a text file of captions, one per line (blank lines skipped)")
