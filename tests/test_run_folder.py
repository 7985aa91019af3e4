"""The run folder's layout and readers (lzn/run_folder.py); its lock is tested in tests/cli/test_nothing_lost.py."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from lzn.run_folder import RunFolder, RunFolderError, read_results, read_run_file


def test_layout_names(tmp_path):
    """The names every run folder made so far uses: renaming one would orphan existing runs."""
    run = RunFolder(str(tmp_path))
    names = {k: getattr(run, k).relative_to(tmp_path).as_posix() for k in (
        "run_file", "lock", "train_config", "checkpoints", "log", "log_csv", "tensorboard", "samples_dir", "samples",
        "reconstructions", "model", "classifier", "results", "metrics", "report")}
    assert names == {
        "run_file": "run.yaml", "lock": ".lock", "train_config": "train_config.json", "checkpoints": "checkpoints",
        "log": "metrics.jsonl", "log_csv": "metrics.csv", "tensorboard": "tensorboard", "samples_dir": "samples",
        "samples": "samples.png", "reconstructions": "reconstructions.png", "model": "model",
        "classifier": "classifier", "results": "results.json", "metrics": "metrics.json", "report": "report.html"}
    assert run.sample_grid(120).relative_to(tmp_path).as_posix() == "samples/step-000000120.png"
    assert run == RunFolder(tmp_path) and run.path == tmp_path


def test_sample_grids_in_step_order(tmp_path):
    run = RunFolder(tmp_path)
    assert run.sample_grids() == []
    run.samples_dir.mkdir()
    for step in (1000, 20, 3):
        run.sample_grid(step).write_bytes(b"")
    (run.samples_dir / "lzn-sample.png").write_bytes(b"")  # `lzn sample` writes beside them: not a grid
    assert [s for s, _ in run.sample_grids()] == [3, 20, 1000]
    assert run.sample_grids()[0][1] == run.sample_grid(3)


def test_read_run_file(tmp_path):
    meta = {"recipe": "joint", "data_info": {"class_names": ["1e5", "cat"]}, "config": {"lr": 1e-4}}
    RunFolder(tmp_path).run_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    assert read_run_file(tmp_path) == meta  # what safe_dump wrote, read back as it was (a "1e5" stays a string)


@pytest.mark.parametrize("content, message", [
    (None, "is not an lzn run folder (no run.yaml)"),
    (b"recipe: [joint", "run.yaml is not readable YAML"),
    (b"\xff\xfe", "run.yaml is not readable YAML"),
    (b"- joint\n", "run.yaml must hold a YAML mapping"),
])
def test_read_run_file_errors(tmp_path, content, message):
    if content is not None:
        RunFolder(tmp_path).run_file.write_bytes(content)
    with pytest.raises(RunFolderError, match=re.escape(message)):
        read_run_file(tmp_path)
    assert issubclass(RunFolderError, ValueError)  # the CLI prints it as one line


def test_read_results(tmp_path):
    RunFolder(tmp_path).results.write_text(json.dumps({"steps": 3, "final_loss": 0.5}))
    assert read_results(tmp_path) == {"steps": 3, "final_loss": 0.5}


@pytest.mark.parametrize("content, message", [
    (None, "has no results.json"),
    (b'{"steps": 3', "results.json is not readable JSON"),
    (b"[1, 2]", "results.json must hold a JSON object"),
])
def test_read_results_errors(tmp_path, content, message):
    if content is not None:
        RunFolder(tmp_path).results.write_bytes(content)
    with pytest.raises(RunFolderError, match=re.escape(message)):
        read_results(tmp_path)
