"""NCSN++ / DDPM++ U-Net decoder and encoder at the paper's CIFAR-10 and 256^2 settings (method.md §5.4-§5.5).

``NCSNppDecoder`` is the image rectified-flow velocity network v(x_s, s | latent, label): score-SDE's
NCSN++ with BigGAN residual blocks, whose conditioning MLP consumes [latent, one-hot label, time
embedding] (``ConditionMLP``). ``NCSNppEncoder`` is the same stem, down path and middle block without
time conditioning, plus one "latent transformation" head per skip feature map and on the middle output;
the anchor is the sum of the heads. Build them with ``ncsnpp_decoder`` / ``ncsnpp_encoder``:

    dec = ncsnpp_decoder("cifar10", latent_dim=200)      # 61,906,819 parameters
    enc = ncsnpp_encoder("256", latent_dim=200)           # 87,768,896 parameters
    small = ncsnpp_decoder("256", nf=16, image_size=32, ch_mult=(1, 2, 2))  # same code paths, tiny
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lzn.models.embeddings import ConditionMLP, GaussianFourierEmbedding, sinusoidal_embedding
from lzn.models.ncsnpp_layers import (
    AttnBlock,
    BigGANResBlock,
    Downsample2x,
    Upsample2x,
    conv2d,
    ddpm_linear_,
    group_norm,
)

TIME_SCALE = 999.0  # the decoder sees 999 s (method.md §5.4)


@dataclass(frozen=True)
class NCSNppConfig:
    """Shape of the NCSN++ decoder / encoder (method.md §5.4, §5.5).

    Level i works at resolution image_size / 2^i with nf * ch_mult[i] channels. ``fir_taps = None``
    resamples by nearest / 2x2 average; ``progressive`` adds score-SDE's output_skip and input_skip
    image pyramids (combined by sum). ``embedding`` is "positional" (sinusoidal of 999 s, nf-d) or
    "fourier" (Gaussian Fourier features of log(999 s), 2 nf-d). ``scale_output_by_time`` divides the
    decoder output by 999 s. Encoder heads: head_channels 1x1 maps -> head_hidden -> latent_dim, on
    every feature map of resolution <= head_max_resolution (None: all). ``init_scale`` scales the
    DDPM init of the last conv of every block and of the output (0 = 1e-10).
    """

    image_channels: int = 3
    image_size: int = 32
    latent_dim: int = 200
    num_classes: int = 0
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.15
    fir_taps: tuple[float, ...] | None = None
    progressive: bool = False
    embedding: Literal["positional", "fourier"] = "positional"
    fourier_scale: float = 16.0
    scale_output_by_time: bool = False
    init_scale: float = 0.0
    head_channels: int = 20
    head_hidden: int = 200
    head_max_resolution: int | None = None


PRESETS: dict[str, NCSNppConfig] = {
    "cifar10": NCSNppConfig(),
    "256": NCSNppConfig(
        image_size=256,
        ch_mult=(1, 1, 2, 2, 2, 2, 2),
        num_res_blocks=2,
        dropout=0.0,
        fir_taps=(1.0, 3.0, 3.0, 1.0),
        progressive=True,
        embedding="fourier",
        scale_output_by_time=True,
        head_max_resolution=64,
    ),
}


def _validate(cfg: NCSNppConfig) -> None:
    if min(cfg.image_channels, cfg.image_size, cfg.nf, cfg.num_res_blocks) <= 0 or not cfg.ch_mult:
        raise ValueError(f"image_channels, image_size, nf, num_res_blocks must be positive, ch_mult non-empty: {cfg}")
    if min(cfg.ch_mult) <= 0 or cfg.latent_dim < 0 or cfg.num_classes < 0:
        raise ValueError(f"ch_mult must be positive, latent_dim and num_classes >= 0 (0 = none): {cfg}")
    if cfg.image_size % 2 ** (len(cfg.ch_mult) - 1):
        levels = len(cfg.ch_mult)
        raise ValueError(f"image_size {cfg.image_size} must be divisible by 2^{levels - 1} ({levels} levels in ch_mult)")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.embedding not in ("positional", "fourier"):
        raise ValueError(f"embedding must be 'positional' or 'fourier', got {cfg.embedding!r}")


def _check_images(x: Tensor, cfg: NCSNppConfig, who: str) -> None:
    shape = (cfg.image_channels, cfg.image_size, cfg.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{who} expects images of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")


class _DownLevel(nn.Module):
    """num_res_blocks residual blocks (+ attention), then, unless last, a down-sampling residual block
    and, with the input pyramid, a 1x1 conv of the down-sampled image added to it."""

    def __init__(
        self, cfg: NCSNppConfig, cin: int, cout: int, resolution: int, last: bool, cond_dim: int | None
    ) -> None:
        super().__init__()
        chans = [cin] + [cout] * cfg.num_res_blocks
        self.blocks = nn.ModuleList(
            BigGANResBlock(a, b, cond_dim, dropout=cfg.dropout, init_scale=cfg.init_scale)
            for a, b in zip(chans, chans[1:])
        )
        use_attn = resolution in cfg.attn_resolutions
        self.attns = nn.ModuleList(AttnBlock(cout, cfg.init_scale) for _ in self.blocks) if use_attn else None
        self.downsample = None if last else BigGANResBlock(
            cout, cout, cond_dim, Downsample2x(cfg.fir_taps), dropout=cfg.dropout, init_scale=cfg.init_scale
        )
        self.combine = conv2d(cfg.image_channels, cout, 1) if (cfg.progressive and not last) else None


class _DownPath(nn.Module):
    """Stem conv, down levels and middle block (Res -> Attn -> Res) shared by decoder and encoder.

    forward(x (B, C, S, S), cond (B, 4 nf) | None) -> (skip feature maps in U-Net order, middle output).
    ``skip_channels`` / ``skip_resolutions`` describe the skip list.
    """

    def __init__(self, cfg: NCSNppConfig, cond_dim: int | None) -> None:
        super().__init__()
        nf = cfg.nf
        self.stem = conv2d(cfg.image_channels, nf, 3)
        self.skip_channels = [nf]
        self.skip_resolutions = [cfg.image_size]
        self.levels = nn.ModuleList()
        ch = nf
        for level, mult in enumerate(cfg.ch_mult):
            res = cfg.image_size >> level
            last = level == len(cfg.ch_mult) - 1
            self.levels.append(_DownLevel(cfg, ch, nf * mult, res, last, cond_dim))
            ch = nf * mult
            self.skip_channels += [ch] * cfg.num_res_blocks + ([] if last else [ch])
            self.skip_resolutions += [res] * cfg.num_res_blocks + ([] if last else [res // 2])
        self.pyramid_down = Downsample2x(cfg.fir_taps) if cfg.progressive else None
        self.mid_block1 = BigGANResBlock(ch, ch, cond_dim, dropout=cfg.dropout, init_scale=cfg.init_scale)
        self.mid_attn = AttnBlock(ch, cfg.init_scale)
        self.mid_block2 = BigGANResBlock(ch, ch, cond_dim, dropout=cfg.dropout, init_scale=cfg.init_scale)
        self.out_channels = ch

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[list[Tensor], Tensor]:
        pyramid = x  # input_skip pyramid: the image, down-sampled once per level
        h = self.stem(x)  # (B, nf, S, S)
        skips = [h]
        for level in self.levels:
            assert isinstance(level, _DownLevel)
            for i, block in enumerate(level.blocks):
                h = block(h, cond)
                if level.attns is not None:
                    h = level.attns[i](h)
                skips.append(h)
            if level.downsample is not None:
                h = level.downsample(h, cond)  # (B, ch, R/2, R/2)
                if level.combine is not None and self.pyramid_down is not None:
                    pyramid = self.pyramid_down(pyramid)  # (B, C, R/2, R/2)
                    h = h + level.combine(pyramid)
                skips.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, cond)), cond)
        return skips, h


def _to_image(cfg: NCSNppConfig, ch: int) -> nn.Sequential:
    """GN -> SiLU -> conv3x3 (ch -> image channels, init_scale): the output head and output_skip taps."""
    return nn.Sequential(group_norm(ch), nn.SiLU(), conv2d(ch, cfg.image_channels, 3, init_scale=cfg.init_scale))


class _UpLevel(nn.Module):
    """num_res_blocks + 1 residual blocks on [h, skip] (+ one attention), the output_skip tap, then,
    unless at full resolution, an up-sampling residual block."""

    def __init__(
        self, cfg: NCSNppConfig, cins: list[int], cout: int, resolution: int, first: bool, cond_dim: int
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            BigGANResBlock(c, cout, cond_dim, dropout=cfg.dropout, init_scale=cfg.init_scale) for c in cins
        )
        self.attn = AttnBlock(cout, cfg.init_scale) if resolution in cfg.attn_resolutions else None
        self.to_image = _to_image(cfg, cout) if cfg.progressive else None
        self.upsample = None if first else BigGANResBlock(
            cout, cout, cond_dim, Upsample2x(cfg.fir_taps), dropout=cfg.dropout, init_scale=cfg.init_scale
        )


class NCSNppDecoder(nn.Module):
    """Latent-conditioned NCSN++ rectified-flow velocity network (method.md §5.4).

    forward(x (B, C, S, S), s (B,), latent (B, latent_dim) | None, labels (B,) | None) -> velocity
    (B, C, S, S). s is the image RF clock (0 = noise, 1 = data), clamped to [0, 1]; the network sees
    999 s. With the Fourier embedding (256^2 setting) s must be > 0 (log of 999 s).
    """

    def __init__(self, config: NCSNppConfig) -> None:
        super().__init__()
        cfg = config
        _validate(cfg)
        self.config = cfg
        self.image_channels = cfg.image_channels
        self.image_size = cfg.image_size
        self.latent_dim = cfg.latent_dim
        self.num_classes = cfg.num_classes
        nf, cond_dim = cfg.nf, 4 * cfg.nf
        self.fourier = GaussianFourierEmbedding(nf, cfg.fourier_scale) if cfg.embedding == "fourier" else None
        time_dim = 2 * nf if self.fourier is not None else nf
        self.cond_mlp = ConditionMLP(time_dim, cond_dim, cfg.latent_dim, cfg.num_classes)
        ddpm_linear_(self.cond_mlp.fc1)
        ddpm_linear_(self.cond_mlp.fc2)
        self.down = _DownPath(cfg, cond_dim)

        skips = list(self.down.skip_channels)
        ch = self.down.out_channels
        self.levels = nn.ModuleList()
        for level in reversed(range(len(cfg.ch_mult))):
            cout = nf * cfg.ch_mult[level]
            cins = [ch + skips.pop()] + [cout + skips.pop() for _ in range(cfg.num_res_blocks)]
            self.levels.append(_UpLevel(cfg, cins, cout, cfg.image_size >> level, level == 0, cond_dim))
            ch = cout
        assert not skips, "every skip feature map must be consumed"
        self.pyramid_up = Upsample2x(cfg.fir_taps) if cfg.progressive else None
        self.out = None if cfg.progressive else _to_image(cfg, ch)

    def forward(self, x: Tensor, s: Tensor, latent: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        _check_images(x, self.config, "NCSNppDecoder")
        if s.shape != (x.shape[0],):
            raise ValueError(f"s must have shape ({x.shape[0]},), got {tuple(s.shape)}")
        sigma = s.to(torch.float32).clamp(0.0, 1.0) * TIME_SCALE  # (B,)
        if self.fourier is not None:
            temb = self.fourier(torch.log(sigma))  # (B, 2 nf)
        else:
            temb = sinusoidal_embedding(sigma, self.config.nf)  # (B, nf)
        cond = self.cond_mlp(temb.to(x.dtype), latent, labels)  # (B, 4 nf)

        skips, h = self.down(x, cond)
        pyramid: Tensor | None = None  # output_skip: image-space sum of per-level taps
        for level in self.levels:
            assert isinstance(level, _UpLevel)
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), cond)  # (B, ch + skip_ch, R, R) -> (B, cout, R, R)
            if level.attn is not None:
                h = level.attn(h)
            if level.to_image is not None:
                tap = level.to_image(h)  # (B, C, R, R)
                pyramid = tap if pyramid is None or self.pyramid_up is None else self.pyramid_up(pyramid) + tap
            if level.upsample is not None:
                h = level.upsample(h, cond)  # (B, cout, 2R, 2R)
        if self.out is not None:
            out = self.out(h)
        else:
            assert pyramid is not None
            out = pyramid
        if self.config.scale_output_by_time:
            out = out / sigma.to(out.dtype)[:, None, None, None]  # (B,) -> (B, 1, 1, 1)
        return out


class _LatentHead(nn.Sequential):
    """(B, C, R, R) -> (B, q): 1x1 conv -> head_channels, SiLU, flatten (channel-major), Linear ->
    head_hidden, SiLU, Linear -> q (method.md §5.5 "latent transformation" head). PyTorch default init."""

    def __init__(self, cfg: NCSNppConfig, channels: int, resolution: int) -> None:
        super().__init__(
            nn.Conv2d(channels, cfg.head_channels, 1),
            nn.SiLU(),
            nn.Flatten(),  # (B, head_channels, R, R) -> (B, head_channels R R)
            nn.Linear(cfg.head_channels * resolution * resolution, cfg.head_hidden),
            nn.SiLU(),
            nn.Linear(cfg.head_hidden, cfg.latent_dim),
        )


class NCSNppEncoder(nn.Module):
    """NCSN++ down path + middle block with latent heads: (B, C, S, S) -> anchors (B, latent_dim) (method.md §5.5).

    The anchor is the sum of the heads on every skip feature map (stem, residual and down-sampling
    block outputs) and on the middle-block output, restricted to resolutions <= head_max_resolution.
    No time conditioning; dropout follows the config, so anchors are stochastic in training mode.
    ``features`` is the global-average-pooled middle-block output (B, feature_dim).
    """

    def __init__(self, config: NCSNppConfig) -> None:
        super().__init__()
        cfg = config
        _validate(cfg)
        if cfg.latent_dim <= 0:
            raise ValueError(f"the encoder needs latent_dim > 0, got {cfg.latent_dim}")
        self.config = cfg
        self.image_channels = cfg.image_channels
        self.image_size = cfg.image_size
        self.latent_dim = cfg.latent_dim
        self.down = _DownPath(cfg, cond_dim=None)
        self.feature_dim = self.down.out_channels
        max_res = cfg.head_max_resolution if cfg.head_max_resolution is not None else cfg.image_size
        mid_res = cfg.image_size >> (len(cfg.ch_mult) - 1)
        maps = list(zip(self.down.skip_channels, self.down.skip_resolutions)) + [(self.feature_dim, mid_res)]
        self.head_on = [res <= max_res for _, res in maps]  # one flag per skip map, then the middle
        if not any(self.head_on):
            raise ValueError(f"head_max_resolution {cfg.head_max_resolution} leaves the encoder without heads")
        self.heads = nn.ModuleList(_LatentHead(cfg, c, r) for (c, r), on in zip(maps, self.head_on) if on)

    def _trunk(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        _check_images(x, self.config, "NCSNppEncoder")
        return self.down(x, None)

    def features(self, x: Tensor) -> Tensor:
        """Global-average-pooled middle-block output: (B, C, S, S) -> (B, feature_dim)."""
        _, h = self._trunk(x)
        return h.mean(dim=(2, 3))  # (B, F, R, R) -> (B, F)

    def forward(self, x: Tensor) -> Tensor:
        """Anchors: (B, C, S, S) -> (B, latent_dim), the sum of all head outputs."""
        skips, h = self._trunk(x)
        maps = [m for m, on in zip(skips + [h], self.head_on) if on]
        return torch.stack([head(m) for head, m in zip(self.heads, maps)]).sum(dim=0)  # (n_heads, B, q) -> (B, q)


def _config(setting: str, overrides: dict[str, Any]) -> NCSNppConfig:
    if setting not in PRESETS:
        raise ValueError(f"unknown NCSN++ setting {setting!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(NCSNppConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown NCSNppConfig fields {unknown}; valid: {sorted(fields)}")
    return dataclasses.replace(PRESETS[setting], **overrides)


def ncsnpp_decoder(
    setting: str = "cifar10", latent_dim: int = 200, num_classes: int | None = None, **overrides: Any
) -> NCSNppDecoder:
    """Decoder at a paper setting ("cifar10" or "256", method.md §5.4); latent_dim 0 = plain RF baseline."""
    cfg = _config(setting, {**overrides, "latent_dim": latent_dim, "num_classes": num_classes or 0})
    return NCSNppDecoder(cfg)


def ncsnpp_encoder(setting: str = "cifar10", latent_dim: int = 200, **overrides: Any) -> NCSNppEncoder:
    """Encoder at a paper setting ("cifar10" or "256", method.md §5.5)."""
    return NCSNppEncoder(_config(setting, {**overrides, "latent_dim": latent_dim}))
