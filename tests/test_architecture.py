"""The house: layers that never point up, no import cycles, a core library without the book's dependencies.

The layer map and the walker are scripts/import_graph.py; these tests run it on the package and on small
synthetic trees (so each check is seen to fail on the mistake it exists for).
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import import_graph as G  # noqa: E402


def test_no_module_imports_a_layer_above_its_own():
    up = G.upward_edges(G.imports(ROOT))
    assert not up, "upward imports (a lower layer importing a higher one): " + ", ".join(f"{a} -> {b}" for a, b in up)


def test_no_import_cycles():
    assert G.cycles(G.imports(ROOT)) == []


def test_every_module_has_a_layer():
    for module in G.modules(ROOT):
        assert G.layer_of(module) in G.LAYERS


def _tree(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_walker_finds_an_upward_edge_even_inside_a_function_and_a_relative_one(tmp_path):
    root = _tree(tmp_path, {
        "inrlib/__init__.py": "",
        "inrlib/encodings.py": "def f():\n    from .book import runtime\n",
        "inrlib/train.py": "from inrlib.research import claims\n",
        "inrlib/metrics.py": "from . import io\n",
        "inrlib/io.py": "",
        "inrlib/book/__init__.py": "",
        "inrlib/book/runtime.py": "from ..metrics import x\n",
        "inrlib/research/__init__.py": "",
        "inrlib/research/claims.py": "",
    })
    graph = G.imports(root)
    assert graph["inrlib.encodings"] == {"inrlib.book.runtime"}
    assert graph["inrlib.metrics"] == {"inrlib.io"}                          # a submodule, not the package
    assert G.upward_edges(graph) == [("inrlib.encodings", "inrlib.book.runtime"), ("inrlib.train", "inrlib.research.claims")]
    assert G.main([str(root)]) == 1


def test_the_walker_finds_a_cycle_but_not_a_package_and_its_submodules(tmp_path):
    root = _tree(tmp_path, {
        "inrlib/__init__.py": "",
        "inrlib/ntk/__init__.py": "from .engine import run\n",
        "inrlib/ntk/engine.py": "from . import terms\nfrom inrlib.ntk import terms as t\n",
        "inrlib/ntk/terms.py": "",
        "inrlib/train.py": "import inrlib.metrics\n",
        "inrlib/metrics.py": "def f():\n    from .train import fit\n",
    })
    assert G.cycles(G.imports(root)) == [["inrlib.metrics", "inrlib.train"]]


def test_a_module_outside_the_map_is_named():
    with pytest.raises(KeyError, match="inrlib.newthing is in no layer: add it to LAYER_OF"):
        G.layer_of("inrlib.newthing")


def test_the_core_library_imports_without_jupyter_or_matplotlib():
    """`pip install .` without extras: the core modules import with the book's packages made unimportable."""
    blocked = ["matplotlib", "IPython", "ipywidgets", "ipykernel", "papermill", "jupytext", "nbformat", "jupyter_book"]
    core = ["inrlib.io", "inrlib.resources", "inrlib.coords", "inrlib.encodings", "inrlib.layers", "inrlib.models",
            "inrlib.ntk", "inrlib.train", "inrlib.metrics", "inrlib.render", "inrlib.data", "inrlib.research.papers",
            "inrlib.research.experiments", "inrlib.research.sweep", "inrlib.research.tuning", "inrlib.research.claims",
            "inrlib.research.theory"]
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {blocked!r}:
                    raise ImportError('blocked for the test: ' + name)
        sys.meta_path.insert(0, Block())
        import importlib
        for m in {core!r}:
            importlib.import_module(m)
        bad = sorted(m for m in sys.modules if m.split('.')[0] in {blocked!r})
        assert not bad, bad
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
