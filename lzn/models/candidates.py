"""The decoder of a data type decoded by choice: latents -> a ranking of candidate samples (method.md §3.5).

The label decoder flows a latent back over the anchors of every class and takes the class whose
anchor it reaches. For a type whose samples cannot be enumerated (text), the same mechanism runs over
the anchors of a candidate set the caller gives: each latent flows back over the M candidate anchors
(uniform weights); the assignment probability of a candidate is its responsibility averaged over the
recorded reverse steps the alignment loss looks at (those after the cut-off, method.md §3.3), and the
candidate nearest the end point is ranked first. Open-ended generation (writing new text) is not
what this decoder does: it chooses among the candidates it is given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lzn.core import zones


class CandidateDecoder(nn.Module):
    """Latents (B, q) and candidate anchors (M, q) -> probabilities (B, M) over the candidates (rows sum
    to 1). It has no weights: the candidates' anchors come from their type's encoder."""

    latent_dim = 0  # shares any latent dimension

    def __init__(self) -> None:
        super().__init__()

    def forward(self, latents: Tensor, anchors: Tensor, *, steps: int = 20, cutoff: float = 0.2) -> Tensor:
        if latents.dim() != 2 or anchors.dim() != 2 or latents.shape[1] != anchors.shape[1] or anchors.shape[0] < 1:
            raise ValueError(f"latents (B, q) and candidate anchors (M >= 1, q) must share q, got "
                             f"{tuple(latents.shape)} and {tuple(anchors.shape)}")
        end, probs = zones.flow_back(latents, anchors, steps=steps)  # (B, q), (steps, B, M)
        drop = min(int(cutoff * steps), steps - 1)
        scores = probs[drop:].mean(dim=0)  # (B, M)
        best = zones.nearest(end, anchors)  # (B,)
        top = scores.max(dim=1).values  # (B,)
        scores = scores.clone()
        scores[torch.arange(scores.shape[0], device=scores.device), best] = top + 1e-6  # the nearest ranks first
        return scores / scores.sum(dim=1, keepdim=True)
