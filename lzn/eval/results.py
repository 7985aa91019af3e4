"""One schema for a model's figures, two views of it: the sections that ``lzn evaluate`` writes to
``metrics.json`` (``evaluate_model``'s dict: ``classification``, ``reconstruction``, ``representation``,
``retrieval``, ``text_to_image``, ...) and the flat keys of a training run's ``results.json``
(``test_accuracy_alpha_1``, ``recon_l2``, ``test_i2t_recall@1``, ...). A run's end-of-run evaluation
builds the sections; :func:`flat_figures` derives the flat keys from them, so the two files name the same
figure with the same value and never drift apart (method.md §8)."""

from __future__ import annotations

from typing import Any

import torch

FIGURE_SECTIONS = ("classification", "reconstruction", "representation", "retrieval", "text_to_image")
"""The sections a training run's evaluation writes (``lzn evaluate`` adds generation and zones)."""

RETRIEVAL_FIGURES = ("pairs", "distinct_captions", "i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5",
                     "prompt_accuracy")
"""The figures of a ``retrieval`` section; its other keys are the settings they were measured with."""


def accuracy_row(alpha: float | None, batch_size: int | None, context: str, accuracy: float, *,
                 headline: bool = False) -> dict[str, Any]:
    """One row of a ``classification`` sweep (``lzn.eval.accuracy_sweep``'s form). ``headline`` marks the row
    that ``results.json`` also names ``{split}_accuracy`` (the run's own protocol); a classifier without
    latents has alpha and batch size None and context ``logits``."""
    row: dict[str, Any] = {"alpha": alpha, "batch_size": batch_size, "context": context, "accuracy": float(accuracy)}
    if headline:
        row["headline"] = True
    return row


def classification_section(rows: list[dict[str, Any]], split: str, labels: torch.Tensor) -> dict[str, Any]:
    """The ``classification`` section of ``rows`` measured on ``labels`` (N,) of ``split``."""
    return {"split": split, "num_images": int(labels.shape[0]), "sweep": rows}


def flat_figures(sections: dict[str, Any]) -> dict[str, Any]:
    """``results.json``'s flat keys for the figures in ``sections``: classification rows in batches ->
    ``{split}_accuracy_alpha_{a}``, over the reference bank -> ``{split}_accuracy_reference_alpha_{a}``, the
    headline row also ``{split}_accuracy`` (and the bank's row at the headline's alpha also
    ``{split}_accuracy_reference``); reconstruction -> ``recon_l2``; representation -> ``knn_accuracy``, ``probe_accuracy``; retrieval
    and text-to-image figures -> ``{split}_{figure}`` (a retrieval note -> ``{split}_retrieval_note``).
    Sections of other kinds, and settings inside a section, have no flat key."""
    out: dict[str, Any] = {}
    c = sections.get("classification")
    if c:
        split = c["split"]
        headline = next((r for r in c["sweep"] if r.get("headline")), None)
        if headline is not None:
            out[f"{split}_accuracy"] = headline["accuracy"]
        for r in c["sweep"]:
            if r["alpha"] is None:
                continue
            where = "_reference" if r["context"] == "reference" else ""
            out[f"{split}_accuracy{where}_alpha_{r['alpha']:g}"] = r["accuracy"]
            if where and headline is not None and r["alpha"] == headline["alpha"]:
                out[f"{split}_accuracy_reference"] = r["accuracy"]
    if "reconstruction" in sections:
        out["recon_l2"] = sections["reconstruction"]["l2_per_image"]
        if "l2_median" in sections["reconstruction"]:
            out["recon_l2_median"] = sections["reconstruction"]["l2_median"]
    rep = sections.get("representation")
    if rep:
        out.update({k: rep[k] for k in ("knn_accuracy", "probe_accuracy") if k in rep})
    r = sections.get("retrieval")
    if r:
        out.update({f"{r['split']}_{k}": r[k] for k in RETRIEVAL_FIGURES if k in r})
        if r.get("note"):
            out[f"{r['split']}_retrieval_note"] = r["note"]
    t = sections.get("text_to_image")
    if t:
        out.update({f"{t['split']}_{k}": v for k, v in t.items() if k != "split" and isinstance(v, (int, float))})
    return out
