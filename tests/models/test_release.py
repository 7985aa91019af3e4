"""Importing the authors' checkpoints (lzn.models.release) against the release's own outputs.

``tests/data/release`` holds a real case-study-3 checkpoint in the release's layout (``tiny_cs3.pt``: reduced
widths, random weights, live and EMA sets), the release networks' outputs on fixed inputs in float32 and
float64 (``tiny_cs3_io.pt``), and the key lists of the three full-size published networks (README.md there).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from lzn.core import zones
from lzn.models import LatentZoningNetwork, import_release, ncsnpp_decoder, ncsnpp_encoder, resnet50_encoder
from lzn.models import release, release_layout
from lzn.models.label_anchors import LabelAnchors
from lzn.models.release import CIFAR10_CLASSES, ReleaseFormatError, release_model
from lzn.models.release_layout import PREFIX, plan_release

DATA = Path(__file__).resolve().parents[1] / "data" / "release"
CKPT = DATA / "tiny_cs3.pt"


@pytest.fixture(scope="module")
def io() -> dict:
    return torch.load(DATA / "tiny_cs3_io.pt", weights_only=True)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, LatentZoningNetwork]:
    """The tiny checkpoint imported with no configuration given, both weight sets, read back from disk."""
    out = {}
    for weights in ("ema", "live"):
        folder = tmp_path_factory.mktemp("release") / weights
        plan = import_release(CKPT, folder, weights=weights)
        assert plan.case_study == 3 and plan.iteration == 2
        out[weights] = LatentZoningNetwork.from_pretrained(str(folder))
    return out


def _run(model: LatentZoningNetwork, inputs: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The release's calls in lzn's conventions: decoder(xt, t, latent, class) = release decoder(latent,
    one_hot(class), t, xt); label decoding = nearest label anchor (release get_label)."""
    m = model.to(dtype)
    with torch.no_grad():
        enc = m.encoder
        skips, mid = enc._trunk(inputs["images"].to(dtype))
        maps = [x for x, on in zip(skips + [mid], enc.head_on) if on]
        return {
            "anchors": enc(inputs["images"].to(dtype)),
            "heads": torch.stack([head(x) for head, x in zip(enc.heads, maps)]),  # (21, B, q)
            "velocity": m.decoder(inputs["xt"].to(dtype), inputs["t"].to(dtype), inputs["latent"].to(dtype),
                                  inputs["classes"]),
            "label_anchors": m.label_anchors.weight.detach().clone(),
            "decoded": zones.nearest(inputs["label_points"].to(dtype), m.label_anchors.weight),
        }


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize("weights", ["ema", "live"])
def test_imported_networks_equal_the_release_outputs(imported, io, weights):
    ref = io["outputs"][weights]
    model = imported[weights]
    assert model.class_names == CIFAR10_CLASSES and model.flow.solver == "dpm3" and model.flow.steps == 20
    assert model.label_anchors is not None and model.label_anchors.num_classes == 10
    out64 = _run(model, io["inputs"], torch.float64)
    # float64: the same arithmetic up to summation order (measured: about 1e-14 relative)
    assert _rel(out64["anchors"], ref["float64"]["anchors"]) < 1e-10
    assert _rel(out64["heads"], ref["float64"]["debug"]["encoder_head_outputs"]) < 1e-10
    assert _rel(out64["velocity"], ref["float64"]["velocity"]) < 1e-10
    assert torch.equal(out64["label_anchors"], ref["float64"]["label_anchors"])
    assert torch.equal(out64["decoded"], ref["float64"]["label_points_decoded"])
    # float32: within 3x the release's own float32 error (max |float32 - float64| of its networks)
    out32 = _run(model, io["inputs"], torch.float32)
    for name in ("anchors", "velocity"):
        err = float((out32[name] - ref["float32"][name]).abs().max())
        assert err <= 3 * ref["float32_err"][name], (name, err, ref["float32_err"][name])
    assert torch.equal(out32["label_anchors"], ref["float32"]["label_anchors"])
    assert torch.equal(out32["decoded"], ref["float32"]["label_points_decoded"])


def test_ema_and_live_weights_differ(imported, io):
    """The two weight sets are really different tensors (so the test above checks both EMA and live)."""
    ema, live = imported["ema"].float(), imported["live"].float()
    assert not torch.equal(ema.decoder.cond_mlp.fc1.weight, live.decoder.cond_mlp.fc1.weight)
    assert _rel(io["outputs"]["ema"]["float64"]["velocity"], io["outputs"]["live"]["float64"]["velocity"]) > 1e-2


@pytest.mark.parametrize("break_it", ["swap_q_k", "no_transpose"])
def test_a_wrong_mapping_of_square_attention_matrices_is_caught(monkeypatch, io, break_it):
    """Square NIN matrices have the same shape either way round, so only the outputs can tell."""
    if break_it == "swap_q_k":
        swapped = (("NIN_1", "q"), ("NIN_0", "k"), ("NIN_2", "v"), ("NIN_3", "proj"))
        monkeypatch.setattr(release_layout, "_ATTN", swapped)
    else:
        monkeypatch.setattr(release, "nin_to_conv", lambda w: w[:, :, None, None])  # (in, out) read as (out, in)
    model, _ = release_model(CKPT, weights="live")
    out = _run(model, io["inputs"], torch.float64)
    assert _rel(out["velocity"], io["outputs"]["live"]["float64"]["velocity"]) > 1e-6


def _tsv(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for line in (DATA / name).read_text().splitlines():
        key, shape = line.split("\t")
        entry, rest = key.split("/", 1)
        shapes.setdefault(entry, {})[rest] = tuple(json.loads(shape))
    return shapes


def _meta_shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name, case_study", [("cifar10_cs1_keys.tsv", 1), ("cifar10_cs3_keys.tsv", 3),
                                              ("imagenet_cs2_keys.tsv", 2)])
def test_full_size_key_lists_map_one_to_one_onto_the_preset_networks(name, case_study):
    shapes = _tsv(name)
    plan = plan_release(shapes)
    assert plan.case_study == case_study
    with torch.device("meta"):  # no memory, no weights
        if case_study == 2:
            expected = {"encoder": resnet50_encoder(latent_dim=256)}
        else:
            expected = {"encoder": ncsnpp_encoder("cifar10", latent_dim=200),
                        "decoder": ncsnpp_decoder("cifar10", latent_dim=200, num_classes=10 if case_study == 3 else 0)}
            if case_study == 3:
                expected["label_anchors"] = LabelAnchors(10, 200)
    counts = {"encoder": 0, "decoder": 0, "label_anchors": 0}
    for entry, pairs in plan.pairs.items():
        part = pairs[0].part
        ours = _meta_shapes(expected[part])
        targets = [p.lzn for p in pairs]
        assert sorted(targets) == sorted(ours)  # one to one: every lzn tensor once, no other
        release_keys = [p.release for p in pairs]
        assert len(set(release_keys)) == len(release_keys)
        assert set(PREFIX + k for k in release_keys) == set(shapes[entry]) - {PREFIX + "sigmas"}
        for p in pairs:
            theirs = shapes[entry][PREFIX + p.release]
            assert (tuple(reversed(theirs)) + (1, 1) if p.transpose else theirs) == ours[p.lzn], p
        counts[part] = sum(torch.Size(s).numel() for s in ours.values())
    if case_study == 2:
        assert counts["encoder"] == 28_231_232 and set(plan.pairs) == {"encoder"}
    else:  # the release's parameter counts (tests/data/release/README.md)
        assert counts["encoder"] == 49_790_260
        assert counts["decoder"] == (61_911_939 if case_study == 3 else 61_906_819)
        assert counts["label_anchors"] == (2000 if case_study == 3 else 0)
        assert sum(p.transpose for p in plan.pairs["encoder"]) == 20
        assert sum(p.transpose for p in plan.pairs["decoder"]) == 24
        kwargs = plan.networks["encoder"]["kwargs"]
        assert (kwargs["nf"], kwargs["ch_mult"], kwargs["num_res_blocks"], kwargs["attn_resolutions"],
                kwargs["image_size"], kwargs["head_max_resolution"]) == (128, (1, 2, 2, 2), 4, (16,), 32, None)


# ---- broken inputs: one clear error, nothing written -----------------------------------------------

def _state() -> dict:
    return torch.load(CKPT, weights_only=True)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message fragment)."""
    blob = CKPT.read_bytes()
    files: dict[str, tuple[Path, str]] = {}

    def save(name: str, obj, match: str) -> None:
        torch.save(obj, tmp / f"{name}.pt")
        files[name] = (tmp / f"{name}.pt", match)

    (tmp / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    files["truncated"] = (tmp / "truncated.pt", "not a torch.save file: no zip archive")
    (tmp / "random.pt").write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
                                    .to(torch.uint8).numpy().tobytes())
    files["random"] = (tmp / "random.pt", "not a torch.save file: no zip archive")
    save("foreign_state_dict", torch.nn.Linear(3, 4).state_dict(), "no 'encoder' entry")
    save("pickled_module", {"encoder": torch.nn.Linear(3, 4)}, "holds a pickled torch.nn.modules.linear.Linear")
    corrupt = bytearray(blob)
    corrupt[30:300] = bytes(270)  # the pickle's start, inside an intact zip archive
    (tmp / "corrupt.pt").write_bytes(bytes(corrupt))
    files["corrupt"] = (tmp / "corrupt.pt", "could not be read by torch.load: the file is corrupt")
    base = _state()
    s = copy.deepcopy(base)
    del s["decoder"]["model.module.all_modules.46.NIN_2.b"]
    save("missing_key", s, "decoder key 'model.module.all_modules.46.NIN_2.b' is missing")
    s = copy.deepcopy(base)
    s["encoder"]["model.module.all_modules.3.Conv_1.weight"] = torch.zeros(4, 4, 1, 1)
    save("wrong_shape", s, r"encoder key 'model.module.all_modules.3.Conv_1.weight' has shape \[4, 4, 1, 1\], "
                           r"expected \[4, 4, 3, 3\] for lzn's encoder.down.levels.0.blocks.2.conv2.weight")
    s = copy.deepcopy(base)
    s["encoder"]["model.module.all_modules.7.NIN_0.W"] = torch.zeros(8, 4)
    save("wrong_nin_shape", s, r"NIN_0.W' has shape \[8, 4\], expected \[8, 8\] \(stored \(in, out\)\)")
    s = copy.deepcopy(base)
    s["decoder"]["model.module.extra.weight"] = torch.zeros(3)
    save("extra_key", s, "decoder key 'model.module.extra.weight' .* matches no tensor")
    s = copy.deepcopy(base)
    s["encoder"] = {k.removeprefix(PREFIX): v for k, v in s["encoder"].items()}
    save("no_prefix", s, "lacks the release's 'model.module.' prefix")
    s = copy.deepcopy(base)
    del s["decoder"]
    save("partial", s, "no 'decoder' entry")
    s = copy.deepcopy(base)
    s["decoder_ema"]["shadow_params"].pop()
    save("short_ema", s, "decoder_ema holds 563 tensors, the decoder has 564 parameters")
    s = copy.deepcopy(base)
    s["label_anchor"]["model.module.anchor"][0, 0] = float("nan")
    s["label_anchor_ema"]["shadow_params"][0][0, 0] = float("nan")
    save("nan", s, "label_anchor anchor .* not finite")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", ["truncated", "random", "corrupt", "foreign_state_dict", "pickled_module",
                                  "missing_key", "wrong_shape", "wrong_nin_shape", "extra_key", "no_prefix", "partial",
                                  "short_ema", "nan"])
def test_broken_files_are_refused_in_one_line_and_nothing_is_written(bad_files, tmp_path, name):
    path, match = bad_files[name]
    out = tmp_path / "model"
    with pytest.raises(ReleaseFormatError, match=match) as info:
        import_release(path, out)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary left behind


def test_live_import_needs_no_ema_and_a_named_case_study_must_match(tmp_path):
    s = _state()
    for entry in ("encoder", "decoder", "label_anchor"):
        del s[f"{entry}_ema"]
    torch.save(s, tmp_path / "no_ema.pt")
    with pytest.raises(ReleaseFormatError, match="no encoder_ema shadow_params .* weights='live'"):
        release_model(tmp_path / "no_ema.pt", weights="ema")
    model, plan = release_model(tmp_path / "no_ema.pt", weights="live", case_study=3)
    assert plan.case_study == 3 and model.decoder is not None
    with pytest.raises(ReleaseFormatError, match="holds case study 3's networks .* not case study 1's"):
        release_model(CKPT, case_study=1)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(ValueError, match="not an empty folder"):
        import_release(CKPT, tmp_path / "taken")


def test_cifar10_class_names_are_the_data_loaders():
    from lzn.data.cifar import CIFAR10_CLASSES as LOADER_CLASSES

    assert CIFAR10_CLASSES == LOADER_CLASSES


def test_a_case_study_2_file_in_the_release_layout_imports_as_the_resnet(tmp_path):
    """No case-study-2 checkpoint is small enough to ship: write one in the release's layout (key order and
    shapes of imagenet_cs2_keys.tsv) from a random lzn ResNet-50 and import it back, live and EMA."""
    shapes = _tsv("imagenet_cs2_keys.tsv")
    plan = plan_release(shapes)
    torch.manual_seed(0)
    source = resnet50_encoder(latent_dim=256).state_dict()
    live = {PREFIX + p.release: source[p.lzn] for p in plan.pairs["encoder"]}
    assert list(live) == list(shapes["encoder"])  # the file's key order is the release's parameter order
    shadow = [v + 1.0 for v in live.values()]
    torch.save({"encoder": live, "optimizer": {}, "lr_scheduler": {}, "epoch": 32051, "iteration": 5_000_000,
                "encoder_ema": {"decay": 0.9999, "num_updates": 5_000_000, "shadow_params": shadow},
                "grad_scalar": {}}, tmp_path / "cs2.pt")
    del shadow, live
    for weights, offset in (("live", 0.0), ("ema", 1.0)):
        model, got = release_model(tmp_path / "cs2.pt", weights=weights, case_study=2)
        assert got.case_study == 2 and got.iteration == 5_000_000 and "ResNet-50" in got.describe()
        assert model.decoder is None and model.label_anchors is None and model.class_names is None
        assert (model.flow.solver, model.flow.steps, model.encoder.image_size) == ("euler", 20, 224)
        for key, value in model.encoder.state_dict().items():
            assert torch.equal(value, source[key] + offset), key
    (tmp_path / "cs2.pt").unlink()
