"""README.md: its library example runs, and every path, module, make target and marker it names exists.

The README is what a newcomer reads first, so what it states is held to the repository here: the one
``python`` block is executed as a script, each backticked repository path must exist, each dotted
``inrlib.`` name must import, each ``make`` target must be in the Makefile and each ``-m`` marker must
be declared in pyproject.toml.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
PROSE = FENCE.sub("", README)                                   # the text outside fenced blocks
SPANS = re.findall(r"`([^`\n]+)`", PROSE)                        # inline code spans
TOP = ("inrlib/", "tests/", "scripts/", "book/", "docs/", "benchmarks/", ".ci/")
FILES = ("Makefile", "pyproject.toml", "constraints.txt", "environment.yml", "_toc.yml", "_config.yml")


def blocks(lang: str) -> list[str]:
    return [body for tag, body in FENCE.findall(README) if tag == lang]


def repo_paths() -> set[str]:
    """Backticked spans (and paths in the bash blocks) that name a file or folder of the repository.

    Templates (``book/<name>.py``), globs (``*.json``), build outputs (``_build/...``) and paths outside
    the repository (``../shared/papers/``) are not paths to check."""
    words = {s for s in SPANS if " " not in s}
    starts = "|".join(map(re.escape, TOP))
    for body in blocks("bash"):
        words |= set(re.findall(rf"(?:^|\s)((?:{starts})[\w./-]+)", body))
    return {w for w in words if (w.startswith(TOP) or w in FILES) and not any(c in w for c in "<>*$=")}


def test_readme_is_short():
    n = README.count("\n")
    assert n <= 200, f"README.md has {n} lines; keep it to 200 and move the detail to docs/ (see its last section)"


def test_the_library_example_runs(tmp_path):
    code = blocks("python")
    assert len(code) == 1, f"README.md should have exactly one python block (the library example), has {len(code)}"
    script = tmp_path / "readme_example.py"
    script.write_text(code[0], encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "INRLIB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README.md's python example failed:\n{proc.stdout}\n{proc.stderr}"
    assert "History(20 epochs" in proc.stdout and "floor" in proc.stdout, proc.stdout


def test_the_path_finder_finds_paths():
    """The extraction itself: spans that are paths are found, templates and build outputs are not."""
    found = repo_paths()
    assert {"docs/library.md", "tests/test_readme.py", "inrlib/ntk/terms.py", "tests/test_encodings.py",
            "pyproject.toml"} <= found
    assert not any(p.startswith("_build") or "<" in p for p in found)


@pytest.mark.parametrize("path", sorted(repo_paths()))
def test_every_path_the_readme_names_exists(path):
    assert (ROOT / path).exists(), f"README.md names `{path}`, which is not in the repository; fix the README"


def test_the_figure_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README)
    assert images, "README.md shows no figure"
    for image in images:
        assert (ROOT / image).is_file(), f"README.md shows {image}, which is not in the repository"


@pytest.mark.parametrize("name", sorted({s for s in SPANS if re.fullmatch(r"inrlib(\.\w+)+", s)}))
def test_every_dotted_name_imports(name):
    """``inrlib.research.claims.claim``: the longest importable prefix is a module, the rest attributes."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            assert hasattr(obj, attr), f"README.md names `{name}`, but {'.'.join(parts[:n])} has no {attr!r}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"README.md names `{name}`, which does not import")


def test_every_make_target_is_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"book", "test"} <= named
    missing = sorted(named - targets)
    assert not missing, f"README.md names make targets the Makefile lacks: {missing}"


def test_every_marker_is_declared(request):
    declared = {m.split(":")[0].strip() for m in request.config.getini("markers")}
    used = set()
    for expr in re.findall(r'-m "([^"]+)"', README):
        used |= set(re.findall(r"\w+", expr)) - {"not", "and", "or"}
    assert used, "README.md shows no -m marker expression"
    assert used <= declared, f"README.md uses markers {sorted(used - declared)} that pyproject.toml does not declare"
