"""Atomic checkpoint files, keep-last-K, and clear errors for damaged files."""

from __future__ import annotations

import os

import pytest
import torch

from lzn.training import checkpoint as ckpt
from lzn.training import CheckpointError
from tests.training.toy import make_trainer


def test_names_listing_and_latest(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None and ckpt.list_checkpoints(tmp_path) == []
    for step in (12, 3, 1000000000):
        ckpt.save_checkpoint({"step": step}, ckpt.checkpoint_path(tmp_path, step))
    (ckpt.checkpoint_dir(tmp_path) / ".step-000000099.pt.abc.tmp").write_bytes(b"partial")
    (ckpt.checkpoint_dir(tmp_path) / "notes.txt").write_text("not a checkpoint")
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 12, 1000000000]
    assert ckpt.checkpoint_path(tmp_path, 12).name == "step-000000012.pt"
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["step"] == 1000000000


def test_crash_during_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    good = ckpt.save_checkpoint({"w": torch.ones(3)}, ckpt.checkpoint_path(tmp_path, 1))
    real_save = torch.save
    seen = []

    def crashing_save(obj, f):
        real_save(obj, f)
        f.flush()
        f.truncate(10)  # half-written file...
        seen.append(sorted(p.name for p in good.parent.iterdir()))
        raise OSError("disk full")  # ...and the writer dies

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"w": torch.zeros(3)}, ckpt.checkpoint_path(tmp_path, 2))
    # while the write was under way only a hidden temp file existed next to the good checkpoint
    assert seen[0][0].startswith(".step-000000002.pt.") and seen[0][1] == good.name
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]  # temp file removed
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert torch.equal(ckpt.load_checkpoint(good)["w"], torch.ones(3))


def test_keep_last_k_and_stale_temp_files(tmp_path):
    for step in range(1, 7):
        ckpt.save_checkpoint({"step": step}, ckpt.checkpoint_path(tmp_path, step))
    stale = ckpt.checkpoint_dir(tmp_path) / ".step-000000007.pt.x.tmp"
    stale.write_bytes(b"left by a killed run")
    removed = ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert len(removed) == 5 and not stale.exists()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [5, 6]
    with pytest.raises(ValueError):
        ckpt.prune_checkpoints(tmp_path, 0)


def test_trainer_keeps_last_k(tmp_path):
    make_trainer(tmp_path, steps=9, checkpoint_every=2, keep_last=2).fit()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [8, 9]  # every 2 steps and at the end


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_damaged_checkpoint_raises_naming_the_file(tmp_path, damage):
    make_trainer(tmp_path, steps=4, checkpoint_every=2).fit()
    latest = ckpt.latest_checkpoint(tmp_path)
    if damage == "truncate":
        data = latest.read_bytes()
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        latest.write_bytes(os.urandom(256))
    else:
        torch.save({"just": "a dict"}, latest)
    trainer = make_trainer(tmp_path, steps=6, checkpoint_every=2)
    with pytest.raises(CheckpointError, match=str(latest.name)):
        trainer.fit()
    latest.unlink()  # the documented remedy: resume from the previous checkpoint
    trainer = make_trainer(tmp_path, steps=6, checkpoint_every=2)
    trainer.fit()
    assert trainer.step == 6


def test_checkpoint_from_another_model_is_rejected(tmp_path):
    make_trainer(tmp_path, steps=2).fit()
    trainer = make_trainer(tmp_path, steps=4)
    trainer.modules["dec"] = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="does not match"):
        trainer.fit()


def test_non_finite_weights_are_refused_by_name():
    from lzn.training.checkpoint import check_finite_weights

    good, bad = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    check_finite_weights({"encoder": good})  # finite: nothing to say
    with torch.no_grad():
        bad.bias[1] = float("inf")
    with pytest.raises(RuntimeError, match=r"NaN or infinite weights in \['decoder'\]; nothing was exported"):
        check_finite_weights({"encoder": good, "decoder": bad})
