"""Cross-modal retrieval metrics: recall@k of a score matrix with one or several correct candidates per
query. Pure functions of tensors (and strings, to group identical captions); nothing here needs a model.

Conventions: ``scores`` (Q, C) rank candidates per query, higher is better (probabilities, cosine
similarities). ``targets`` is either (Q,) the index of each query's one correct candidate, or (Q, C)
bool, every correct candidate (composed captions repeat, so an image has as many correct captions as
there are copies of its own). Ties count against the query: a correct candidate's rank is the number
of wrong candidates that score at least as high, so a constant score matrix earns no recall beyond
what its shape forces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def relevance(targets: Tensor, num_candidates: int) -> Tensor:
    """(Q,) correct indices or (Q, C) bool -> (Q, C) bool, every row with at least one True."""
    if targets.dim() == 1:
        if targets.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"targets must be (Q,) integer indices or a (Q, C) bool matrix, got {targets.dtype}")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_candidates):
            raise ValueError(f"targets must lie in [0, {num_candidates}), got "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        rel = torch.zeros(targets.shape[0], num_candidates, dtype=torch.bool, device=targets.device)
        rel[torch.arange(targets.shape[0], device=targets.device), targets.long()] = True
        return rel
    if targets.dim() != 2 or targets.dtype != torch.bool or targets.shape[1] != num_candidates:
        raise ValueError(f"targets must be (Q,) integer indices or a (Q, {num_candidates}) bool matrix, got "
                         f"{targets.dtype} {tuple(targets.shape)}")
    if not bool(targets.any(dim=1).all()):
        raise ValueError("every query needs at least one correct candidate (a row of targets is all False)")
    return targets


def relevant_rank(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank of each query's best-scoring correct candidate, ties counted against it: (Q,) int64.

    rank_i = #{c wrong for i : scores[i, c] >= max over correct c' of scores[i, c']}.
    """
    if scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating (Q, C) matrix, got {scores.dtype} {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a ranking needs comparable numbers")
    rel = relevance(targets.to(scores.device), scores.shape[1])  # (Q, C)
    if rel.shape[0] != scores.shape[0]:
        raise ValueError(f"targets describe {rel.shape[0]} queries, scores {scores.shape[0]}")
    best = scores.masked_fill(~rel, float("-inf")).max(dim=1).values  # (Q,) best correct score
    return ((scores >= best[:, None]) & ~rel).sum(dim=1)  # (Q,)


def recall_from_ranks(ranks: Tensor, ks: Iterable[int] = (1, 5)) -> dict[str, float]:
    """{"recall@k": fraction of queries whose correct rank is < k} for each k in ``ks``."""
    out = {}
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must hold positive ints, got {k!r}")
        out[f"recall@{k}"] = float((ranks < k).float().mean()) if ranks.numel() else 0.0
    return out


def recall_at_k(scores: Tensor, targets: Tensor, ks: Iterable[int] = (1, 5)) -> dict[str, float]:
    """Recall@k of ``scores`` (Q, C) against ``targets`` ((Q,) indices or (Q, C) bool): the fraction of
    queries with a correct candidate among their k best, ties counted against them."""
    return recall_from_ranks(relevant_rank(scores, targets), ks)


def unique_texts(texts: Sequence[str]) -> tuple[list[str], Tensor]:
    """Distinct strings in order of first appearance and, for each input, its index among them: (N,) int64."""
    index: dict[str, int] = {}
    which = [index.setdefault(t, len(index)) for t in texts]
    return list(index), torch.tensor(which, dtype=torch.int64)


def same_text(queries: Sequence[str], candidates: Sequence[str]) -> Tensor:
    """(Q, C) bool: query i and candidate j are the same string (correct pairs of repeated captions)."""
    ids: dict[str, int] = {}
    q = torch.tensor([ids.setdefault(t, len(ids)) for t in queries], dtype=torch.int64)
    c = torch.tensor([ids.setdefault(t, len(ids)) for t in candidates], dtype=torch.int64)
    return q[:, None] == c[None, :]  # (Q, 1) == (1, C) -> (Q, C)
