"""EMA against a hand-written loop; swapping restores the live weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lzn.training import EMA


def test_ema_matches_hand_written_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay = 0.5
    ema = EMA(net, decay)
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    for k in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(5, 3))  # moves BatchNorm running stats and its integer counter
        d = min(decay, (1 + k) / (10 + k))
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                ref[name] = ref[name] - (1 - d) * (ref[name] - value)
            else:
                ref[name] = value.clone()
        assert ema.update(net) == pytest.approx(d)
    assert ema.num_updates == 6
    for name in ref:
        torch.testing.assert_close(ema.shadow[name], ref[name], rtol=1e-6, atol=1e-7)
    assert int(ema.shadow["1.num_batches_tracked"]) == 6


def test_swapped_into_restores_live_weights_even_on_error():
    net = nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        ema.shadow["weight"].fill_(7.0)
    with ema.swapped_into(net):
        assert torch.all(net.weight == 7.0)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in live.items())
    with pytest.raises(RuntimeError), ema.swapped_into(net):
        raise RuntimeError("boom")
    assert torch.equal(net.weight, live["weight"])


def test_state_round_trip_and_validation():
    net = nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    ema.update(net)
    other = EMA(nn.Linear(2, 2), 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(KeyError):
        EMA(nn.Linear(2, 2, bias=False), 0.9).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError):
        EMA(net, 1.0)
