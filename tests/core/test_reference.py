"""Latents against a reference bank: equal to zones.latents over (bank + own anchor), batch-independent."""

from __future__ import annotations

import pytest
import torch

from lzn.core import zones
from lzn.core.reference import latents_with_reference


@pytest.mark.parametrize("solver", ["euler", "dpm3"])
def test_each_sample_equals_the_flow_over_bank_plus_its_own_anchor(solver):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(30, 4, generator=g, dtype=torch.float64) * 2 + 5  # far from the origin
    own = torch.randn(6, 4, generator=g, dtype=torch.float64) * 2 + 5
    noise = torch.randn(6, 4, generator=g, dtype=torch.float64)
    out = latents_with_reference(own, bank, noise, steps=12, solver=solver, noise_scale=0.7)
    for i in range(6):  # naive reference: the ordinary flow over the per-sample anchor set
        anchors = torch.cat([bank, own[i:i + 1]])
        ref = zones.latents(anchors, noise[i:i + 1], index=torch.tensor([30]), steps=12, solver=solver,
                            noise_scale=0.7)
        torch.testing.assert_close(out[i:i + 1], ref, rtol=1e-9, atol=1e-9)


def test_result_does_not_depend_on_the_batch_or_the_chunking():
    g = torch.Generator().manual_seed(1)
    bank, own, noise = (torch.randn(n, 3, generator=g, dtype=torch.float64) for n in (50, 9, 9))
    full = latents_with_reference(own, bank, noise, steps=8)
    alone = torch.cat([latents_with_reference(own[i:i + 1], bank, noise[i:i + 1], steps=8) for i in range(9)])
    chunked = latents_with_reference(own, bank, noise, steps=8, chunk=2)
    torch.testing.assert_close(full, alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(full, chunked, rtol=0, atol=1e-12)


def test_bad_inputs_are_refused():
    bank, own = torch.randn(5, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="reference"):
        latents_with_reference(own, torch.randn(0, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="finite"):
        latents_with_reference(own, bank.index_fill(0, torch.tensor([1]), float("inf")), torch.randn(2, 3))
    with pytest.raises(ValueError, match="noise_scale"):
        latents_with_reference(own, bank, torch.randn(2, 3), noise_scale=float("nan"))
