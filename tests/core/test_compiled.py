"""The compiled latent flow (lzn.core.compiled, method.md §2.11) against the eager one.

Compiling takes seconds even at these tiny shapes, so the comparisons share one compiled plan
(DPM-Solver++ 3M with 3 steps: orders 1, 2 and 3 all occur) and one shape per dtype.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lzn.core import budget, compiled, zones

needs_compiler = pytest.mark.skipif(compiled.compile_problem("cpu") is not None,
                                    reason=f"torch.compile cannot run here: {compiled.compile_problem('cpu')}")


def _flow(dtype: torch.dtype, compile: bool, flow_memory: int | None = None):  # type: ignore[no-untyped-def]
    """Latents of 12 samples over 9 anchors (index repeats rows) with class weights, and the gradients
    of a fixed projection of them w.r.t. the anchors, the noise and the log weights."""
    g = torch.Generator().manual_seed(3)
    anchors = (torch.randn(9, 4, generator=g, dtype=dtype) * 0.7 + 2.0).requires_grad_()  # off the origin
    noise = torch.randn(12, 4, generator=g, dtype=dtype).requires_grad_()
    logw = torch.log_softmax(torch.randn(9, generator=g, dtype=dtype), 0).requires_grad_()
    index = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 4, 8])
    proj = torch.randn(12, 4, generator=g, dtype=dtype)
    lat = zones.latents(anchors, noise, index=index, steps=3, solver="dpm3", eps=0.05, log_weights=logw,
                        compile=compile, flow_memory=flow_memory)
    (lat * proj).sum().backward()
    return lat.detach(), anchors.grad, noise.grad, logw.grad


ONE_BLOCK = budget.TEMPORARIES * 12 * 9 * 8  # one block, the responsibilities recomputed in backward


@needs_compiler
@pytest.mark.parametrize("dtype, rtol, memory", [(torch.float64, 1e-11, None), (torch.float32, 1e-5, None),
                                                 (torch.float64, 1e-11, ONE_BLOCK)])
def test_compiled_flow_matches_eager(dtype, rtol, memory):
    """Kept responsibilities (the default at this size) and, in float64, recomputed ones."""
    from torch._dynamo.utils import counters

    assert budget.blocks(ONE_BLOCK, 12, 9, 8, 3) == (12, False)
    graphs = counters["stats"]["unique_graphs"]
    eager = _flow(dtype, compile=False)
    comp = _flow(dtype, compile=True, flow_memory=memory)
    assert counters["stats"]["unique_graphs"] >= graphs + 2  # forward and adjoint really were compiled
    for name, e, c in zip(("latents", "d anchors", "d noise", "d log weights"), eager, comp):
        assert c is not None and c.dtype == dtype
        err = ((c - e).abs().max() / e.abs().max()).item()
        assert err < rtol, f"{name}: relative difference {err:.2e}"


def test_missing_compiler_raises_naming_the_key(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    problem = compiled.compile_problem("cpu")
    assert problem is not None and "C++ compiler" in problem
    anchors, noise = torch.randn(5, 3), torch.randn(5, 3)
    with pytest.raises(RuntimeError, match=r"^train\.compile .*C\+\+ compiler.*train\.compile=false"):
        zones.latents(anchors, noise, compile=True)


def test_bad_compile_value_raises():
    with pytest.raises(ValueError, match="^compile must be True or False"):
        zones.latents(torch.randn(5, 3), torch.randn(5, 3), compile="yes")  # type: ignore[arg-type]


@needs_compiler
def test_large_flow_runs_eagerly_with_a_warning():
    anchors, noise = torch.randn(6, 3).requires_grad_(), torch.randn(6, 3)
    memory = 2 * budget.TEMPORARIES * 6 * 4  # 6 x 6 responsibilities in float32: three row blocks
    with pytest.warns(UserWarning, match="runs eagerly"):
        lat = zones.latents(anchors, noise, steps=3, compile=True, flow_memory=memory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = zones.latents(anchors, noise, steps=3)
    assert torch.equal(lat, ref)
