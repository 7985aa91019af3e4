"""FIR resampling (method.md §5.6) against a loop-by-loop transcription of upfirdn2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lzn.models.fir import downsample_2d, fir_kernel_2d, upfirdn2d, upsample_2d


def naive_upfirdn2d(x: Tensor, kernel: Tensor, up: int, down: int, pad: tuple[int, int]) -> Tensor:
    """Definition, pixel by pixel: zero-insert, pad (negative crops), true convolution, decimate."""
    B, C, H, W = x.shape
    K = kernel.shape[0]
    before, after = pad
    size = H * up + before + after  # padded side (square inputs only)

    def padded(b: int, c: int, i: int, j: int) -> float:
        ui, uj = i - before, j - before  # index into the zero-inserted image
        if not (0 <= ui < H * up and 0 <= uj < W * up) or ui % up or uj % up:
            return 0.0
        return float(x[b, c, ui // up, uj // up])

    n_out = (size - K) // down + 1
    out = torch.zeros(B, C, n_out, n_out, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            for oy in range(n_out):
                for ox in range(n_out):
                    acc = 0.0
                    for a in range(K):
                        for d in range(K):
                            # convolution: the output at (i, j) sums p[i + a, j + d] k[K-1-a, K-1-d]
                            acc += padded(b, c, oy * down + a, ox * down + d) * float(kernel[K - 1 - a, K - 1 - d])
                    out[b, c, oy, ox] = acc
    return out


@pytest.mark.parametrize(
    "up, down, pad",
    [(1, 1, (0, 0)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2)), (3, 1, (0, -1)), (1, 2, (-1, 2))],
)
def test_upfirdn2d_matches_naive_loop(up: int, down: int, pad: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 5, generator=g, dtype=torch.float64)
    kernel = torch.randn(3, 3, generator=g, dtype=torch.float64)  # asymmetric: checks the flip
    got = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    torch.testing.assert_close(got, naive_upfirdn2d(x, kernel, up, down, pad))


def test_fir_kernel_is_normalised_outer_product() -> None:
    k = fir_kernel_2d([1, 3, 3, 1])
    expected = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(k, torch.outer(expected, expected) / 64)
    with pytest.raises(ValueError):
        fir_kernel_2d([1, -1])


@pytest.mark.parametrize("size", [4, 8])
def test_up_and_down_sampling_match_naive_with_score_sde_pads(size: int) -> None:
    """[1, 3, 3, 1]: up pads (2, 1) with gain 4, down pads (1, 1), as in score-SDE's up/downsample_2d."""
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    k = fir_kernel_2d([1, 3, 3, 1]).double()
    up = upsample_2d(x, k)
    down = downsample_2d(x, k)
    assert up.shape == (1, 3, 2 * size, 2 * size) and down.shape == (1, 3, size // 2, size // 2)
    torch.testing.assert_close(up, naive_upfirdn2d(x, 4 * k, 2, 1, (2, 1)))
    torch.testing.assert_close(down, naive_upfirdn2d(x, k, 1, 2, (1, 1)))


def test_box_taps_reduce_to_nearest_and_average_pool() -> None:
    x = torch.randn(2, 3, 6, 6)
    k = fir_kernel_2d([1, 1])
    torch.testing.assert_close(upsample_2d(x, k), F.interpolate(x, scale_factor=2.0, mode="nearest"))
    torch.testing.assert_close(downsample_2d(x, k), F.avg_pool2d(x, 2))


def test_constant_image_is_preserved_away_from_the_border() -> None:
    x = torch.full((1, 1, 8, 8), 2.5)
    k = fir_kernel_2d([1, 3, 3, 1])
    torch.testing.assert_close(upsample_2d(x, k)[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 2.5))
    torch.testing.assert_close(downsample_2d(x, k)[..., 1:-1, 1:-1], torch.full((1, 1, 2, 2), 2.5))


def test_gradcheck() -> None:
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    k = fir_kernel_2d([1, 3, 3, 1]).double()
    assert torch.autograd.gradcheck(lambda t: upsample_2d(t, k), (x,))
    assert torch.autograd.gradcheck(lambda t: downsample_2d(t, k), (x,))


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        upfirdn2d(torch.zeros(3, 4, 4), torch.ones(2, 2))
    with pytest.raises(ValueError):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), up=0)
