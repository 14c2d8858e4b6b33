"""inrlib.resources: one reader and one truthiness rule for every INRLIB_* variable; the progress policy."""
import sys

import pytest

from inrlib import resources
from inrlib.resources import ENV_VARS, env_flag, env_path, progress_enabled


@pytest.mark.parametrize("raw, want", [("1", True), ("true", True), (" YES ", True), ("On", True),
                                       ("0", False), ("false", False), (" No ", False), ("off", False)])
def test_env_flag_reads_yes_and_no_in_any_case(monkeypatch, raw, want):
    monkeypatch.setenv("INRLIB_OFFLINE", raw)
    assert env_flag("INRLIB_OFFLINE") is want


def test_env_flag_default_when_unset_or_empty_and_refuses_other_words(monkeypatch):
    monkeypatch.delenv("INRLIB_OFFLINE", raising=False)
    assert env_flag("INRLIB_OFFLINE") is False and env_flag("INRLIB_OFFLINE", default=None) is None
    monkeypatch.setenv("INRLIB_OFFLINE", "  ")
    assert env_flag("INRLIB_OFFLINE", default=True) is True            # empty counts as unset
    monkeypatch.setenv("INRLIB_OFFLINE", "maybe")
    with pytest.raises(ValueError, match=r"INRLIB_OFFLINE='maybe' is neither yes nor no.*unset it"):
        env_flag("INRLIB_OFFLINE")


def test_only_known_variables_are_read(monkeypatch, tmp_path):
    with pytest.raises(KeyError, match="INRLIB_NOPE is not an inrlib environment variable"):
        env_flag("INRLIB_NOPE")
    monkeypatch.setenv("INRLIB_CACHE", str(tmp_path))
    assert env_path("INRLIB_CACHE") == tmp_path
    monkeypatch.setenv("INRLIB_CACHE", "")
    assert env_path("INRLIB_CACHE") is None


def test_every_variable_the_package_reads_is_declared():
    """A grep of the package: each INRLIB_* name in the source is in ENV_VARS, and only resources.py reads os.environ for them."""
    import re
    from pathlib import Path
    root = Path(resources.__file__).parent
    names, readers = set(), set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"INRLIB_[A-Z_]+", text))
        if re.search(r"environ(\.get)?\(?\[?[\"']INRLIB_", text):
            readers.add(path.name)
    assert names <= set(ENV_VARS), names - set(ENV_VARS)
    assert readers <= {"resources.py"}, readers


class _Tty:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty

    def write(self, s):
        pass


def test_progress_rule_flag_then_ci_then_a_person(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    for flag, want in (("0", False), ("no", False), ("1", True), ("TRUE", True)):
        monkeypatch.setenv("INRLIB_PROGRESS", flag)
        assert progress_enabled() is want, flag
    monkeypatch.setenv("INRLIB_PROGRESS", "")
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False                                  # CI: nobody watching
    monkeypatch.setenv("INRLIB_PROGRESS", "1")
    assert progress_enabled() is True                                   # the flag wins over CI
    monkeypatch.delenv("CI")
    monkeypatch.delenv("INRLIB_PROGRESS")
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", _Tty(False))
    assert progress_enabled() is False
    monkeypatch.setattr(sys, "stderr", _Tty(True))
    assert progress_enabled() is True
    monkeypatch.setattr(sys, "stderr", object())                        # no isatty at all
    assert progress_enabled() is False
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progress_enabled() is True
