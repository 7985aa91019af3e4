"""The authors' released checkpoints, by key names and shapes: which networks they hold and how every
tensor maps onto lzn's (method.md §5.4, §5.5, §6.3, §7.2). Reading and writing files: ``lzn.models.release``.

Facts about the layout come from ``tests/data/release/README.md`` (measured from the release; no code of
theirs is used here).

Key mapping rules (release name after ``model.module.`` -> lzn name):

* NCSN++ (case studies 1 and 3), ``all_modules.i`` in forward order: encoder 0 = stem, then per level its
  residual blocks (each followed by its attention at attention resolutions) and, except on the last level,
  a down-sampling block, then the middle block (res, attention, res); the decoder adds the two conditioning
  Linears first (0, 1 -> ``cond_mlp.fc1``/``fc2``), then the same down path and middle, the up levels from
  the lowest resolution (num_res_blocks + 1 blocks, attention, up-sampling block), the output GroupNorm
  and conv (``out.0``, ``out.2``). Residual block ``GroupNorm_0, Conv_0, Dense_0, GroupNorm_1, Conv_1,
  Conv_2`` -> ``norm1, conv1, cond, norm2, conv2, shortcut``; attention ``GroupNorm_0, NIN_0..3`` ->
  ``norm, q, k, v, proj``, where a NIN's ``W`` is stored (in, out) and becomes the 1x1 conv weight
  ``W.T[:, :, None, None]``. Encoder heads ``spatial_transformations.i.0`` -> ``heads.i.0`` and
  ``latent_transformations.i.{0,2}`` -> ``heads.i.{3,5}``. The decoder's ``sigmas`` buffer (never read
  by the CIFAR-10 decoders) is dropped.
* ResNet-50 (case study 2): ``net.0.{0,1.0}`` -> ``stem.{0,1}``; ``net.s.blocks.j.net.{0,2,4}`` ->
  ``layer{s}.j.conv{1,2,3}``, ``net.{1,3,5}.0`` -> ``gn{1,2,3}``, ``projection.shortcut`` / ``projection.bn.0``
  -> ``shortcut.0`` / ``shortcut.1``; ``head.layers.{0,1,3,4}`` -> ``head.fc1, gn1, fc2, gn2``.
* Label anchors: ``anchor`` -> ``label_anchors.weight``.

The network configuration (widths, channel multipliers, blocks per level, attention placement, head sizes,
image size, latent size, number of classes) is read from the shapes, the networks are built with
``lzn.models.build`` (so the result saves by name), and every release tensor must map onto exactly one lzn
tensor of the same shape (after the NIN transpose), and back: anything else is one ``ReleaseFormatError``
line naming the first key that does not fit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from lzn.models.label_anchors import LabelAnchors
from lzn.models.ncsnpp import NCSNppDecoder, NCSNppEncoder, _DownLevel, _UpLevel
from lzn.models.registry import build

PREFIX = "model.module."  # the trainer's wrapper (attribute ``model``) around DDP (attribute ``module``)
ENTRIES = ("encoder", "decoder", "label_anchor")  # network entries, in the release's order
BUFFERS = {"decoder": ("sigmas",)}  # release buffers (not in shadow_params); never read on CIFAR-10, dropped
CASE_STUDIES = {1: "CIFAR-10 generation", 2: "ImageNet representation", 3: "CIFAR-10 generation + classification"}
Shapes = Mapping[str, Mapping[str, tuple[int, ...]]]  # entry -> release key (with PREFIX) -> shape


class ReleaseFormatError(ValueError):
    """A file that is not a (complete, intact) release checkpoint of a supported layout; one line."""


@dataclass(frozen=True)
class Pair:
    """One release tensor and the lzn tensor it becomes; ``transpose``: a NIN (in, out) matrix -> 1x1 conv."""

    release: str  # key inside the entry, without PREFIX
    part: str  # "encoder", "decoder" or "label_anchors"
    lzn: str  # key inside that lzn module
    transpose: bool = False


@dataclass
class ReleasePlan:
    """What a release file holds and how it maps onto lzn (from key names and shapes only)."""

    case_study: int
    networks: dict[str, dict[str, Any]]  # part -> {"name": registry name, "kwargs": ...} (label_anchors: kwargs)
    pairs: dict[str, list[Pair]] = field(default_factory=dict)  # entry -> pairs in the entry's key order
    iteration: int | None = None  # the file's training iteration, where it records one

    def describe(self) -> str:
        enc = self.networks["encoder"]["kwargs"]
        if self.case_study == 2:
            nets = f"ResNet-50 encoder ({enc['image_size']}x{enc['image_size']} input)"
        else:
            attn = ", ".join(map(str, enc["attn_resolutions"])) or "none"
            nets = (f"NCSN++ encoder and decoder ({enc['image_size']}x{enc['image_size']}, nf {enc['nf']}, ch_mult "
                    f"{list(enc['ch_mult'])}, {enc['num_res_blocks']} blocks per level, attention at {attn})")
        if "label_anchors" in self.networks:
            nets += f", {self.networks['label_anchors']['kwargs']['num_classes']} label anchors"
        nets += f", latent_dim {enc['latent_dim']}"
        nets += "" if self.iteration is None else f", iteration {self.iteration}"
        return f"case study {self.case_study} ({CASE_STUDIES[self.case_study]}): {nets}"


# ---- inferring the networks from shapes --------------------------------------------------------------

def _need(shapes: Mapping[str, tuple[int, ...]], entry: str, key: str, dims: int | None = None) -> tuple[int, ...]:
    shape = shapes.get(PREFIX + key)
    if shape is None:
        raise ReleaseFormatError(f"{entry} key {PREFIX + key!r} is missing")
    if dims is not None and len(shape) != dims:
        raise ReleaseFormatError(f"{entry} key {PREFIX + key!r} has shape {list(shape)}, expected {dims} dimensions")
    return shape


def _modules(shapes: Mapping[str, tuple[int, ...]], group: str) -> dict[int, dict[str, tuple[int, ...]]]:
    """``group.i.rest`` keys -> {i: {rest: shape}}."""
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    pattern = re.compile(re.escape(PREFIX + group) + r"\.(\d+)\.(.+)")
    for key, shape in shapes.items():
        m = pattern.fullmatch(key)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = shape
    return out


def _ncsnpp_layout(enc: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """NCSN++ encoder keys -> ncsnpp_encoder keyword arguments (method.md §5.5; README: module indices)."""
    nf, channels = _need(enc, "encoder", "all_modules.0.weight", 4)[:2]
    mods = _modules(enc, "all_modules")
    n = max(mods, default=0) + 1
    if sorted(mods) != list(range(n)) or n < 5:
        raise ReleaseFormatError(f"encoder all_modules indices are not 0..{n - 1} of an NCSN++ down path")
    kinds = []  # ("res", cin, cout, resample) or ("attn",)
    for i in range(1, n):
        m = mods[i]
        if "NIN_0.W" in m:
            kinds.append(("attn",))
        elif "Conv_0.weight" in m and len(m["Conv_0.weight"]) == 4:
            cout, cin = m["Conv_0.weight"][:2]
            kinds.append(("res", cin, cout, "Conv_2.weight" in m and cin == cout))
        else:
            raise ReleaseFormatError(f"encoder module all_modules.{i} ({', '.join(sorted(m))}) is neither an NCSN++ "
                                     "residual block nor an attention block (only the CIFAR-10 layout is supported)")
    if [k[0] for k in kinds[-3:]] != ["res", "attn", "res"]:
        raise ReleaseFormatError(f"encoder all_modules.{n - 3}..{n - 1} are not the middle block (res, attention, res)")
    levels: list[dict[str, Any]] = [{"couts": [], "attn": False}]
    for k in kinds[:-3]:
        if k[0] == "attn":
            levels[-1]["attn"] = True
        elif k[3]:
            levels.append({"couts": [], "attn": False})  # a down-sampling block closes a level
        else:
            levels[-1]["couts"].append(k[2])
    nrb = len(levels[0]["couts"])
    if nrb == 0 or any(len(lv["couts"]) != nrb or len(set(lv["couts"])) != 1 or lv["couts"][0] % nf
                       for lv in levels):
        raise ReleaseFormatError(f"encoder levels have unequal block counts or widths {[lv['couts'] for lv in levels]}")
    ch_mult = tuple(lv["couts"][0] // nf for lv in levels)
    # heads: one per feature map (stem, blocks, down blocks, middle) at resolutions <= a maximum
    heads = _modules(enc, "latent_transformations")
    spatial = _modules(enc, "spatial_transformations")
    if not heads or sorted(heads) != list(range(len(heads))) or sorted(spatial) != sorted(heads):
        raise ReleaseFormatError("encoder latent_transformations / spatial_transformations heads are missing or "
                                 "not numbered 0..n-1")
    head_channels = _need(enc, "encoder", "spatial_transformations.0.0.weight", 4)[0]
    head_hidden = _need(enc, "encoder", "latent_transformations.0.0.weight", 2)[0]
    latent_dim = _need(enc, "encoder", "latent_transformations.0.2.weight", 2)[0]
    res = []
    for i in range(len(heads)):
        area = _need(enc, "encoder", f"latent_transformations.{i}.0.weight", 2)[1] / head_channels
        side = math.isqrt(int(area))
        if side * side != area:
            raise ReleaseFormatError(f"encoder head {i}'s Linear takes {int(area * head_channels)} inputs, not "
                                     f"{head_channels} x R x R")
        res.append(side)
    image_size = res[-1] << (len(ch_mult) - 1)  # the last head is on the middle output
    maps = 1 + len(ch_mult) * nrb + len(ch_mult) - 1 + 1
    return {
        "image_channels": channels, "image_size": image_size, "latent_dim": latent_dim, "nf": nf,
        "ch_mult": ch_mult, "num_res_blocks": nrb,
        "attn_resolutions": tuple(image_size >> i for i, lv in enumerate(levels) if lv["attn"]),
        "head_channels": head_channels, "head_hidden": head_hidden,
        "head_max_resolution": None if len(heads) == maps else res[0],
    }


_CIFAR_DROPOUT = 0.15  # the release's CIFAR-10 NCSN++ config (README); not visible in the weights


def _plan_networks(shapes: Shapes, case_study: int | None) -> tuple[int, dict[str, dict[str, Any]]]:
    enc = shapes["encoder"]
    resnet = PREFIX + "net.0.0.weight" in enc
    found = 2 if resnet else (3 if "label_anchor" in shapes else 1) if "decoder" in shapes else None
    if found is None:
        raise ReleaseFormatError("the file has an NCSN++ encoder but no 'decoder' entry: a case-study-1 or -3 "
                                 "release file holds both (a partial file?)")
    if resnet and ("decoder" in shapes or "label_anchor" in shapes):
        raise ReleaseFormatError("the file has a ResNet encoder (case study 2) and also a decoder or label anchors")
    if case_study is not None and case_study != found:
        raise ReleaseFormatError(f"the file holds case study {found}'s networks ({', '.join(shapes)}), not case "
                                 f"study {case_study}'s")
    if resnet:
        stages = [len(_modules(enc, f"net.{s}.blocks")) for s in range(1, 5)]
        if stages != [3, 4, 6, 3] or PREFIX + "net.1.blocks.0.net.4.weight" not in enc:
            raise ReleaseFormatError(f"the ResNet encoder has {stages} blocks per stage; only the case-study-2 "
                                     "ResNet-50 (bottleneck blocks [3, 4, 6, 3]) is supported")
        latent_dim = _need(enc, "encoder", "head.layers.4.weight", 1)[0]
        channels = _need(enc, "encoder", "net.0.0.weight", 4)[1]
        kwargs = {"latent_dim": latent_dim, "image_channels": channels, "image_size": 224}  # evaluated at 224 x 224
        return found, {"encoder": {"name": "resnet50_encoder", "kwargs": kwargs}}
    layout = _ncsnpp_layout(enc)
    defaults = {"dropout": _CIFAR_DROPOUT}
    cond_in = _need(shapes["decoder"], "decoder", "all_modules.0.weight", 2)[1]
    num_classes = cond_in - layout["latent_dim"] - layout["nf"]  # [latent, one-hot label, time embedding (nf)]
    networks = {
        "encoder": {"name": "ncsnpp_encoder", "kwargs": {**layout, **defaults}},
        "decoder": {"name": "ncsnpp_decoder", "kwargs": {
            **{k: v for k, v in layout.items() if not k.startswith("head_")}, **defaults,
            "num_classes": num_classes}},
    }
    if found == 3:
        k, q = _need(shapes["label_anchor"], "label_anchor", "anchor", 2)
        networks["label_anchors"] = {"name": "label_anchors", "kwargs": {"num_classes": k, "latent_dim": q}}
        if num_classes != k:
            raise ReleaseFormatError(f"decoder all_modules.0.weight takes {cond_in} inputs = latent "
                                     f"{layout['latent_dim']} + time {layout['nf']} + {num_classes} classes, but "
                                     f"the label anchors have {k} classes")
    elif num_classes != 0:
        raise ReleaseFormatError(f"decoder all_modules.0.weight takes {cond_in} inputs, expected latent "
                                 f"{layout['latent_dim']} + time embedding {layout['nf']} (case study 1 has no label)")
    return found, networks


def build_part(spec: dict[str, Any]) -> nn.Module:
    """The lzn network of one plan entry (``ReleasePlan.networks[part]``), freshly initialised."""
    if spec["name"] == "label_anchors":
        return LabelAnchors(**spec["kwargs"])
    kwargs = dict(spec["kwargs"])
    if spec["name"].startswith("ncsnpp_"):
        kwargs = {"setting": "cifar10", **kwargs}
    return build(spec["name"], **kwargs)


def nin_to_conv(weight: Tensor) -> Tensor:
    """A NIN's ``W`` (in, out), applied as y = x W + b over channels -> the 1x1 conv weight (out, in, 1, 1)."""
    return weight.t()[:, :, None, None]


# ---- the name map ---------------------------------------------------------------------------------

_RES = (("GroupNorm_0", "norm1"), ("Conv_0", "conv1"), ("Dense_0", "cond"), ("GroupNorm_1", "norm2"),
        ("Conv_1", "conv2"), ("Conv_2", "shortcut"))
_ATTN = (("NIN_0", "q"), ("NIN_1", "k"), ("NIN_2", "v"), ("NIN_3", "proj"))


def _res_pairs(i: int, ours: str, block: nn.Module) -> Iterator[tuple[str, str, bool]]:
    for theirs, mine in _RES:
        if getattr(block, mine, None) is not None:
            for p in ("weight", "bias"):
                yield f"all_modules.{i}.{theirs}.{p}", f"{ours}.{mine}.{p}", False


def _attn_pairs(i: int, ours: str) -> Iterator[tuple[str, str, bool]]:
    for p in ("weight", "bias"):
        yield f"all_modules.{i}.GroupNorm_0.{p}", f"{ours}.norm.{p}", False
    for theirs, mine in _ATTN:
        yield f"all_modules.{i}.{theirs}.W", f"{ours}.{mine}.weight", True  # (in, out) -> (out, in, 1, 1)
        yield f"all_modules.{i}.{theirs}.b", f"{ours}.{mine}.bias", False


def _down_pairs(net: NCSNppEncoder | NCSNppDecoder, start: int) -> tuple[list[tuple[str, str, bool]], int]:
    """Stem, down levels and middle block of an lzn ``_DownPath`` (attribute ``down``) from index ``start``."""
    down = net.down
    out = [(f"all_modules.{start}.{p}", f"down.stem.{p}", False) for p in ("weight", "bias")]
    i = start + 1
    levels = cast(Iterable[_DownLevel], down.levels)  # _DownPath builds each of its levels as a _DownLevel
    for li, level in enumerate(levels):
        for bi, block in enumerate(level.blocks):
            out += _res_pairs(i, f"down.levels.{li}.blocks.{bi}", block)
            i += 1
            if level.attns is not None:
                out += _attn_pairs(i, f"down.levels.{li}.attns.{bi}")
                i += 1
        if level.downsample is not None:
            out += _res_pairs(i, f"down.levels.{li}.downsample", level.downsample)
            i += 1
    out += _res_pairs(i, "down.mid_block1", down.mid_block1)
    out += _attn_pairs(i + 1, "down.mid_attn")
    out += _res_pairs(i + 2, "down.mid_block2", down.mid_block2)
    return out, i + 3


def _encoder_pairs(net: NCSNppEncoder) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for h in range(len(net.heads)):
        for p in ("weight", "bias"):
            out += [(f"spatial_transformations.{h}.0.{p}", f"heads.{h}.0.{p}", False),
                    (f"latent_transformations.{h}.0.{p}", f"heads.{h}.3.{p}", False),
                    (f"latent_transformations.{h}.2.{p}", f"heads.{h}.5.{p}", False)]
    return out + _down_pairs(net, 0)[0]


def _decoder_pairs(net: NCSNppDecoder) -> list[tuple[str, str, bool]]:
    out = [(f"all_modules.{i}.{p}", f"cond_mlp.fc{i + 1}.{p}", False) for i in (0, 1) for p in ("weight", "bias")]
    down, i = _down_pairs(net, 2)
    out += down
    levels = cast(Iterable[_UpLevel], net.levels)  # NCSNppDecoder builds each of its up levels as an _UpLevel
    for li, level in enumerate(levels):
        for bi, block in enumerate(level.blocks):
            out += _res_pairs(i, f"levels.{li}.blocks.{bi}", block)
            i += 1
        if level.attn is not None:
            out += _attn_pairs(i, f"levels.{li}.attn")
            i += 1
        if level.upsample is not None:
            out += _res_pairs(i, f"levels.{li}.upsample", level.upsample)
            i += 1
    return out + [(f"all_modules.{i}.{p}", f"out.0.{p}", False) for p in ("weight", "bias")] + \
        [(f"all_modules.{i + 1}.{p}", f"out.2.{p}", False) for p in ("weight", "bias")]


def _resnet_pairs(net: nn.Module) -> list[tuple[str, str, bool]]:
    out = [("net.0.0.weight", "stem.0.weight", False)] + \
        [(f"net.0.1.0.{p}", f"stem.1.{p}", False) for p in ("weight", "bias")]
    for s in range(1, 5):
        for j, block in enumerate(getattr(net, f"layer{s}")):
            theirs, ours = f"net.{s}.blocks.{j}", f"layer{s}.{j}"
            if not isinstance(block.shortcut, nn.Identity):
                out.append((f"{theirs}.projection.shortcut.weight", f"{ours}.shortcut.0.weight", False))
                out += [(f"{theirs}.projection.bn.0.{p}", f"{ours}.shortcut.1.{p}", False) for p in ("weight", "bias")]
            for k in (1, 2, 3):
                out.append((f"{theirs}.net.{2 * k - 2}.weight", f"{ours}.conv{k}.weight", False))
                out += [(f"{theirs}.net.{2 * k - 1}.0.{p}", f"{ours}.gn{k}.{p}", False) for p in ("weight", "bias")]
    out += [("head.layers.0.weight", "head.fc1.weight", False), ("head.layers.3.weight", "head.fc2.weight", False)]
    return out + [(f"head.layers.{i}.{p}", f"head.gn{k}.{p}", False) for i, k in ((1, 1), (4, 2))
                  for p in ("weight", "bias")]


def _pairs_of(entry: str, net: nn.Module) -> list[tuple[str, str, bool]]:
    if entry == "label_anchor":
        return [("anchor", "weight", False)]
    # plan_release builds these entries by name: the decoder as ncsnpp_decoder, an encoder as
    # resnet50_encoder (the one with ``layer1``) or ncsnpp_encoder
    if entry == "decoder":
        return _decoder_pairs(cast(NCSNppDecoder, net))
    return _resnet_pairs(net) if hasattr(net, "layer1") else _encoder_pairs(cast(NCSNppEncoder, net))


PART = {"encoder": "encoder", "decoder": "decoder", "label_anchor": "label_anchors"}


def _match(entry: str, shapes: Mapping[str, tuple[int, ...]], net: nn.Module) -> list[Pair]:
    """Every release key of ``entry`` (but its buffers) onto exactly one lzn tensor of ``net``, shapes checked."""
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    table = {PREFIX + theirs: (mine, t) for theirs, mine, t in _pairs_of(entry, net)}
    assert len(table) == len(ours) and {m for m, _ in table.values()} == set(ours), f"incomplete {entry} name map"
    pairs, used = [], set()
    for key, shape in shapes.items():
        name = key[len(PREFIX):]
        if name in BUFFERS.get(entry, ()):
            continue
        if key not in table:
            raise ReleaseFormatError(f"{entry} key {key!r} {list(shape)} matches no tensor of lzn's "
                                     f"{type(net).__name__} (first unmatched key)")
        mine, transpose = table[key]
        want = ours[mine][1::-1] if transpose else ours[mine]  # a NIN stores (in, out) for conv (out, in, 1, 1)
        if tuple(shape) != want:
            how = " (stored (in, out))" if transpose else ""
            raise ReleaseFormatError(f"{entry} key {key!r} has shape {list(shape)}, expected {list(want)}{how} for "
                                     f"lzn's {PART[entry]}.{mine}")
        pairs.append(Pair(name, PART[entry], mine, transpose))
        used.add(key)
    missing = [k for k in table if k not in used]
    if missing:
        raise ReleaseFormatError(f"{entry} key {missing[0]!r} is missing ({len(missing)} of {len(table)} lzn tensors "
                                 "have no release tensor: a partial file?)")
    return pairs


def plan_release(shapes: Shapes, case_study: int | None = None) -> ReleasePlan:
    """Infer the case study and network configuration from ``shapes`` (entry -> key -> shape) and map every
    key onto lzn's networks (built on the meta device: no memory, no weights). Raises ReleaseFormatError."""
    if case_study is not None and case_study not in CASE_STUDIES:
        raise ReleaseFormatError(f"case_study must be 1, 2 or 3, got {case_study!r}")
    try:
        found, networks = _plan_networks(shapes, case_study)
    except ReleaseFormatError:
        raise
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:  # shapes that fit no rule above
        raise ReleaseFormatError(f"the networks' key names and shapes fit no release layout ({err!r})") from None
    plan = ReleasePlan(found, networks)
    with torch.device("meta"):
        for entry in ENTRIES:
            if entry in shapes:
                try:
                    net = build_part(networks[PART[entry]])
                except ValueError as err:
                    raise ReleaseFormatError(f"the inferred {entry} cannot be built by lzn: {err}") from None
                plan.pairs[entry] = _match(entry, shapes[entry], net)
    return plan

