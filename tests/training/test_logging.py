"""Metrics files (JSONL record of truth, CSV with a growing header), window means, TensorBoard wiring."""

from __future__ import annotations

import csv
import json
import sys
import types

import pytest

from lzn.training import MetricsWindow, MetricsWriter
from tests.training.toy import make_trainer


def test_window_means_per_key_and_items_per_second():
    window = MetricsWindow()
    window.add({"loss": 1.0, "grad_norm": 4.0}, items=8)
    window.add({}, items=None)  # a skipped step contributes nothing
    window.add({"loss": 3.0}, items=8)
    out = window.read()
    assert out["loss"] == 2.0 and out["grad_norm"] == 4.0 and out["items_per_s"] > 0
    assert window.read() == {}  # reset after reading


def test_csv_header_grows_and_resume_drops_replayed_rows(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write({"step": 1, "loss": 1.0})
    writer.write({"step": 2, "loss": 0.5, "acc": 0.9})  # a new column: the CSV is rewritten
    writer.write({"step": 3, "loss": 0.25, "acc": 0.95})
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "acc"] and rows[0]["acc"] == "" and rows[2]["acc"] == "0.95"
    MetricsWriter(tmp_path, resume_step=2)  # resuming from a step-2 checkpoint
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    with open(tmp_path / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2"]


def test_tensorboard_wiring_with_a_stand_in_writer(tmp_path, monkeypatch):
    scalars, made = [], []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            made.append((log_dir, purge_step))

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            made.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    make_trainer(tmp_path, steps=2, tensorboard=True).fit()
    assert made[0] == (str(tmp_path / "tensorboard"), 1) and made[-1] == "closed"
    assert {(t, s) for t, _, s in scalars} >= {("loss", 1), ("loss", 2), ("lr_enc", 2), ("grad_norm", 2)}


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        MetricsWriter(tmp_path, tensorboard=True)


def test_progress_bar_shows_loss_on_the_main_rank(tmp_path, capsys):
    pytest.importorskip("tqdm")
    make_trainer(tmp_path, steps=3, progress=True).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err
