"""Image-text figures (lzn/eval/text.py) against a naive transcription of method.md §12.8 on hand-made score
tables, the note on recall that is 1.0 whatever the model, and how the section merges and prints."""

from __future__ import annotations

import pytest
import torch

from lzn.eval.suite import merge_results, metric_rows
from lzn.eval.text import retrieval_figures, trivial_recall_note

CAPTIONS = ["a one", "a two", "a one", "a thin two", "a two", "a fat one", "a one"]  # 7 pairs, 4 distinct
PROMPTS = ["the digit one", "the digit two", "the digit three"]
VOCAB = sorted(set(CAPTIONS)) + PROMPTS


def ids(n: int) -> torch.Tensor:
    """Images that carry their own index: (n, 1, 1, 1), so a score table can look them up."""
    return torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1)


def table_scores(i2t: torch.Tensor, t2i: torch.Tensor):
    """Score functions reading tables i2t (images, VOCAB) and t2i (VOCAB, images) by image index and text."""
    def text_scores(images, texts):  # (N, M)
        rows = images.flatten().long()
        return i2t[rows][:, [VOCAB.index(t) for t in texts]]

    def image_scores(texts, images):  # (M, N)
        cols = images.flatten().long()
        return t2i[[VOCAB.index(t) for t in texts]][:, cols]

    return text_scores, image_scores


def naive_figures(i2t, t2i, captions, prompt_labels, ks=(1, 5)):
    """Recall by counting, per query, the wrong candidates that score at least as high as its best correct
    one (ties count against the query); prompt accuracy by an argmax per image."""
    distinct = list(dict.fromkeys(captions))
    out = {"pairs": float(len(captions)), "distinct_captions": float(len(distinct))}
    i2t_ranks = []
    for i, own in enumerate(captions):  # image i ranks the distinct captions; its own is the one correct
        mine = i2t[i, VOCAB.index(own)]
        i2t_ranks.append(sum(1 for c in distinct if c != own and i2t[i, VOCAB.index(c)] >= mine))
    t2i_ranks = []
    for c in distinct:  # caption c ranks the images; every image captioned c is correct
        row = t2i[VOCAB.index(c)]
        best = max(float(row[j]) for j, own in enumerate(captions) if own == c)
        t2i_ranks.append(sum(1 for j, own in enumerate(captions) if own != c and float(row[j]) >= best))
    for name, ranks in (("i2t", i2t_ranks), ("t2i", t2i_ranks)):
        for k in ks:
            out[f"{name}_recall@{k}"] = sum(r < k for r in ranks) / len(ranks)
    hits = 0
    for j, y in enumerate(prompt_labels):
        scores = [float(i2t[j, VOCAB.index(p)]) for p in PROMPTS]
        hits += scores.index(max(scores)) == y
    out["prompt_accuracy"] = hits / len(prompt_labels)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_figures_match_a_naive_count_on_a_hand_made_score_table(seed):
    gen = torch.Generator().manual_seed(seed)
    n_prompt = 11  # prompt images: the 7 pair images and 4 more, in chunks of 3 (the last one smaller)
    i2t = torch.rand(n_prompt, len(VOCAB), generator=gen)
    i2t[:, : len(VOCAB) - len(PROMPTS)] = i2t[:, : len(VOCAB) - len(PROMPTS)].round(decimals=1)  # ties
    t2i = torch.rand(len(VOCAB), n_prompt, generator=gen).round(decimals=1)
    labels = torch.randint(0, len(PROMPTS), (n_prompt,), generator=gen)
    text_scores, image_scores = table_scores(i2t, t2i)
    got = retrieval_figures(text_scores, image_scores, ids(len(CAPTIONS)), CAPTIONS, prompts=PROMPTS, labels=labels,
                            prompt_images=ids(n_prompt), eval_batch_size=3)
    want = naive_figures(i2t, t2i, CAPTIONS, labels.tolist())
    assert list(got) == list(want)  # the keys and their order
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def test_a_perfect_table_scores_one_and_prompts_need_labels():
    distinct = list(dict.fromkeys(CAPTIONS))
    i2t = torch.zeros(len(CAPTIONS), len(VOCAB))
    t2i = torch.zeros(len(VOCAB), len(CAPTIONS))
    for i, c in enumerate(CAPTIONS):
        i2t[i, VOCAB.index(c)] = 1.0
        t2i[VOCAB.index(c), i] = 1.0
    text_scores, image_scores = table_scores(i2t, t2i)
    got = retrieval_figures(text_scores, image_scores, ids(len(CAPTIONS)), CAPTIONS, eval_batch_size=4)
    assert got == {"pairs": 7.0, "distinct_captions": float(len(distinct)), "i2t_recall@1": 1.0, "i2t_recall@5": 1.0,
                   "t2i_recall@1": 1.0, "t2i_recall@5": 1.0}  # no prompts: no prompt accuracy
    with pytest.raises(ValueError, match="prompts without labels"):
        retrieval_figures(text_scores, image_scores, ids(7), CAPTIONS, prompts=PROMPTS, eval_batch_size=4)
    with pytest.raises(ValueError, match="6 captions for 7 images"):
        retrieval_figures(text_scores, image_scores, ids(7), CAPTIONS[:6], eval_batch_size=4)


@pytest.mark.parametrize("captions", [
    ["a", "a", "a"],  # one caption: every figure
    ["a", "b", "a"],  # 2 distinct: image -> text @5; text -> image @5 (at most 2 wrong images)
    CAPTIONS,  # 4 distinct of 7: image -> text @5 only
    [str(i) for i in range(12)],  # 12 distinct: none
])
def test_the_note_names_exactly_the_figures_a_constant_score_table_gets_right(captions):
    """Ties count against the query, so a constant table scores 1.0 exactly where a figure is 1.0 whatever
    the model: those and only those are named in the note."""
    vocab = list(dict.fromkeys(captions))
    constant_text = lambda images, texts: torch.ones(images.shape[0], len(texts))  # noqa: E731
    constant_image = lambda texts, images: torch.ones(len(texts), images.shape[0])  # noqa: E731
    got = retrieval_figures(constant_text, constant_image, ids(len(captions)), captions, eval_batch_size=5)
    note = trivial_recall_note(captions).get("note", "")
    for key, name in (("i2t", "image -> text"), ("t2i", "text -> image")):
        for k in (1, 5):
            assert (got[f"{key}_recall@{k}"] == 1.0) == (f"{name} recall@{k}" in note), (key, k, note)
    assert (note == "") == (len(vocab) > 5)
    if note:
        assert f"{len(vocab)} distinct captions among {len(captions)} pairs" in note and "says nothing" in note


def test_the_section_merges_by_metric_and_prints_its_note_on_the_figures_it_names():
    section = {"pairs": 7.0, "distinct_captions": 4.0, "i2t_recall@1": 0.25, "i2t_recall@5": 1.0,
               "t2i_recall@1": 0.5, "t2i_recall@5": 0.75, "prompt_accuracy": 0.5, "prompt_images": 11,
               "prompt": "the digit {cls}", "captions": "composed", "split": "test",
               "settings": "defaults (a bare model folder has no run settings)", **trivial_recall_note(CAPTIONS)}
    first = {"evaluated_on": "test", "retrieval": section}
    merged = merge_results(first, {"evaluated_on": "test", "zones": {"latent_ks_mean": 0.1, "latent_mean_norm": 0.0,
                                                                     "latent_cov_max_abs_dev": 0.0, "round_trip": {},
                                                                     "split": "test"}})
    assert merged["retrieval"] == section  # a later run of other metrics keeps the figures
    again = merge_results(merged, {"evaluated_on": "test", "retrieval": {**section, "i2t_recall@1": 0.5}})
    assert again["retrieval"]["i2t_recall@1"] == 0.5 and "retrieval:retrieval" not in again
    rows = {name: detail for name, _, detail in metric_rows(first)}
    assert "note:" in rows["image -> text recall@5"] and "note:" not in rows["image -> text recall@1"]
    assert "settings: defaults" in rows["image -> text recall@1"]
    assert rows["prompt accuracy"] == "11 test images, prompt 'the digit {cls}'"
