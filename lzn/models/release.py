"""Import the authors' released checkpoints: ``import_release(ckpt, out_dir)`` writes a ``save_pretrained``
folder, ``release_model(ckpt)`` gives the :class:`LatentZoningNetwork` in memory (method.md §10).

A release file is one ``torch.save`` of a plain dict written by the release's trainer: network entries
``encoder``, ``decoder`` (case studies 1 and 3) and ``label_anchor`` (case study 3), each the state dict of
a DDP-wrapped network (every key starts with ``model.module.``); EMA entries ``<entry>_ema`` =
``{"decay", "num_updates", "shadow_params": [tensor per parameter, in parameters() order]}``, so
``shadow_params[i]`` belongs to the entry's i-th key without buffers; and training state (optimizer,
scheduler, epoch, iteration) that is not imported. It is read with ``weights_only=True`` onto the CPU.
``tests/data/release/README.md`` describes the layout and how the release calls its networks (facts measured
from the release; no code of theirs is used here). The key mapping rules and the shape inference live in
``lzn.models.release_layout``. lzn's NCSN++ already calls its networks the release's way (the decoder sees
999 s clamped to [0, 1], conditioning [latent, one-hot label, time embedding], sin before cos, up blocks on
[h, skip]), so no option was needed: the imported networks reproduce the release's outputs
(tests/models/test_release.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lzn.atomic import default_dir_mode
from lzn.models.label_anchors import LabelAnchors
from lzn.models.network import FlowConfig, LatentZoningNetwork
from lzn.models.release_layout import (BUFFERS, ENTRIES, PART, PREFIX, ReleaseFormatError, ReleasePlan, build_part,
                                       nin_to_conv, plan_release)

# torchvision's CIFAR-10 class order, the labels the release trains on (same as lzn.data.cifar.CIFAR10_CLASSES)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
Weights = Literal["ema", "live"]


# ---- reading ---------------------------------------------------------------------------------------

def read_release(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True, map_location="cpu", mmap=True)`` with one-line errors for files
    that are missing, truncated, corrupt, or hold anything but tensors and plain containers."""
    p = Path(path)
    if not p.is_file():
        raise ReleaseFormatError(f"{p}: no such file")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive (since torch 1.6; the release used 2.1)
        raise ReleaseFormatError(f"{p} is not a torch.save file: no zip archive (truncated, corrupt or another "
                                 "format)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=True)  # the Adam state stays on disk
    except Exception as err:  # zip / pickle / weights_only errors have many types
        text = " ".join(str(err).split())
        detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        glob = re.search(r"GLOBAL (\S+)", text)
        if glob:
            raise ReleaseFormatError(f"{p} holds a pickled {glob.group(1)}, not only tensors and plain containers, so "
                                     "it is not a release checkpoint (read with weights_only=True, which runs no code "
                                     "from the file)") from None
        why = detail.group(1) if detail else text
        raise ReleaseFormatError(f"{p} could not be read by torch.load: the file is corrupt or not a torch.save file "
                                 f"({type(err).__name__}: {why[:200]})") from None
    if not isinstance(state, dict):
        raise ReleaseFormatError(f"{p} holds a {type(state).__name__}, not the dict of a release checkpoint")
    return state


def _entry_tensors(state: Mapping[str, Any], entry: str) -> dict[str, Tensor]:
    sd = state[entry]
    if not isinstance(sd, Mapping) or not sd:
        raise ReleaseFormatError(f"entry {entry!r} is not a state dict (a {type(sd).__name__})")
    for key, value in sd.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            raise ReleaseFormatError(f"{entry} key {key!r} lacks the release's {PREFIX!r} prefix")
        if not isinstance(value, Tensor):
            raise ReleaseFormatError(f"{entry} key {key!r} is a {type(value).__name__}, not a tensor")
    return dict(sd)


def release_shapes(state: Mapping[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Entry -> key -> shape of the network entries of a loaded release file (refusing foreign files)."""
    present = [e for e in ENTRIES if e in state]
    if str(state.get("format", "")).startswith("lzn"):
        raise ReleaseFormatError(f"an lzn file ({state['format']}), not the authors' release: an lzn run folder's "
                                 "model/ is already an lzn model folder")
    if "encoder" not in present:
        shown = ", ".join(repr(k) for k in list(state)[:6]) + (", ..." if len(state) > 6 else "")
        raise ReleaseFormatError(f"not an LZN release checkpoint: it has no 'encoder' entry (top-level keys: "
                                 f"{shown or 'none'}; a release file holds encoder, decoder, label_anchor, *_ema, "
                                 "optimizer, ...)")
    return {e: {k: tuple(v.shape) for k, v in _entry_tensors(state, e).items()} for e in present}


# ---- importing ------------------------------------------------------------------------------------

def _values(path: Path, state: Mapping[str, Any], entry: str, weights: Weights) -> list[Tensor]:
    """The entry's tensors in its key order without buffers: live weights, or the EMA's shadow_params."""
    live = [v for k, v in state[entry].items() if k[len(PREFIX):] not in BUFFERS.get(entry, ())]
    if weights == "live":
        return live
    ema = state.get(f"{entry}_ema")
    shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
    if not isinstance(shadow, (list, tuple)):
        raise ReleaseFormatError(f"{path} has no {entry}_ema shadow_params list (the EMA weights); import the live "
                                 "weights with weights='live' (--weights live)")
    if len(shadow) != len(live):
        raise ReleaseFormatError(f"{path}: {entry}_ema holds {len(shadow)} tensors, the {entry} has {len(live)} "
                                 "parameters")
    for i, (s, v) in enumerate(zip(shadow, live)):
        if not isinstance(s, Tensor) or s.shape != v.shape:
            got = list(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ReleaseFormatError(f"{path}: {entry}_ema shadow_params[{i}] is {got}, expected {list(v.shape)} "
                                     "(its parameter's shape)")
    return list(shadow)


def release_model(path: str | os.PathLike[str], weights: Weights = "ema",
                  case_study: int | None = None) -> tuple[LatentZoningNetwork, ReleasePlan]:
    """The release checkpoint at ``path`` as a :class:`LatentZoningNetwork` (CPU, eval mode), with the plan
    that describes it. ``weights``: "ema" (the release's published ``ema-`` results) or "live"."""
    if weights not in ("ema", "live"):
        raise ValueError(f"weights must be 'ema' or 'live', got {weights!r}")
    p = Path(path)
    state = read_release(p)
    try:
        plan = plan_release(release_shapes(state), case_study)
    except ReleaseFormatError as err:
        raise ReleaseFormatError(f"{p}: {err}") from None
    iteration = state.get("iteration")
    plan.iteration = iteration if isinstance(iteration, int) else None
    parts: dict[str, nn.Module] = {}
    for entry, pairs in plan.pairs.items():
        net = build_part(plan.networks[PART[entry]])
        loaded = {}
        for pair, value in zip(pairs, _values(p, state, entry, weights)):
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise ReleaseFormatError(f"{p}: {entry} {pair.release} ({weights}) is not finite floating point")
            value = value.detach().to("cpu", torch.float32)
            loaded[pair.lzn] = (nin_to_conv(value) if pair.transpose else value).contiguous().clone()
        net.load_state_dict(loaded, strict=True)
        parts[PART[entry]] = net
    flow = FlowConfig(solver="euler", steps=20) if plan.case_study == 2 else FlowConfig()  # method.md §2.7
    names = CIFAR10_CLASSES if plan.case_study == 3 else None
    anchors = parts.get("label_anchors")
    assert anchors is None or isinstance(anchors, LabelAnchors)
    model = LatentZoningNetwork(parts.get("encoder"), parts.get("decoder"), anchors, flow, class_names=names)
    return model.eval(), plan


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path if it is missing or an empty folder (where an imported model may go)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new output folder")
    return out


def save_model_folder(model: LatentZoningNetwork, out_dir: str | os.PathLike[str]) -> Path:
    """``model.save_pretrained`` into a fresh folder: written beside ``out_dir`` and renamed onto it, so a
    failure leaves nothing. ``out_dir`` must not exist or be empty."""
    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(default_dir_mode())  # mkdtemp's folder is private (0700); a model folder is not
        model.save_pretrained(str(tmp))
        os.replace(tmp, out)  # onto a missing or empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def import_release(ckpt_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], weights: Weights = "ema",
                   case_study: int | None = None) -> ReleasePlan:
    """Read the authors' checkpoint ``ckpt_path`` and write it as a ``save_pretrained`` folder ``out_dir``
    (loadable with ``LatentZoningNetwork.from_pretrained``); returns the plan (case study, networks)."""
    check_out_dir(out_dir)  # before reading gigabytes
    model, plan = release_model(ckpt_path, weights, case_study)
    save_model_folder(model, out_dir)
    return plan
