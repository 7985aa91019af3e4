"""Every recipe: two steps on CPU with tiny networks, finite gradients into every parameter, then the
full train -> evaluate -> export path."""

from __future__ import annotations

import json

import pytest
import torch

from lzn import LatentZoningNetwork
from lzn.data import load_split
from lzn.eval import classifier_judge
from lzn.recipes.common import data_info
from lzn.recipes.runner import RECIPES, resolve_config, train
from tests.recipes.tiny import sets


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_step_gives_finite_gradients_to_every_parameter(name):
    cfg = resolve_config(name, "digits", sets=sets(name))
    data = load_split(cfg.data, "train")
    rec = RECIPES[name](cfg, data_info(data))
    rec.attach_data(data)
    torch.manual_seed(0)
    for step in range(2):
        out = rec.step(rec.batches(step), step)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        for m in rec.modules.values():
            m.zero_grad(set_to_none=True)
        out.loss.backward()
    for mname, module in rec.modules.items():
        for pname, p in module.named_parameters():
            if not p.requires_grad:
                continue
            assert p.grad is not None, f"{name}: {mname}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {mname}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", ["joint", "rf", "representation", "classifier"])
def test_train_evaluate_export_and_reload(name, tmp_path):
    cfg = resolve_config(name, "digits", sets=sets(name))
    res = train(name, cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["steps"] == 3 and saved == json.loads(json.dumps(res))
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "run.yaml").exists()
    if name == "joint":
        assert 0.0 <= res["test_accuracy"] <= 1.0 and res["recon_l2"] > 0
        assert (tmp_path / "run" / "samples.png").exists() and (tmp_path / "run" / "model" / "config.json").exists()
    if name == "representation":
        assert {"knn_accuracy", "probe_accuracy"} <= set(res)
    if name == "classifier":
        assert 0.0 <= res["test_accuracy"] <= 1.0
    run = tmp_path / "run"
    if name == "classifier":  # no LZN: its network is exported as a judge, which reproduces the run's accuracy
        assert not (run / "model").exists()
        test = load_split(cfg.data, "test")
        assert float((classifier_judge(run / "classifier")(test.images) == test.labels).float().mean()) == \
            res["test_accuracy"]
    else:  # the exported model holds every network the recipe trained
        model = LatentZoningNetwork.from_pretrained(str(run / "model"))
        assert set(model.parts()) == set(RECIPES[name](cfg, data_info(load_split(cfg.data, "train"))).modules)
