"""ResNet image encoders with GroupNorm instead of BatchNorm (method.md §6.3).

The trunk is a standard ResNet (He et al. 2016; torchvision layout) in which every BatchNorm is a
GroupNorm(32): stem conv -> GN -> ReLU (-> max-pool), four stages of basic or bottleneck blocks,
global average pooling. The pooled trunk output is the "no_head" representation used for linear
probing (method.md §8.3); a two-layer projection head turns it into the LZN anchor:

    Linear(F -> hidden, no bias) -> GN(32) -> ReLU -> Linear(hidden -> q, no bias) -> GN(32, q)

Inputs are images in [-1, 1]; the network maps them back to [0, 1] itself and applies no mean/std
normalisation. ``checkpoint_segments > 0`` recomputes the trunk's activations in the backward pass
(torch.utils.checkpoint, non-reentrant; the release uses 5 segments).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint_sequential

GN_GROUPS = 32


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GN_GROUPS, channels)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity, or the projection shortcut 1x1 strided conv + GN when the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(_conv1x1(cin, cout, stride), _gn(cout))


class BasicBlock(nn.Module):
    """ResNet-18/34 block: 3x3 conv -> GN -> ReLU -> 3x3 conv -> GN(scale 0), + shortcut, ReLU."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv3x3(cin, width, stride)
        self.gn1 = _gn(width)
        self.conv2 = _conv3x3(width, cout)
        self.gn2 = _gn(cout)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_norm(self) -> nn.GroupNorm:
        return self.gn2

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.gn1(self.conv1(x)))
        h = self.gn2(self.conv2(h))
        return self.relu(h + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50/101 block: 1x1 -> 3x3 (strided) -> 1x1 (x4 channels), GN after each, + shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv1x1(cin, width)
        self.gn1 = _gn(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.gn2 = _gn(width)
        self.conv3 = _conv1x1(width, cout)
        self.gn3 = _gn(cout)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_norm(self) -> nn.GroupNorm:
        return self.gn3

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.gn1(self.conv1(x)))
        h = self.relu(self.gn2(self.conv2(h)))
        h = self.gn3(self.conv3(h))
        return self.relu(h + self.shortcut(x))


Block = Union[type[BasicBlock], type[Bottleneck]]

# depth -> (block type, blocks per stage); an explicit table instead of a registry.
RESNET_LAYOUTS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ProjectionHead(nn.Module):
    """Anchor generator (method.md §6.3): (B, F) -> (B, q).

    Linear(F -> hidden, no bias) -> GN(32) -> ReLU -> Linear(hidden -> q, no bias) -> GN(32, q),
    the final GN's bias initialised to 0.
    """

    def __init__(self, in_dim: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        for name, dim in (("head hidden width", hidden), ("latent_dim", latent_dim)):
            if dim <= 0 or dim % GN_GROUPS != 0:
                raise ValueError(f"{name} must be a positive multiple of {GN_GROUPS} (GroupNorm groups), got {dim}")
        self.fc1 = nn.Linear(in_dim, hidden, bias=False)
        self.gn1 = _gn(hidden)
        self.fc2 = nn.Linear(hidden, latent_dim, bias=False)
        self.gn2 = _gn(latent_dim)
        nn.init.zeros_(self.gn2.bias)

    def forward(self, feats: Tensor) -> Tensor:
        h = torch.relu(self.gn1(self.fc1(feats)))  # (B, hidden)
        return self.gn2(self.fc2(h))  # (B, q)


class ResNetEncoder(nn.Module):
    """GroupNorm ResNet image encoder (method.md §6.3).

    ``features(x)``: (B, C, S, S) in [-1, 1] -> pooled trunk feature (B, feature_dim), the "no_head"
    embedding; ``forward(x)``: -> anchors (B, latent_dim).

    Args:
        depth: one of RESNET_LAYOUTS (18, 34, 50, 101).
        latent_dim: anchor dimension q (a multiple of 32: the head ends in GN(32, q)).
        image_channels, image_size: the only accepted input shape is (B, image_channels, S, S), S = image_size.
        small_input: 3x3/1 stem conv and no max-pool (for 8x8..32x32 images) instead of 7x7/2 + 3x3/2 pool.
        checkpoint_segments: 0 = off; otherwise recompute the trunk in that many sequential segments.
        head_hidden: hidden width of the projection head (default: feature_dim).
    """

    def __init__(
        self,
        depth: int = 50,
        latent_dim: int = 256,
        image_channels: int = 3,
        image_size: int = 224,
        small_input: bool = False,
        checkpoint_segments: int = 0,
        head_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"depth must be one of {sorted(RESNET_LAYOUTS)}, got {depth}")
        if image_channels <= 0 or image_size <= 0:
            raise ValueError(f"image_channels and image_size must be positive, got {image_channels}, {image_size}")
        if checkpoint_segments < 0:
            raise ValueError(f"checkpoint_segments must be >= 0 (0 = off), got {checkpoint_segments}")
        block, layers = RESNET_LAYOUTS[depth]
        self.depth = depth
        self.image_channels = image_channels
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.small_input = small_input
        self.checkpoint_segments = checkpoint_segments

        if small_input:
            stem_conv = nn.Conv2d(image_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            pool: nn.Module = nn.Identity()
        else:
            stem_conv = nn.Conv2d(image_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stem = nn.Sequential(stem_conv, _gn(64), nn.ReLU(inplace=True), pool)

        cin = 64
        stages = []
        for i, (n_blocks, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = cin
        self.head = ProjectionHead(cin, head_hidden or cin, latent_dim)
        self._init_trunk()

    def _init_trunk(self) -> None:
        """He init for convs, GN = (1, 0), and the last GN of every residual block scaled to 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_norm.weight)

    def trunk_modules(self) -> list[nn.Module]:
        """The trunk as a flat sequence (stem, then every residual block) for segment checkpointing."""
        return [self.stem, *self.layer1, *self.layer2, *self.layer3, *self.layer4]

    def _check_input(self, x: Tensor) -> None:
        expected = (self.image_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ResNetEncoder expects images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(image_channels={self.image_channels}, image_size={self.image_size}), got {tuple(x.shape)}"
            )

    def features(self, x: Tensor) -> Tensor:
        """Pooled trunk feature ("no_head" embedding): (B, C, S, S) in [-1, 1] -> (B, feature_dim)."""
        self._check_input(x)
        h = x * 0.5 + 0.5  # [-1, 1] -> [0, 1]; no mean/std normalisation
        modules = self.trunk_modules()
        if self.checkpoint_segments > 0 and torch.is_grad_enabled():
            segments = min(self.checkpoint_segments, len(modules))
            h = checkpoint_sequential(modules, segments, h, use_reentrant=False)
        else:
            for m in modules:
                h = m(h)
        # h: (B, feature_dim, S', S')
        return h.mean(dim=(2, 3))  # (B, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Anchors: (B, C, S, S) in [-1, 1] -> (B, latent_dim)."""
        return self.head(self.features(x))


def resnet18_encoder(
    latent_dim: int = 256,
    image_channels: int = 3,
    image_size: int = 224,
    small_input: bool = False,
    checkpoint_segments: int = 0,
) -> ResNetEncoder:
    """GN ResNet-18 encoder: 512-d features, head 512 -> 512 -> latent_dim."""
    return ResNetEncoder(18, latent_dim, image_channels, image_size, small_input, checkpoint_segments)


def resnet50_encoder(
    latent_dim: int = 256,
    image_channels: int = 3,
    image_size: int = 224,
    small_input: bool = False,
    checkpoint_segments: int = 0,
) -> ResNetEncoder:
    """GN ResNet-50 encoder (method.md §6.3): 2048-d features, head 2048 -> 2048 -> latent_dim."""
    return ResNetEncoder(50, latent_dim, image_channels, image_size, small_input, checkpoint_segments)
