"""Chunked steps (train.chunk_size, method.md §9.7): gradient caching gives the unchunked step's
gradients and loss exactly, for every LZN recipe, in float64, on one process and on two gloo processes;
through the Trainer and `lzn train` the weights equal an unchunked run's; bad values are refused with
the key named."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from lzn import distributed
from lzn.cli.main import main
from lzn.data import load_split
from lzn.recipes.common import cached_anchors, check_chunkable, data_info
from lzn.recipes.runner import RECIPES, resolve_config
from lzn.training import StepOutput, TrainConfig, Trainer, latest_checkpoint, load_checkpoint
from tests.gloo import start_workers
from tests.recipes.tiny import sets

BATCH = 12
LZN_RECIPES = ["generation", "joint", "nogen", "representation"]


@pytest.fixture(scope="module")
def digits():
    return load_split(resolve_config("joint", "digits").data, "train")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def one_step(name: str, data, chunk: int | None, scale: float = 1.0, settings: tuple[str, ...] = ()):
    """Loss, metrics and parameter gradients (scaled by ``scale``) of step 0 on a fixed float64 batch."""
    extra = [f"batch_size={BATCH}", *settings] + ([f"train.chunk_size={chunk}"] if chunk is not None else [])
    cfg = resolve_config(name, "digits", sets=sets(name) + extra)
    torch.manual_seed(0)
    rec = RECIPES[name](cfg, data_info(data))
    rec.attach_data(data)
    with torch.no_grad():  # off the initialisation, whose zero output layers would stop the encoder's gradient
        for p in (p for m in rec.modules.values() for p in m.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    x, y = rec.batches(0)
    torch.manual_seed(2)
    out = rec.step((x.double(), y), 0)
    if chunk is None or chunk >= BATCH:
        assert out.backward is None and out.loss is not None
        loss = out.loss.detach()
        (scale * out.loss).backward()
    else:
        assert out.loss is None and out.backward is not None
        loss = out.backward(scale)
    grads = {f"{m}.{p}": t.grad.clone() for m, mod in rec.modules.items() for p, t in mod.named_parameters()}
    return loss, {k: float(v) for k, v in out.metrics.items()}, grads


@pytest.mark.parametrize("name", LZN_RECIPES)
def test_chunked_step_equals_the_unchunked_step(name, digits, float64):
    loss0, metrics0, grads0 = one_step(name, digits, None)
    assert all(g.abs().sum() > 0 for g in grads0.values()), "every parameter must get a gradient"
    for chunk in (4, 5, BATCH):  # divides the batch, does not, covers it (the plain step)
        loss, metrics, grads = one_step(name, digits, chunk)
        assert loss.dtype == torch.float64 and float(loss) == pytest.approx(float(loss0), rel=1e-12)
        assert metrics.keys() == metrics0.keys()
        for k in metrics0:
            assert metrics[k] == pytest.approx(metrics0[k], rel=1e-10, abs=1e-12), (chunk, k)
        assert_same_gradients(grads, grads0, f"chunk {chunk}")


def test_chunked_step_equals_the_unchunked_step_with_two_flows(digits, float64):
    """align_noise_scale apart from noise_scale: the decoder's latents and the alignment's come from two flows
    of the same anchors, and the chunked step still gives the plain step's gradients."""
    settings = ("align_noise_scale=0.0",)
    loss0, _, grads0 = one_step("joint", digits, None, settings=settings)
    loss, _, grads = one_step("joint", digits, 5, settings=settings)
    assert float(loss) == pytest.approx(float(loss0), rel=1e-12)
    assert_same_gradients(grads, grads0, "chunk 5, two flows")
    plain, _, _ = one_step("joint", digits, None)
    assert float(plain) != pytest.approx(float(loss0), rel=1e-6)  # the setting changes the step


def assert_same_gradients(grads, grads0, what: str, scale: float = 1.0) -> None:
    """Each parameter's gradient to 1e-6 relative; a gradient that is zero in exact arithmetic (the last
    bias of the representation encoder: the latent flow is translation invariant) to 1e-12 of the whole."""
    total = float(torch.cat([g.flatten() for g in grads0.values()]).norm()) * scale
    for k, g0 in grads0.items():
        err = float((grads[k] - scale * g0).norm())
        assert err <= 1e-6 * scale * float(g0.norm()) + 1e-12 * total, f"{what}: {k} differs by {err:.2e}"


def test_cached_anchors_replay_the_dropout_masks_of_their_first_pass():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5))
    x, g = torch.randn(7, 5), torch.randn(7, 4)
    torch.manual_seed(1)
    anchors, replay = cached_anchors(encoder, x, 3)  # chunks of 3, 3, 1
    after = torch.get_rng_state()
    anchors.grad = g
    replay()
    assert torch.equal(torch.get_rng_state(), after)  # the replay leaves the global random state alone
    cached = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    torch.manual_seed(1)  # reference: the same chunks, with their graph, the masks drawn in the same order
    outs = [encoder(xc) for xc in x.split(3)]
    torch.testing.assert_close(torch.cat(outs), anchors.detach(), rtol=0, atol=0)
    sum((o * gc).sum() for o, gc in zip(outs, g.split(3))).backward()
    for p, c in zip(encoder.parameters(), cached):
        torch.testing.assert_close(c, p.grad)


def test_chunked_step_scales_its_gradients(digits, float64):
    _, _, grads0 = one_step("joint", digits, None)
    _, _, grads = one_step("joint", digits, 5, scale=8.0)  # the loop's fp16 loss scale
    assert_same_gradients(grads, grads0, "scale 8", scale=8.0)


def _gloo_worker(rank: int, tmp: str, data) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=2)
    try:
        out = {}
        for name in ("generation", "joint", "representation"):
            for chunk in (None, 4):  # local batch 6: chunks of 4 and 2
                loss, _, grads = one_step(name, data, chunk)  # this rank's half of the batch
                for g in grads.values():  # the loop's gradient averaging (method.md §4.2)
                    dist.all_reduce(g)
                    g /= 2
                out[name, chunk] = loss, grads
        torch.save(out, f"{tmp}/rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers (spawn re-imports torch: seconds)")
def test_chunked_step_equals_the_unchunked_step_on_two_processes(digits, tmp_path):
    start_workers(_gloo_worker, (str(tmp_path), digits), results=[tmp_path / f"rank{r}.pt" for r in range(2)],
                  start_method="fork")
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        for name in ("generation", "joint", "representation"):
            (loss0, grads0), (loss, grads) = out[name, None], out[name, 4]
            assert float(loss) == pytest.approx(float(loss0), rel=1e-12)
            assert_same_gradients(grads, grads0, f"{name}, rank {rank}")


def final_weights(out_dir) -> dict[str, torch.Tensor]:
    state = load_checkpoint(latest_checkpoint(out_dir))
    return {f"{m}.{k}": v for m, sd in state["modules"].items() for k, v in sd.items()}


def test_lzn_train_with_chunks_gives_the_unchunked_weights(tmp_path):
    def run(out, *extra):
        args = ["train", "joint", "--preset", "digits", "--out", str(out)]
        for item in [*sets("joint"), f"batch_size={BATCH}", "train.steps=2", "data.test_split=null",
                     "reference_size=0", *extra]:
            args += ["--set", item]
        assert main(args) == 0
        return final_weights(out)

    plain = run(tmp_path / "plain")
    chunked = run(tmp_path / "chunked", "train.chunk_size=5")
    assert plain.keys() == chunked.keys()
    assert load_checkpoint(latest_checkpoint(tmp_path / "chunked"))["step"] == 2
    # float32 and Adam: each coordinate's step is its gradient over the root of its second moment, so the
    # round-off between chunked and plain sums is amplified where a gradient is nearly zero (the anchors'
    # common shift, to which the loss is almost invariant): 1.4e-5 seen on one element with one thread. The
    # exact equality is tested on gradients in float64 above; here the wiring, at 5 % of a step (lr 1e-3).
    for k, w in plain.items():
        torch.testing.assert_close(chunked[k], w, rtol=1e-5, atol=5e-5, msg=k)


@pytest.mark.parametrize("value, needle", [("0", "integer >= 1"), ("-3", "integer >= 1"), ("2.5", "integer"),
                                           ("many", "integer"), ("true", "integer")])
def test_bad_chunk_size_names_the_key(value, needle, tmp_path, capsys):
    args = ["train", "joint", "--preset", "digits", "--out", str(tmp_path / "a")]
    for item in [*sets("joint"), f"train.chunk_size={value}"]:
        args += ["--set", item]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.chunk_size" in err and needle in err, err
    assert not (tmp_path / "a").exists()


def test_chunk_size_is_refused_where_it_cannot_be_honoured(digits):
    with pytest.raises(ValueError, match="chunk_size must be null .* or an integer >= 1"):
        TrainConfig(lr=1e-3, steps=1, chunk_size=0)
    for name in ("rf", "simclr", "classifier"):  # their steps are not chunked
        cfg = resolve_config(name, "digits", sets=sets(name) + ["train.chunk_size=4"])
        with pytest.raises(ValueError, match="train.chunk_size: recipe .* has no chunked step"):
            RECIPES[name](cfg, data_info(digits))
    with pytest.raises(ValueError, match="train.chunk_size: encoder has BatchNorm"):
        check_chunkable({"encoder": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))})


def test_trainer_runs_a_closure_step_and_skips_a_nonfinite_one(tmp_path):
    """The loop is LZN-agnostic: a step that runs its own backward equals a plain step, and a
    non-finite closure loss skips the step with its gradients discarded."""
    def make(closure: bool, nan_at: int | None = None):
        torch.manual_seed(0)
        lin = nn.Linear(3, 1)
        x, y = torch.randn(8, 3), torch.randn(8, 1)

        def step_fn(batch, step):
            def loss_fn():
                loss = ((lin(x) - y) ** 2).mean()
                return loss * math.nan if step == nan_at else loss

            if not closure:
                return StepOutput(loss_fn())
            metrics: dict = {}

            def backward(scale):
                loss = loss_fn()
                (scale * loss).backward()
                metrics["half"] = 0.5 * loss.detach()
                return loss.detach()

            return StepOutput(None, metrics, backward=backward)

        cfg = TrainConfig(lr=1e-2, steps=3, warmup_steps=1, ema_decay=0.0, checkpoint_every=None, log_every=1,
                          progress=False)
        trainer = Trainer({"lin": lin}, step_fn, lambda step: None, cfg, tmp_path / f"{closure}-{nan_at}")
        row = trainer.fit()
        return trainer, row, {k: v.clone() for k, v in lin.state_dict().items()}

    _, row0, w0 = make(False)
    _, row1, w1 = make(True)
    assert row1["loss"] == pytest.approx(row0["loss"]) and row1["half"] == pytest.approx(0.5 * row0["loss"])
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], rtol=0, atol=0)
    trainer, _, _ = make(True, nan_at=1)
    assert trainer.skipped["nonfinite_loss"] == 1 and trainer.opt_steps == 2
    with pytest.raises(ValueError, match="exactly one of loss"):
        StepOutput(None)
