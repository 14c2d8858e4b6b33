"""inrlib.io: atomic writes keep the old file on failure, leave no temporaries, and get the usual file mode."""
import os
import stat

import pytest

from inrlib.io import atomic_path, atomic_write, read_json, write_json


def test_atomic_write_replaces_and_uses_umask_mode(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    old = os.umask(0o022)
    try:
        atomic_write(path, "{\"a\": 2}")
    finally:
        os.umask(old)
    assert read_json(path) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.txt"
    atomic_write(path, "good")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
