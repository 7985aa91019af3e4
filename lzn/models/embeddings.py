"""Time embeddings and the conditioning MLP shared by every latent-conditioned decoder (method.md §5.4).

The decoder's conditioning vector is MLP([LZN latent, one-hot label, time embedding]) with the MLP
Linear(in -> hidden) -> SiLU -> Linear(hidden -> hidden); every residual block then applies its own
SiLU -> Linear -> channel-wise bias to that vector.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_embedding(timesteps: Tensor, dim: int, max_positions: int = 10000) -> Tensor:
    """DDPM positional embedding of (B,) real timesteps -> (B, dim): [sin(t w_k), cos(t w_k)]."""
    if timesteps.dim() != 1:
        raise ValueError(f"timesteps must be 1-D (B,), got shape {tuple(timesteps.shape)}")
    half = dim // 2
    scale = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=timesteps.device, dtype=torch.float32) * -scale)  # (half,)
    args = timesteps.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2 half)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (score-SDE's 256^2 setting): (B,) -> (B, 2 * size).

    The frequencies are a fixed (non-trained) parameter drawn N(0, scale^2), as in NCSN++.
    """

    def __init__(self, size: int = 128, scale: float = 16.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * math.pi)  # (B, size)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class ConditionMLP(nn.Module):
    """[latent (B, q), one-hot(labels) (B, K), time embedding (B, T)] -> conditioning vector (B, hidden).

    ``latent_dim = 0`` or ``num_classes = 0`` drop that input (a plain RF decoder has neither).
    """

    def __init__(self, time_dim: int, hidden: int, latent_dim: int = 0, num_classes: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.fc1 = nn.Linear(time_dim + latent_dim + num_classes, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, temb: Tensor, latent: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        parts = []
        if self.latent_dim:
            if latent is None or latent.shape != (temb.shape[0], self.latent_dim):
                got = None if latent is None else tuple(latent.shape)
                raise ValueError(f"decoder expects a latent of shape ({temb.shape[0]}, {self.latent_dim}), got {got}")
            parts.append(latent.to(temb.dtype))
        elif latent is not None:
            raise ValueError("this decoder was built without a latent input (latent_dim=0) but got a latent")
        if self.num_classes:
            if labels is None or labels.shape != (temb.shape[0],):
                got = None if labels is None else tuple(labels.shape)
                raise ValueError(f"decoder expects class labels of shape ({temb.shape[0]},), got {got}")
            parts.append(F.one_hot(labels.long(), self.num_classes).to(temb.dtype))
        elif labels is not None:
            raise ValueError("this decoder was built without class conditioning (num_classes=0) but got labels")
        parts.append(temb)
        h = self.fc1(torch.cat(parts, dim=1))  # (B, hidden)
        return self.fc2(F.silu(h))
