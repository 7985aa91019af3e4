"""Recipes as settings of a few classes: ``nogen`` is joint with rf_weight 0, ``rf`` is generation without an
encoder; every LZN recipe's networks are its model's parts, held once."""

from __future__ import annotations

import pytest

from lzn.data import load_split
from lzn.recipes.common import data_info
from lzn.recipes.config import ConfigError
from lzn.recipes.generation import GenerationRecipe
from lzn.recipes.joint import JointRecipe
from lzn.recipes.runner import RECIPES, resolve_config
from tests.recipes.tiny import sets


@pytest.fixture(scope="module")
def info():
    return data_info(load_split(resolve_config("joint", "digits").data, "train"))


def test_nogen_and_rf_are_settings_not_subclasses(info):
    nogen = resolve_config("nogen", "digits", sets=sets("nogen"))
    joint = resolve_config("joint", "digits", sets=sets("nogen"))
    assert type(nogen) is type(joint) and nogen.rf_weight == 0 and joint.rf_weight == 1
    rec = RECIPES["nogen"](nogen, info)
    assert type(rec) is JointRecipe and rec.name == "nogen"
    assert list(rec.modules) == ["encoder", "label_anchors"] and rec.lzn.decoder is None
    rf = RECIPES["rf"](resolve_config("rf", "digits", sets=sets("rf")), info)
    assert type(rf) is GenerationRecipe and rf.name == "rf" and list(rf.modules) == ["decoder"]
    assert rf.lzn.encoder is None and rf.lzn.decoder.latent_dim == 0  # no latent input


def test_lzn_recipes_hold_their_networks_once(info):
    for name in ("generation", "joint", "representation", "text"):
        rec = RECIPES[name](resolve_config(name, "digits", sets=sets(name)), info)
        assert rec.modules == rec.lzn.parts()
        assert all(m is getattr(rec.lzn, n) for n, m in rec.modules.items())
        with pytest.raises(TypeError):
            rec.modules["extra"] = rec.lzn.encoder  # the model holds them: no second copy to drift from it


def test_values_that_contradict_a_recipe_are_refused():
    with pytest.raises(ConfigError, match=r"rf_weight: recipe 'nogen' is 'joint' with rf_weight=0.0; .*train recipe 'joint'"):
        resolve_config("nogen", "digits", sets=["rf_weight=1"])
    with pytest.raises(ConfigError, match=r"encoder: recipe 'rf' is 'generation' with encoder=null"):
        resolve_config("rf", "digits", sets=["encoder.name=small_encoder"])
    with pytest.raises(ConfigError, match=r"encoder.name: 'small_text_encoder' is a text network"):
        RECIPES["generation"](resolve_config("generation", "digits", sets=["encoder.name=small_text_encoder"]),
                              data_info(load_split(resolve_config("generation", "digits").data, "train")))
