"""lzn.atomic: whole files replaced atomically, appends in whole lines, the usual permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from lzn.atomic import append_text, atomic_save_npy, atomic_write, atomic_write_text


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_follow_the_umask(tmp_path, umask):
    assert _mode(atomic_write_text(tmp_path / "a.txt", "x")) == 0o644
    assert _mode(append_text(tmp_path / "b.jsonl", "{}\n")) == 0o644
    umask(0o002)
    assert _mode(atomic_write_text(tmp_path / "c.txt", "x")) == 0o664  # a group sharing a results folder
    umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "d.txt", "x")) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "r.json", "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write_text(tmp_path, "x")


def test_npy_goes_to_exactly_the_given_path_and_appends_add_lines(tmp_path):
    atomic_save_npy(tmp_path / "pred", np.arange(3))  # no ".npy" appended behind the caller's back
    assert np.load(tmp_path / "pred").tolist() == [0, 1, 2]
    append_text(tmp_path / "log", "a\n")
    append_text(tmp_path / "log", "b\nc\n")
    assert (tmp_path / "log").read_text() == "a\nb\nc\n"
