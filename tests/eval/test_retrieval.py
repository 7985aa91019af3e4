"""Retrieval metrics against a naive loop written here, closed cases, and ties counted against the query."""

from __future__ import annotations

import pytest
import torch

from lzn.eval.retrieval import recall_at_k, relevant_rank, same_text, unique_texts


def naive_recall(scores: torch.Tensor, correct: list[set[int]], k: int) -> float:
    """Sort every row (wrong candidates first among equals: ties count against the query), look for a
    correct index among the first k."""
    hits = 0
    for i, row in enumerate(scores.tolist()):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c in correct[i]))
        hits += any(c in correct[i] for c in order[:k])
    return hits / len(correct)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_a_naive_loop_with_single_and_multiple_targets(seed):
    gen = torch.Generator().manual_seed(seed)
    q, c = 37, 23
    scores = torch.randn(q, c, generator=gen).round(decimals=1)  # rounding makes ties
    targets = torch.randint(0, c, (q,), generator=gen)
    got = recall_at_k(scores, targets, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert got[f"recall@{k}"] == pytest.approx(naive_recall(scores, [{int(t)} for t in targets], k))
    rel = torch.rand(q, c, generator=gen) < 0.15
    rel[torch.arange(q), targets] = True  # at least one per row
    got = recall_at_k(scores, rel, ks=(1, 5))
    correct = [set(torch.nonzero(r).flatten().tolist()) for r in rel]
    for k in (1, 5):
        assert got[f"recall@{k}"] == pytest.approx(naive_recall(scores, correct, k))


def test_closed_cases_perfect_reversed_and_constant_scores():
    n = 10
    eye = torch.eye(n)
    assert recall_at_k(eye, torch.arange(n)) == {"recall@1": 1.0, "recall@5": 1.0}
    assert recall_at_k(-eye, torch.arange(n)) == {"recall@1": 0.0, "recall@5": 0.0}  # correct is last
    # constant scores: every candidate ties, and ties count against the query
    assert recall_at_k(torch.zeros(n, n), torch.arange(n), ks=(1, 9, 10)) == \
        {"recall@1": 0.0, "recall@9": 0.0, "recall@10": 1.0}
    assert relevant_rank(-eye, torch.arange(n)).tolist() == [n - 1] * n


def test_bad_inputs_raise_with_the_expected_form():
    with pytest.raises(ValueError, match="targets must lie"):
        recall_at_k(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="at least one correct"):
        recall_at_k(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(torch.zeros(2, 3), torch.tensor([0, 1]), ks=(0,))


def test_text_grouping_helpers():
    texts = ["a two", "a one", "a two", "a three", "a one"]
    uniq, which = unique_texts(texts)
    assert uniq == ["a two", "a one", "a three"] and which.tolist() == [0, 1, 0, 2, 1]
    match = same_text(texts, uniq)
    assert match.shape == (5, 3) and torch.equal(match, torch.nn.functional.one_hot(which, 3).bool())
