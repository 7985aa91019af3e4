"""The settings the quality study (experiments/ablate.py) tests are real config keys: checked, trained,
exported and reloaded."""

from __future__ import annotations

import pytest
import torch

from lzn import LatentZoningNetwork
from lzn.recipes.config import ConfigError
from lzn.recipes.runner import resolve_config, train
from tests.recipes.tiny import sets


def test_simplex_label_anchors_and_a_normalised_head_train_export_and_reload(tmp_path):
    extra = ["label_init=simplex", "latent_dim=12", "encoder.kwargs.head_norm=true", "encoder.kwargs.dropout=0.15"]
    cfg = resolve_config("joint", "digits", sets=sets("joint") + extra)
    assert cfg.label_init == "simplex" and cfg.encoder.kwargs["head_norm"] is True
    train("joint", cfg, tmp_path / "run")
    model = LatentZoningNetwork.from_pretrained(str(tmp_path / "run" / "model"))
    assert isinstance(model.encoder.head[-1], torch.nn.GroupNorm)  # the saved config rebuilds the norm
    assert model.encoder.config.dropout == 0.15
    anchors = model.anchors(torch.zeros(3, 1, 8, 8))
    assert torch.allclose(anchors.norm(dim=1), torch.full((3,), 12**0.5), rtol=0.2)  # near sqrt(q) after 3 steps


def test_simplex_initial_label_anchors_are_equidistant_in_the_recipe():
    from lzn.data import load_split
    from lzn.recipes.common import data_info
    from lzn.recipes.runner import RECIPES

    cfg = resolve_config("nogen", "digits", sets=sets("nogen") + ["label_init=simplex", "latent_dim=9"])
    rec = RECIPES["nogen"](cfg, data_info(load_split(cfg.data, "train")))
    w = rec.lzn.label_anchors.weight.detach()
    d = torch.cdist(w, w)[~torch.eye(10, dtype=torch.bool)]
    assert (d.max() - d.min()).item() < 1e-4


@pytest.mark.parametrize("q,simplex", [(9, True), (16, True), (8, False)])
def test_auto_label_init_is_the_simplex_where_it_fits_and_normal_below(q, simplex):
    from lzn.data import load_split
    from lzn.recipes.common import data_info
    from lzn.recipes.runner import RECIPES

    cfg = resolve_config("nogen", "digits", sets=sets("nogen") + ["label_init=auto", f"latent_dim={q}"])
    rec = RECIPES["nogen"](cfg, data_info(load_split(cfg.data, "train")))
    w = rec.lzn.label_anchors.weight.detach()
    d = torch.cdist(w, w)[~torch.eye(10, dtype=torch.bool)]
    assert ((d.max() - d.min()).item() < 1e-4) == simplex


def test_the_digits_preset_takes_the_studys_settings():
    for recipe in ("joint", "nogen"):
        cfg = resolve_config(recipe, "digits")
        assert (cfg.align_form, cfg.label_init) == ("log", "auto")
    assert resolve_config("joint", "cifar10").label_init == "normal"  # the paper's recipe stays the paper's
    assert resolve_config("joint", "cifar10").align_noise_scale is None


def test_the_fashion_preset_aligns_the_zone_centres():
    joint, nogen = resolve_config("joint", "fashion"), resolve_config("nogen", "fashion")
    assert (joint.align_form, joint.label_init, joint.align_noise_scale, joint.noise_scale) == ("log", "auto", 0.0, 1.0)
    assert (nogen.align_form, nogen.label_init, nogen.noise_scale) == ("log", "auto", 0.0)
    assert joint.eval_noise_scale == nogen.eval_noise_scale == 0.0


@pytest.mark.parametrize("extra,match", [
    (["label_init=simplex", "latent_dim=8"], "label_init: a simplex of 10 label anchors needs latent_dim >= 9, got 8; "
                                             "use label_init: auto or normal"),
    (["label_init=orthogonal"], "label_init: 'orthogonal' is not one of"),
    (["encoder.kwargs.head_norm=3"], "head_norm"),
    (["align_noise_scale=-0.5"], "align_noise_scale"),
    (["data.balanced=maybe"], "data.balanced: expected true or false"),
])
def test_bad_quality_settings_are_config_errors_naming_the_key(extra, match):
    with pytest.raises(ConfigError, match=match):
        cfg = resolve_config("joint", "digits", sets=sets("joint") + extra)
        from lzn.data import load_split
        from lzn.recipes.common import data_info
        from lzn.recipes.runner import RECIPES

        RECIPES["joint"](cfg, data_info(load_split(cfg.data, "train")))


@pytest.mark.parametrize("recipe", ["joint", "nogen"])
def test_alignment_latents_at_the_zone_centres_while_the_decoder_keeps_the_whole_zone(recipe):
    """align_noise_scale 0: the alignment sees each anchor's zone centre (no noise drawn into it), the
    decoder its latents at noise_scale; null: one flow, shared (the paper)."""
    from lzn.data import load_split
    from lzn.recipes.common import data_info
    from lzn.recipes.runner import RECIPES

    def recipe_with(extra):  # type: ignore[no-untyped-def]
        cfg = resolve_config(recipe, "digits", sets=sets(recipe) + extra)
        torch.manual_seed(0)
        return RECIPES[recipe](cfg, data_info(load_split(cfg.data, "train")))

    rec = recipe_with(["align_noise_scale=0.0"])
    anchors = torch.randn(16, 8)
    torch.manual_seed(1)
    latent, align = rec.latents(anchors)
    torch.manual_seed(2)  # other noise: the zone centres do not move
    _, align2 = rec.latents(anchors)
    centres = rec.lzn.latents_from_anchors(anchors, noise_scale=0.0)
    torch.testing.assert_close(align, centres, rtol=0, atol=0)
    torch.testing.assert_close(align2, centres, rtol=0, atol=0)
    if recipe == "nogen":
        assert latent is None  # no decoder: one flow, the alignment's
    else:
        assert latent is not None and (latent - centres).abs().max() > 0.1  # alpha 1: spread over the zone
        shared, same = recipe_with([]).latents(anchors)
        assert shared is same  # the default: the decoder's latents are the alignment's, one flow


def test_class_balanced_batches_reach_the_recipes_loader():
    from lzn.data import batch_at, load_split
    from lzn.recipes.common import data_info
    from lzn.recipes.runner import RECIPES

    for recipe in ("nogen", "classifier"):
        cfg = resolve_config(recipe, "digits", sets=sets(recipe) + ["data.balanced=true", "batch_size=50"])
        data = load_split(cfg.data, "train")
        rec = RECIPES[recipe](cfg, data_info(data))
        rec.attach_data(data)
        _, y = rec.batches(3)
        assert torch.equal(y, data.labels[batch_at(3, len(data), 50, cfg.train.seed, labels=data.labels)])
        assert torch.bincount(y, minlength=10).max() <= 5 + 2  # 10 classes of about equal size: 5 +- 2 each
