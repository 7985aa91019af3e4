"""results.json and metrics.json: one schema (lzn.eval.results), the same figure under the same name."""

from __future__ import annotations

import json

import pytest

from lzn.eval.results import accuracy_row, flat_figures
from lzn.eval.suite import metric_rows

RUN_KEYS = {"recipe", "steps", "final_loss", "evaluated_on"}


def test_flat_figures_names_every_figure_and_no_setting():
    rows = [accuracy_row(0.0, 200, "batch", 0.9, headline=True), accuracy_row(1.0, 200, "batch", 0.8),
            accuracy_row(0.0, 200, "reference", 0.7), accuracy_row(1.0, 200, "reference", 0.6)]
    sections = {
        "classification": {"split": "test", "num_images": 10, "sweep": rows},
        "reconstruction": {"l2_per_image": 0.1, "num_images": 8, "split": "train", "sampler": "euler"},
        "representation": {"features": "backbone", "split": "test", "knn_k": 20, "knn_accuracy": 0.5,
                           "probe_accuracy": 0.4},
        "retrieval": {"pairs": 6, "distinct_captions": 4, "i2t_recall@1": 0.25, "i2t_recall@5": 1.0,
                      "t2i_recall@1": 0.5, "t2i_recall@5": 1.0, "seed": 0, "split": "test",
                      "note": "image -> text recall@5 is 1.0 whatever the model"},
        "text_to_image": {"t2i_class_consistency": 0.3, "prompt_class_consistency": 0.2, "split": "test"},
        "zones": {"latent_ks_mean": 0.1},  # lzn evaluate's only: no flat key
    }
    expected = {  # written out by hand: every figure once, with the split where results.json puts it
        "test_accuracy": 0.9, "test_accuracy_alpha_0": 0.9, "test_accuracy_alpha_1": 0.8,
        "test_accuracy_reference": 0.7, "test_accuracy_reference_alpha_0": 0.7, "test_accuracy_reference_alpha_1": 0.6,
        "recon_l2": 0.1, "knn_accuracy": 0.5, "probe_accuracy": 0.4,
        "test_pairs": 6, "test_distinct_captions": 4, "test_i2t_recall@1": 0.25, "test_i2t_recall@5": 1.0,
        "test_t2i_recall@1": 0.5, "test_t2i_recall@5": 1.0,
        "test_retrieval_note": "image -> text recall@5 is 1.0 whatever the model",
        "test_t2i_class_consistency": 0.3, "test_prompt_class_consistency": 0.2,
    }
    assert flat_figures(sections) == expected
    classifier = {"classification": {"split": "train", "num_images": 3,
                                     "sweep": [accuracy_row(None, None, "logits", 0.5, headline=True)]}}
    assert flat_figures(classifier) == {"train_accuracy": 0.5}
    assert ("accuracy", "0.5000", "3 train images, logits") in metric_rows(classifier)


@pytest.mark.parametrize("recipe", ["joint", "representation", "classifier"])
def test_a_runs_two_files_agree_key_for_key(tmp_path, recipe):
    """results.json's figures are metrics.json's sections, flattened; a later ``lzn evaluate`` of the same
    metric (joint: the accuracy sweep in the run's batches) finds the same numbers in the same places."""
    from lzn.cli.main import main
    from tests.recipes.tiny import sets

    run = tmp_path / recipe
    args = ["train", recipe, "--preset", "digits", "--out", str(run)]
    for item in sets(recipe):
        args += ["--set", item]
    assert main(args) == 0
    results = json.loads((run / "results.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    figures = {k: v for k, v in results.items() if k not in RUN_KEYS}
    assert figures and figures == flat_figures(metrics)
    assert metrics["evaluated_on"] == results["evaluated_on"] == "test"
    if recipe != "joint":
        return
    trained = {(r["alpha"], r["context"]): r["accuracy"] for r in metrics["classification"]["sweep"]}
    assert main(["evaluate", str(run), "--metrics", "accuracy", "--alphas", "0,1", "--batch-sizes", "200"]) == 0
    merged = json.loads((run / "metrics.json").read_text())
    again = {(r["alpha"], r["context"]): r["accuracy"] for r in merged["classification"]["sweep"]
             if r["batch_size"] in (200, None) and r["alpha"] in (0.0, 1.0)}
    assert again and all(again[k] == trained[k] for k in again if k in trained)
    assert merged["reconstruction"] == metrics["reconstruction"]  # not measured again: kept as it was
