"""The atomic writer: whole files or none, ordinary permissions, leftovers of a killed write found."""

from __future__ import annotations

import os
import stat

import pytest

from glip.files import stale_temporaries, write_atomically


def test_writes_and_replaces_whole_files_with_ordinary_permissions(tmp_path):
    old_mask = os.umask(0o022)
    try:
        path = write_atomically(tmp_path / "sub" / "a.json", lambda t: t.write_text("one"))
        assert path.read_text() == "one"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the 0600 of a temporary file
        write_atomically(path, lambda t: t.write_text("two"), durable=True)
        assert path.read_text() == "two"
    finally:
        os.umask(old_mask)
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")

    def fail(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stale_temporaries_of_a_killed_write(tmp_path):
    (tmp_path / ".step_00000010.pt.k3j2.tmp").write_text("half")
    (tmp_path / ".model.safetensors.x1.tmp").write_text("half")
    (tmp_path / "step_00000010.pt").write_text("whole")
    assert [p.name for p in stale_temporaries(tmp_path, "step_*.pt")] == [".step_00000010.pt.k3j2.tmp"]
    assert len(stale_temporaries(tmp_path)) == 2
