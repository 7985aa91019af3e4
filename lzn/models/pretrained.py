"""The files of ``save_pretrained`` / ``from_pretrained``: a folder with ``config.json`` and
``model.safetensors``, local only. The model class is handed in (``load(..., make=LatentZoningNetwork)``),
so this module knows the files, not the model. Files are written to temporaries and renamed (atomic); the config
records the weights' SHA-256, so a truncated or altered weight file is refused with a clear error.
``class_names`` is an optional key (a list of strings or null); folders written without it load with
``class_names = None``. ``types`` (optional, written since data types have names) maps each registered
data type (``text``) to the (name, kwargs) of its encoder and decoder; its reference anchors, like the
image reference bank, are tensors in the weights file (``NAME_reference``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lzn.atomic import atomic_write_bytes, atomic_write_text
from lzn.run_folder import RunFolder
from lzn.models.datatypes import data_type
from lzn.models.label_anchors import LabelAnchors
from lzn.models.outputs import FlowConfig, TypeParts
from lzn.models.registry import build, build_spec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "lzn-pretrained/1"


def save(model: Any, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a LatentZoningNetwork) to ``directory``: config.json + model.safetensors, atomically."""
    from safetensors.torch import save as serialise

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"format": FORMAT, "flow": dataclasses.asdict(model.flow)}
    for part in ("encoder", "decoder"):
        module = getattr(model, part)
        config[part] = None if module is None else build_spec(module, part)
    la = model.label_anchors
    config["label_anchors"] = None if la is None else {"num_classes": la.num_classes, "latent_dim": la.latent_dim}
    config["class_names"] = None if model.class_names is None else list(model.class_names)
    config["types"] = {name: {part: (None if getattr(model, f"{name}_{part}") is None
                                     else build_spec(getattr(model, f"{name}_{part}"), f"{name} {part}"))
                              for part in ("encoder", "decoder")} for name in model.type_names}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = serialise(state)
    config["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(out / WEIGHTS_NAME, blob)
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return out


def load(directory: str | os.PathLike[str], map_location: str | torch.device, make: Callable[..., nn.Module]) -> Any:
    """The model in ``directory``, built by ``make`` (the LatentZoningNetwork class) from its config, weights
    loaded, on ``map_location`` in eval mode."""
    from safetensors.torch import load

    src = Path(directory)
    cfg_path, w_path = src / CONFIG_NAME, src / WEIGHTS_NAME
    exported = RunFolder(src).model  # a run folder's model folder
    if not cfg_path.is_file() and (exported / CONFIG_NAME).is_file():
        raise ValueError(f"{src} is a run folder; its exported model is {exported}")
    dev = torch.device(map_location)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location={str(map_location)!r}, but this torch build has no usable CUDA "
                         f"(torch {torch.__version__}); use 'cpu'")
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ValueError(f"{p} is missing: a pretrained LZN folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path} is not valid JSON ({err}); the folder is corrupted") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not an lzn config (expected format {FORMAT!r})")
    blob = w_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config.get("weights_sha256"):
        raise ValueError(f"{w_path} does not match the checksum in {CONFIG_NAME}: the weights are corrupted or truncated")
    encoder = None if config["encoder"] is None else build(config["encoder"]["name"], **config["encoder"]["kwargs"])
    decoder = None if config["decoder"] is None else build(config["decoder"]["name"], **config["decoder"]["kwargs"])
    la_cfg = config["label_anchors"]
    label_anchors = None if la_cfg is None else LabelAnchors(la_cfg["num_classes"], la_cfg["latent_dim"])
    try:
        types = {name: TypeParts(*(None if parts.get(part) is None else build(parts[part]["name"], **parts[part]["kwargs"])
                                   for part in ("encoder", "decoder")))
                 for name, parts in (config.get("types") or {}).items()}
        model: Any = make(encoder, decoder, label_anchors, FlowConfig(**config["flow"]),
                          class_names=config.get("class_names"), types=types)
    except ModuleNotFoundError as err:  # a text encoder's package (lzn[text])
        raise ModuleNotFoundError(f"{cfg_path}: {err}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"{cfg_path} describes an invalid model: {err}") from None
    try:
        state = load(blob)
    except Exception as err:  # safetensors raises its own error types for malformed headers
        raise ValueError(f"{w_path} could not be read as safetensors ({err})") from None
    references = {name: state.pop(buffer, None) for name in model.data_types  # optional: older folders have none
                  if (buffer := data_type(name).reference_buffer()) is not None}
    model.load_state_dict(state, strict=True)
    for name, reference in references.items():
        if reference is not None:
            model.set_reference(reference, name)
    return model.to(map_location).eval()  # inference mode, as diffusers and transformers load models
