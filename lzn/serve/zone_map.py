"""The 2-D picture of the zones that ``GET /zones`` serves and the explorer page draws (method.md §1.5, §2.9).

Its points are the latents of the model's reference bank at noise scale 0 (each anchor flowed over the whole
bank from its own position: the centre of its zone), at most ``max_points`` of them (a seeded draw), each
coloured by the class the label decoder gives it. A latent space of one or two dimensions is drawn as it is;
a larger one through t-SNE (scikit-learn), because no linear projection of ten zones in sixteen dimensions
keeps them apart. t-SNE places only the points it was given, so a query's latent (also at noise scale 0)
is drawn at the place of its nearest latent of the picture: in the cluster of the zone it falls in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lzn.models import LatentZoningNetwork

@dataclass(frozen=True)
class ZoneMap:
    latents: Tensor  # (N, q) float32 on the CPU: the picture's latents
    points: Tensor  # (N, 2): their places
    classes: Tensor | None  # (N,) the label decoder's class of each; None without label anchors
    method: str  # "t-SNE" or "latent coordinates"
    size: int  # anchors in the reference bank

    def project(self, latents: Tensor) -> Tensor:
        """Latents (B, q) -> their places (B, 2) on the picture."""
        x = latents.detach().float().cpu()
        if self.method != "t-SNE":
            return torch.nn.functional.pad(x, (0, max(0, 2 - x.shape[1])))[:, :2]
        return self.points[torch.cdist(x, self.latents).argmin(dim=1)]  # (B, N) distances -> (B, 2)

    def as_json(self) -> dict[str, Any]:
        return {"points": _rounded(self.points), "classes": None if self.classes is None else self.classes.tolist(),
                "method": self.method, "reference_size": self.size}


def _rounded(points: Tensor) -> list[list[float]]:
    return [[round(float(x), 4), round(float(y), 4)] for x, y in points.tolist()]


@torch.no_grad()
def build_zone_map(model: LatentZoningNetwork, reference: Tensor, max_points: int, seed: int = 0) -> ZoneMap:
    """The picture of ``reference`` (R, q), the model's image reference bank."""
    latents = model.latents_from_anchors(reference, noise_scale=0.0)  # (R, q): the zone centres
    r = latents.shape[0]
    if r > max_points:
        keep = torch.randperm(r, generator=torch.Generator().manual_seed(seed))[:max_points]  # (max_points,)
        latents = latents[keep.to(latents.device)]
    classes = None
    if model.label_anchors is not None:
        found = model.decode("label", latents)
        assert isinstance(found, Tensor)
        classes = found.cpu()  # (N,)
    x = latents.float().cpu()  # (N, q)
    if x.shape[1] <= 2 or x.shape[0] < 8:  # drawn as it is (a tiny bank: its first two coordinates)
        return ZoneMap(x, torch.nn.functional.pad(x, (0, max(0, 2 - x.shape[1])))[:, :2], classes,
                       "latent coordinates" if x.shape[1] <= 2 else "first two latent coordinates", r)
    from sklearn.manifold import TSNE  # type: ignore[import-untyped]  # a base dependency, slow to import

    perplexity = min(30.0, (x.shape[0] - 1) / 3)
    points = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x.numpy())
    return ZoneMap(x, torch.from_numpy(points).float(), classes, "t-SNE", r)
