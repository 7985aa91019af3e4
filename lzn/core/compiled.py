"""The compiled path of the forward latent flow (method.md §2.11): ``torch.compile`` of a whole flow.

At the sizes most runs train on (tens of latent dimensions, a few hundred anchors) a flow step is a
few dozen small kernels, and their per-operation cost outweighs the arithmetic. Compiling the whole
flow (every step of ``latent_flow.flow_points``, and every step of its adjoint ``flow_adjoint``) into one
graph each lets Inductor fuse the logits' bias, the softmax, the multistep update and the adjoint's
elementwise work into a few loops around the matrix products, with no Python between steps.

The compiled functions are the eager ones, traced: the results equal the eager flow's up to float
round-off (tests/core/test_compiled.py). One pair of graphs is built per plan (solver, steps, eps),
shape and set of needed gradients, on first use; building takes seconds to a minute, so the path
is meant for training loops (``train.compile``), not for one-off calls.

Only a flow whose (B, n) responsibility matrix fits one block of its memory budget (``lzn.core.budget``)
is compiled. Larger ones are bound by their matrix products, which compiling does not speed up; they run
eagerly, with a warning. The pair returned here is handed to ``latent_flow.LatentFlow``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lzn.core.budget import Blocks
from lzn.core.latent_flow import FlowFns, Plan, flow_adjoint, flow_points


def compile_problem(device: torch.device | str = "cpu") -> str | None:
    """Why ``torch.compile`` cannot run the flow on ``device`` here, or None when it can."""
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return f"torch.compile does not support Python {sys.version.split()[0]} in torch {torch.__version__}"
    except Exception as exc:  # an import error of the compiler stack
        return f"torch.compile is unavailable ({type(exc).__name__}: {exc})"
    if device.type == "cpu":
        cxx = os.environ.get("CXX")
        found = shutil.which(cxx) if cxx else next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        if not found:
            want = f"$CXX = {cxx!r}" if cxx else "g++, c++ or clang++"
            return f"Inductor's CPU backend needs a C++ compiler and none was found ({want})"
    elif device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Inductor's GPU backend needs triton, which is not installed"
    return None


def check_compile(device: torch.device | str = "cpu") -> None:
    """Raise a RuntimeError naming ``train.compile`` when the compiled path cannot run on ``device``."""
    problem = compile_problem(device)
    if problem is not None:
        raise RuntimeError(f"train.compile (compile=True): {problem}. Set train.compile=false: the eager flow "
                           "gives the same results up to float round-off")


def flow_functions(x: Tensor, anchors: Tensor, plan: Plan, blocks: Blocks) -> FlowFns | None:
    """Compiled (forward, adjoint) for this plan, with the signatures of ``flow_points`` and
    ``flow_adjoint``; None (with a warning) when the flow is too large to gain from compiling (more than
    one block); raises when the compiler is missing."""
    check_compile(x.device)
    b, n = x.shape[0], anchors.shape[0]
    if blocks.rows < b:
        warnings.warn(f"compile: a latent flow of B x n = {b} x {n} responsibilities runs eagerly (more than one "
                      "row block; its time is in matrix products, which compiling does not speed up)", stacklevel=4)
        return None
    key = tuple((t, alpha, tuple(sorted(betas.items()))) for t, alpha, betas in plan)

    def forward(x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, plan: Plan, rows: int | None,
                keep: bool) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        end, xs, ws = _forward(key, keep)(x, anchors, sq, log_weights)
        return end, list(xs), list(ws)

    def adjoint(g_out: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, xs: list[Tensor],
                ws: list[Tensor], plan: Plan, rows: int | None, need_anchors: bool,
                need_log_weights: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        fn = _adjoint(key, bool(ws), need_anchors, need_log_weights)
        return fn(g_out.contiguous(), anchors, sq, log_weights, list(xs), list(ws))

    return forward, adjoint


Key = tuple[tuple[float, float, tuple[tuple[int, float], ...]], ...]
# the compiled twins of flow_points and flow_adjoint with the plan (and rows, keep, needs) bound
Forward = Callable[[Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, list[Tensor], list[Tensor]]]
Adjoint = Callable[[Tensor, Tensor, Tensor, Tensor | None, list[Tensor], list[Tensor]],
                   tuple[Tensor, Tensor | None, Tensor | None]]


def _plan(key: Key) -> Plan:
    return [(t, alpha, dict(betas)) for t, alpha, betas in key]


@functools.lru_cache(maxsize=32)
def _forward(key: Key, keep: bool) -> Forward:
    """One compiled forward per plan (its coefficients are constants of the graph) and ``keep``."""
    plan = _plan(key)

    def forward(x: Tensor, anchors: Tensor, sq: Tensor,
                log_weights: Tensor | None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        return flow_points(x, anchors, sq, log_weights, plan, None, keep)

    return torch.compile(forward, fullgraph=True, dynamic=False)


@functools.lru_cache(maxsize=64)
def _adjoint(key: Key, kept: bool, need_anchors: bool, need_log_weights: bool) -> Adjoint:
    """One compiled adjoint per plan, kept responsibilities or not, and set of needed gradients."""
    plan = _plan(key)

    def adjoint(g_out: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, xs: list[Tensor],
                ws: list[Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return flow_adjoint(g_out, anchors, sq, log_weights, xs, ws if kept else [], plan, None, need_anchors,
                            need_log_weights)

    return torch.compile(adjoint, fullgraph=True, dynamic=False)
