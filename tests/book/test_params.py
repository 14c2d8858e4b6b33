"""inrlib.book.params: each parameter's type, range and value by profile, checked before a chapter computes.

- the schema type on its own: each refusal names the parameter and the value; None -> the profile's
  value; 0 kept as 0; strings (what ``-r`` passes) converted or refused; bools never numbers;
- every chapter: its schema covers its parameters cell, and every profile resolves to exactly the
  values the chapter used before the schema (its ``x = x or profile_value(...)`` lines, evaluated from
  the commit before the change, :data:`BEFORE`);
- the pipeline runs the schema before papermill: ``-p epochs -3`` stops at once, no notebook written.
"""
from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest

from inrlib.book import PROFILES, profile_value
from inrlib.book.params import COMMON, ListOf, Param, ParameterError, epoch_list, name_list, resolve

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bookpipe  # noqa: E402

#: the last commit whose chapters set their values with ``x = x or profile_value(...)`` lines
BEFORE = "8d093d9fbbbe80c4a9212aecba8794afbd49a878"
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.py"))


def refused(schema, given, profile="quick"):
    """The message ``resolve`` refuses ``given`` with (it must refuse)."""
    with pytest.raises(ParameterError) as info:
        resolve(schema, profile, given)
    return str(info.value)


# ============================================================ the schema type

@pytest.mark.parametrize("param, value, what", [
    (Param(int, min=1), 0, "an int >= 1"),
    (Param(int, min=1), 2.5, "an int >= 1"),
    (Param(int, min=1), "abc", "an int >= 1"),
    (Param(int, min=1, max=20), 21, "an int from 1 to 20"),
    (Param(int, max=5), 6, "an int <= 5"),
    (Param(float, min=0, exclusive=True), 0, "a number > 0"),
    (Param(float, min=0, exclusive=True), -0.5, "a number > 0"),
    (Param(float, min=0, exclusive=True, max=1), 1.5, "a number > 0 and <= 1"),
    (Param(float), math.nan, "a number"),
    (Param(float), math.inf, "a number"),
    (Param(float), "1e400", "a number"),                      # inf once parsed
    (Param(str, choices=("float64", "float32")), "float16", "one of 'float64', 'float32'"),
    (Param(str), "", "a non-empty string"),
    (Param(str), "  ", "a non-empty string"),
    (Param(bool), 1, "True or False"),
    (Param(bool), "yes", "True or False"),
    (Param(ListOf(int), min=1), [16, 0], "a list of ints >= 1"),
    (Param(ListOf(int), min=1), "16,x", "a list of ints >= 1"),
    (Param(ListOf(int), min=1), [], "a list of ints >= 1"),
    (Param(ListOf(float), min=0, exclusive=True), "[1.5, -2]", "a list of numbers > 0"),
    (Param(ListOf(int)), 16, "a list of ints"),
    (Param(name_list), " , ", "a name or path, or a comma-separated list of them"),
    (Param(name_list), ["bunny", 3], "a name or path"),
    (Param(epoch_list), "0,later", "epochs such as '0,30,60'"),
    (Param(epoch_list), -1, "epochs such as '0,30,60'"),
    (Param(epoch_list), [0, 2.5], "epochs such as '0,30,60'"),
])
def test_each_refusal_names_the_parameter_what_fits_and_the_value(param, value, what):
    message = refused({"x": param}, {"x": value})
    assert message.startswith(f"x must be {what}") and message.endswith(f"got {value!r}"), message


@pytest.mark.parametrize("kind", [int, float])
def test_bools_are_not_numbers(kind):
    for value in (True, False):
        assert refused({"n": Param(kind)}, {"n": value}).endswith(f"got {value!r}")
    assert refused({"flag": Param(bool)}, {"flag": 0}) == "flag must be True or False, got 0"


def test_none_is_the_profiles_value_and_zero_stays_zero():
    schema = {"heldout": Param(int, min=0, smoke=64, quick=1024, paper=4096),
              "epochs": Param(int, min=1, smoke=4, quick=60, paper=300)}
    for profile, held, ep in zip(PROFILES, (64, 1024, 4096), (4, 60, 300)):
        assert resolve(schema, profile, {"heldout": None, "epochs": None}) == {"heldout": held, "epochs": ep}
    out = resolve(schema, "smoke", {"heldout": 0, "epochs": 7})
    assert out == {"heldout": 0, "epochs": 7} and type(out["heldout"]) is int
    # the epochs bug: 0 was replaced by the profile's 6 and recorded as chosen; now it is refused, not replaced
    assert refused(schema, {"heldout": None, "epochs": 0}, "smoke") == \
        "epochs must be an int >= 1, or None (the profile's value), got 0"


def test_none_without_a_profile_value():
    schema = {"lr": Param(float, min=0, exclusive=True, none=True), "side": Param(int, min=2)}
    assert resolve(schema, "paper", {"lr": None, "side": 4}) == {"lr": None, "side": 4}
    assert refused(schema, {"lr": None, "side": None}) == "side must be an int >= 2, got None"
    assert refused(schema, {"lr": -1, "side": 4}) == "lr must be a number > 0, or None, got -1"


def test_default_and_profile_values_that_read_earlier_parameters():
    schema = {"side": Param(int, min=2, smoke=12, quick=32, paper=96),
              "tune_side": Param(int, min=2, smoke=8, quick=16, paper=lambda v: v["side"]),
              "lr_scale": Param(float, min=0, exclusive=True, default=10),
              "control": Param(bool, default=lambda v: v["lr_scale"] != 1),
              "batch": Param(int, min=1, smoke=256, quick=512, paper=None)}
    given = dict.fromkeys(schema)
    assert resolve(schema, "paper", given) == {"side": 96, "tune_side": 96, "lr_scale": 10, "control": True,
                                               "batch": None}
    assert resolve(schema, "paper", {**given, "side": 40, "lr_scale": 1}) == \
        {"side": 40, "tune_side": 40, "lr_scale": 1, "control": False, "batch": None}
    assert resolve(schema, "smoke", {**given, "control": False})["control"] is False
    # a refused parameter that a later profile value reads: only the refusal is reported
    assert refused(schema, {**given, "side": 1}, "paper") == \
        "side must be an int >= 2, or None (the profile's value), got 1"


def test_strings_from_r_are_converted_where_the_type_says_so():
    schema = {"side": Param(int, min=2), "lr": Param(float), "grayscale": Param(bool), "widths": Param(ListOf(int)),
              "ws": Param(ListOf(float)), "image": Param(str), "meshes": Param(name_list),
              "ntk_epochs": Param(epoch_list, none=True), "coarse": Param(int, none=True)}
    out = resolve(schema, "quick", {"side": " 16 ", "lr": "2.5", "grayscale": "true", "widths": "[16, 64]",
                                    "ws": "2,8.5", "image": "16", "meshes": "bunny,dragon", "ntk_epochs": "0,30,end",
                                    "coarse": "None"})
    assert out == {"side": 16, "lr": 2.5, "grayscale": True, "widths": [16, 64], "ws": [2.0, 8.5], "image": "16",
                   "meshes": "bunny,dragon", "ntk_epochs": "0,30,end", "coarse": None}
    assert type(out["side"]) is int and all(type(w) is int for w in out["widths"]) and type(out["ws"][0]) is float
    assert resolve(schema, "quick", {**out, "grayscale": "False"})["grayscale"] is False
    assert refused({"side": Param(int)}, {"side": "2.5"}) == "side must be an int, got '2.5'"
    assert refused({"side": Param(int)}, {"side": "abc"}) == "side must be an int, got 'abc'"


def test_values_are_used_as_given():
    schema = {"lr": Param(float, min=0, exclusive=True), "ws": Param(ListOf(float)), "meshes": Param(name_list),
              "ntk_epochs": Param(epoch_list)}
    out = resolve(schema, "quick", {"lr": 10, "ws": [1, 2.5], "meshes": ["a.ply", "bunny"], "ntk_epochs": 30})
    assert out == {"lr": 10, "ws": [1, 2.5], "meshes": ["a.ply", "bunny"], "ntk_epochs": 30}
    assert type(out["lr"]) is int and type(out["ws"][0]) is int


def test_a_number_for_a_string_says_how_to_pass_a_string():
    message = refused({"image": Param(str)}, {"image": 16})
    assert message.startswith("image must be a non-empty string, got 16") and "-r NAME VALUE" in message


def test_every_refusal_at_once_in_schema_order():
    message = refused(COMMON, {"profile": "quick", "device": "", "seed": -1})
    assert message.splitlines() == ["device must be a non-empty string, got ''", "seed must be an int >= 0, got -1"]


def test_profile_and_schema_mistakes():
    assert refused(COMMON, {"profile": "fast", "device": "cpu", "seed": 0}, "fast") == \
        "profile must be one of 'smoke', 'quick', 'paper', got 'fast'"
    with pytest.raises(TypeError, match="declares side, which the parameters cell does not define"):
        resolve({"side": Param(int)}, "quick", {})
    with pytest.raises(TypeError, match="the schema's paper value of side does not fit its own Param: side must be"):
        resolve({"side": Param(int, min=2, smoke=8, quick=8, paper=1)}, "paper", {"side": None})
    with pytest.raises(TypeError, match="reads 'width', which no earlier schema entry defines"):
        resolve({"n": Param(int, default=lambda v: v["width"])}, "quick", {"n": None})
    for bad, match in [(dict(smoke=1, quick=2), "a value for every profile"),
                       (dict(default=1, smoke=1, quick=1, paper=1), "not both"),
                       (dict(exclusive=True), "needs a min")]:
        with pytest.raises(TypeError, match=match):
            Param(int, **bad)
    with pytest.raises(TypeError, match="no min/max"):
        Param(str, min=1)
    with pytest.raises(TypeError, match="no choices"):
        Param(float, choices=(1.0,))
    with pytest.raises(TypeError, match="Param kind must be"):
        Param(list)


# ============================================================ the chapters

def cells(text: str):
    """``(parameters cell source, the cell after it)`` of a py:percent chapter."""
    import jupytext

    code = [c for c in jupytext.reads(text, fmt="py:percent").cells if c.cell_type == "code"]
    at = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    return code[at].source, code[at + 1].source


def new_values(stem: str, profile: str, **given):
    """What the chapter's schema cell resolves in ``profile`` (run as the notebook runs it)."""
    params, schema_cell = cells((ROOT / "book" / f"{stem}.py").read_text(encoding="utf-8"))
    ns = {**bookpipe.parameters_in(params, Path(stem)), "profile": profile, **given}
    exec(compile(schema_cell, f"{stem} schema cell", "exec"), ns)
    return ns


def old_values(stem: str, profile: str) -> dict:
    """What the chapter used before the schema: its parameters' defaults, then each assignment of the
    setup cell to a parameter, evaluated in order (those that read later state, such as
    ``ensemble = min(ensemble or len(photos), ...)``, are still in the chapter, after the schema)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:book/{stem}.py"], capture_output=True,
                          text=True, check=True).stdout
    params, setup = cells(text)
    values = {**bookpipe.parameters_in(params, Path(stem)), "profile": profile}
    for node in ast.parse(setup).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in values:
            try:
                values[node.targets[0].id] = eval(compile(ast.Expression(node.value), stem, "eval"),
                                                  {"profile_value": profile_value, "max": max, "min": min}, dict(values))
            except NameError:
                continue
    return values


def _git_has_before() -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapter_declares_a_schema_for_every_parameter(stem):
    params, schema_cell = cells((ROOT / "book" / f"{stem}.py").read_text(encoding="utf-8"))
    declared = bookpipe.parameters_in(params, Path(stem))
    ns = new_values(stem, "quick")
    assert list(ns["schema"]) == list(declared), f"{stem}: the schema and the parameters cell differ"
    # a JupyterLab user gets the check too: the notebook's own cell refuses a bad value by name
    with pytest.raises(ParameterError, match=r"^seed must be an int >= 0, got -1$"):
        new_values(stem, "quick", seed=-1)


@pytest.mark.skipif(not _git_has_before(), reason=f"commit {BEFORE[:7]} is not in this clone (shallow?)")
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_profile_resolves_to_the_values_the_chapter_used_before(stem, profile):
    old, new = old_values(stem, profile), new_values(stem, profile)
    declared = bookpipe.parameters_in(cells((ROOT / "book" / f"{stem}.py").read_text(encoding="utf-8"))[0], Path(stem))
    for name in new["schema"]:
        # a parameter added with the schema (occupancy's repair, skip_missing): its default
        want = old[name] if name in old else declared[name]
        got = new[name]
        assert got == want and type(got) is type(want), f"{stem} ({profile}): {name} = {got!r}, before {want!r}"
        if isinstance(want, list):
            assert [type(v) for v in got] == [type(v) for v in want], f"{stem} ({profile}): {name} item types"


def test_the_old_lines_are_gone_and_imagenet_choices_are_the_studys():
    from inrlib.book.studies.imagenet import LR_READINGS

    for stem in CHAPTERS:
        assert " or profile_value(" not in (ROOT / "book" / f"{stem}.py").read_text(encoding="utf-8"), stem
    assert set(new_values("imagenet", "quick")["schema"]["lr_reading"].choices) == set(LR_READINGS)


# ============================================================ the pipeline

def test_the_pipeline_refuses_a_value_before_executing(tmp_path, capsys):
    out = tmp_path / "executed" / "scaling.ipynb"
    rc = bookpipe.main(["execute", str(ROOT / "book" / "scaling.py"), str(out), "-p", "epochs", "-3",
                        "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 1 and "epochs must be an int >= 1, or None (the profile's value), got -3" in err, err
    assert "book: executing" not in err                       # papermill never started
    assert not out.exists() and not out.with_name("scaling.failed.ipynb").exists()
    assert not (tmp_path / "results").exists()


def test_the_pipeline_check_converts_r_strings_and_names_each_refusal(tmp_path):
    src = ROOT / "book" / "scaling.py"
    nb = bookpipe.read_chapter(src)
    declared = bookpipe.declared_parameters(nb, src)
    bookpipe.check_parameters(nb, src, declared, bookpipe.parse_params([["seed", "3"]], [["side", "16"]]))
    with pytest.raises(bookpipe.PipelineError) as info:
        bookpipe.check_parameters(nb, src, declared, bookpipe.parse_params([["side", "2.5"], ["workers", "-1"]],
                                                                           [["lr", "abc"]]))
    lines = str(info.value).splitlines()
    assert lines[0] == "book/scaling.py: side must be an int >= 3, or None (the profile's value), got 2.5"
    assert "lr must be a number > 0, or None, got 'abc'" in lines and "workers must be an int >= 0, got -1" in lines
    # a chapter without a schema cell (the fixture chapter) is run as before
    fixture = ROOT / "tests" / "fixtures" / "fixture_chapter.py"
    fnb = bookpipe.read_chapter(fixture)
    bookpipe.check_parameters(fnb, fixture, bookpipe.declared_parameters(fnb, fixture), {"seed": 3})
