"""Every preset resolves for every recipe it names, with only valid keys."""

import pytest
import yaml
from importlib import resources

from lzn.recipes.runner import PRESETS, RECIPES, preset_overrides, resolve_config


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_sections_resolve(preset):
    text = resources.files("lzn.recipes").joinpath("presets", f"{preset}.yaml").read_text()
    sections = [k for k in yaml.safe_load(text) if k != "common"]
    assert set(sections) <= set(RECIPES)
    for recipe in sections:
        cfg = resolve_config(recipe, preset)
        assert cfg.data.name == preset_overrides(preset, recipe)["data"]["name"]


def test_cifar10_preset_uses_paper_settings():
    cfg = resolve_config("joint", "cifar10")
    assert cfg.batch_size == 2000 and cfg.latent_dim == 200 and cfg.flow.solver == "dpm3"
    assert cfg.train.budgets == {"decoder": 60000, "encoder": 200000, "label_anchors": 200000}
    assert cfg.train.lr == {"encoder": 5e-5, "decoder": 2e-3, "label_anchors": 1e-4}
