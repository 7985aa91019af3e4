"""Tiny models for the serve tests, trained once per session in a few seconds (tests/recipes/tiny.py), the
services over them, and a real `lzn serve` process for the browser tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lzn.data import load_digits
from lzn.models import LatentZoningNetwork
from lzn.recipes import runner
from lzn.serve import Gallery, Limits, ModelService, Settings
from tests.recipes.tiny import sets

ROOT = Path(__file__).resolve().parents[2]
ZONE_POINTS = 300  # t-SNE of 300 points: under a second


def _train(recipe: str, out: Path) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is faster than two contending ones
    try:
        overrides = [s for s in sets(recipe) if not s.startswith("train.checkpoint_every")]
        runner.train(recipe, runner.resolve_config(recipe, "digits", sets=overrides), out)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="session")
def joint_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("joint", tmp_path_factory.mktemp("serve") / "joint")


@pytest.fixture(scope="session")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("text", tmp_path_factory.mktemp("serve") / "text")


@pytest.fixture(scope="session")
def gallery() -> Gallery:
    train = load_digits(split="train")
    return Gallery(train.images, train.labels, "digits-train", train.class_names)


def make_service(run: Path, gallery: Gallery | None, limits: Limits | None = None) -> ModelService:
    model = LatentZoningNetwork.from_pretrained(str(run / "model"))
    return ModelService(model, gallery, limits or Limits(), Settings(noise_scale=1.0, steps=3, zone_points=ZONE_POINTS))


@pytest.fixture(scope="session")
def joint_service(joint_run: Path, gallery: Gallery) -> ModelService:
    return make_service(joint_run, gallery)


@pytest.fixture(scope="session")
def text_service(text_run: Path, gallery: Gallery) -> ModelService:
    return make_service(text_run, gallery)


class Server:
    """`lzn serve RUN --port 0` in a process of its own: its address, and its output once stopped."""

    def __init__(self, run: Path, *flags: str) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "lzn", "serve", str(run), "--port", "0", "--zone-points", str(ZONE_POINTS), *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(r" at (http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
                return
        self.proc.kill()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        raise AssertionError(f"lzn serve did not start: {''.join(self.lines)}{err}")

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it: (exit code, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture(scope="session")
def joint_server(joint_run: Path):
    server = Server(joint_run)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def text_server(text_run: Path):
    server = Server(text_run, "--token", "s3cret")
    yield server
    server.stop()
