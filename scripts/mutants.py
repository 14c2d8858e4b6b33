#!/usr/bin/env python
"""Mutation testing of one inrlib module (or several) with mutmut, in a scratch copy of the repository.

    python scripts/mutants.py inrlib/ntk/spectra.py --tests tests/ntk/test_spectra.py
    make mutants MODULE=inrlib/ntk/spectra.py TESTS=tests/ntk/test_spectra.py

mutmut plants small changes (a ``<`` for a ``<=``, a constant off by one, a deleted call, ...) in the
module one at a time and runs the tests against each: a mutant the tests do not notice *survives*.
The score is killed / (killed + survived); mutants that time out or crash the tests count as killed, mutants no test
reaches count as survived, mutants of a run stopped early are "not run" and left out. The run
happens in a temporary copy of the tracked files (mutmut writes a ``mutants/`` folder and its own
configuration), so the repository stays clean. Not part of CI: it
runs the named tests once per mutant, minutes to hours per module on 2 cores. Prints the score per
module and writes ``<module>.json`` (``data.meshes.json`` for ``inrlib/data/meshes.py``: the counts and the
surviving mutants) under ``--out`` (default ``docs/mutants``, tracked).

    python scripts/mutants.py --report     # the scores recorded under --out, as a Markdown table

``--report`` prints the table and writes it into ``docs/testing.md`` (``--doc``) between the lines
``<!-- mutants:begin -->`` and ``<!-- mutants:end -->``; the text around them stays as it is.

A module whose full run takes hours can be finished by sampling: ``--work DIR --sample 120`` tests 120
mutants drawn at random (``--seed``) from those the run in DIR has not tested yet, and the record
keeps the draw. The table then gives, beside the score among the mutants tested, an estimate of the
score over all of them: the tested mutants count as they are, the untested pool at the sample's kill
rate, with a 95 % Wilson interval scaled by the pool's share.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if f]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % at z = 1.96) for a rate of k successes in n draws."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(killed: int, survived: int, sample: dict) -> tuple[float, float, float]:
    """The score over all of a module's mutants, (estimate, low, high), after a sampled run.

    ``killed`` and ``survived`` count every tested mutant, the sample's included; ``sample`` holds
    ``pool`` (untested mutants before the draw), ``drawn``, and the draw's ``killed``. The mutants tested
    before the draw count as they are; the pool, at the draw's kill rate (and its Wilson interval)."""
    pool, drawn, k = sample["pool"], sample["drawn"], sample["killed"]
    known_killed, known = killed - k, killed + survived - drawn
    total = known + pool
    low, high = wilson(k, drawn)
    return ((known_killed + pool * k / max(1, drawn)) / total, (known_killed + pool * low) / total,
            (known_killed + pool * high) / total)


def report(out: Path) -> str:
    """The runs recorded under ``out`` as a Markdown table (one row per run, by module)."""
    rows = ["| module | tests | mutants | killed (of which timeouts or crashes) | survived | not run | score | all mutants "
            "(est.) | minutes |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        rec = json.loads(path.read_text())
        st = rec["stats"]
        # a mutant that crashes the test process (segfault) is detected, as a timeout is
        timeout = st.get("timeout", 0) + st.get("segfault", 0)
        killed = st.get("killed", 0) + timeout
        survived = st.get("survived", 0) + st.get("no_tests", 0)
        minutes = f"{rec['seconds'] / 60:.1f}" if "seconds" in rec else "-"
        not_run = st.get("total", killed + survived) - killed - survived   # a run stopped early
        score = killed / max(1, killed + survived)
        if not_run == 0:
            whole = f"{score:.1%}"
        elif "sample" in rec:
            est, low, high = estimate(killed, survived, rec["sample"])
            whole = f"{est:.1%} ({low:.1%}-{high:.1%}; {rec['sample']['drawn']} of {rec['sample']['pool']} drawn)"
        else:
            whole = "-"
        rows.append(f"| {', '.join(f'`{m}`' for m in rec['modules'])} | {', '.join(f'`{t}`' for t in rec['tests'])} "
                    f"| {st.get('total', '-')} | {killed} ({timeout}) | {survived} | {not_run} | {score:.1%} "
                    f"| {whole} | {minutes} |")
    return "\n".join(rows)


BEGIN, END = "<!-- mutants:begin -->", "<!-- mutants:end -->"


def write_report(doc: Path, table: str) -> Path:
    """Put ``table`` between the marker lines :data:`BEGIN` and :data:`END` of ``doc``, atomically.

    Whatever was between the markers is replaced; the text before and after them is kept byte for
    byte. A file without exactly one pair of markers, in that order, is refused (nothing written)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else None
    if text is None or text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{doc} needs one line {BEGIN} followed by one line {END} where the mutation table "
                         "goes; add the two lines there (the text around them is kept), or pass --doc FILE")
    head, rest = text.split(BEGIN)
    tail = rest.split(END)[1]
    from inrlib.io import atomic_write

    return atomic_write(doc, f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="files under inrlib/ to mutate, e.g. inrlib/ntk/spectra.py")
    ap.add_argument("--report", action="store_true",
                    help="print the recorded scores as a Markdown table and write it into --doc")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "testing.md",
                    help=f"the file whose lines {BEGIN} ... {END} receive --report's table (default docs/testing.md)")
    ap.add_argument("--tests", nargs="+", default=["tests"], help="pytest paths or node ids that should kill the mutants")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "mutants")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep mutmut's copy (and its state) in this folder: a stopped run resumes there, and a "
                         "rerun re-tests only what changed (default: a temporary folder, removed)")
    ap.add_argument("--timeout-multiplier", type=float, default=15.0,
                    help="a mutant times out after (its tests' time + 1 s) x this x 2 CPU seconds (mutmut's default, "
                         "15). Timeouts count as killed, so a lower value overstates the score: at 3, 95 of the "
                         "318 'timeouts' of inrlib/train.py survived when rerun at 15. A changed value re-tests "
                         "the timeouts only")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="with --work: re-test only the mutants that survived the last run or that no test reached (after new tests; keep "
                         "--tests as it was: another test selection makes mutmut forget every verdict)")
    ap.add_argument("--match", nargs="+", default=None,
                    help="with --rerun-survivors: only the survivors whose name holds one of these texts (function names)")
    ap.add_argument("--sample", type=int, default=None, metavar="N",
                    help="with --work: test N mutants drawn at random from those not tested yet there, and record "
                         "the draw (the table then estimates the score over all mutants)")
    ap.add_argument("--seed", type=int, default=0, help="the seed of --sample's draw")
    args = ap.parse_args(argv)
    if args.match is not None and not args.rerun_survivors:
        ap.error("--match selects among the survivors: use it with --rerun-survivors")
    if args.rerun_survivors and args.work is None:
        ap.error("--rerun-survivors needs the --work folder of an earlier run")
    if args.sample is not None and (args.work is None or args.rerun_survivors or args.sample < 1):
        ap.error("--sample N (N >= 1) draws from the untested mutants of an earlier run: give its --work folder, "
                 "without --rerun-survivors")
    if args.report:
        table = report(args.out)
        print(table)
        try:
            write_report(args.doc, table)
        except ValueError as err:
            print(f"mutants: {err}", file=sys.stderr)
            return 2
        print(f"mutants: the table is in {args.doc}", file=sys.stderr)
        return 0
    if not args.modules:
        ap.error("name at least one module, e.g. inrlib/ntk/spectra.py (or pass --report)")
    for m in args.modules:
        if not (ROOT / m).is_file() or not m.startswith("inrlib/") or not m.endswith(".py"):
            print(f"mutants: {m} is not a module file under inrlib/ (e.g. inrlib/ntk/spectra.py)", file=sys.stderr)
            return 2
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutants: mutmut is not installed in this environment; pip install 'mutmut==3.8.1' "
              "(`make mutants` does this)", file=sys.stderr)
        return 2
    mutmut = str(Path(sys.executable).parent / "mutmut")
    with contextlib.ExitStack() as stack:
        if args.work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inrlib-mutants-")))
        else:
            work = args.work.resolve()
            work.mkdir(parents=True, exist_ok=True)
        for f in tracked_files():        # refreshed each time: mutmut re-tests the functions that changed
            dst = work / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists() or dst.read_bytes() != (ROOT / f).read_bytes():
                shutil.copy2(ROOT / f, dst)
        cfg = (work / "pyproject.toml").read_text()
        # mutmut runs the tests in a copy holding only the package and tests/: the rest of the tracked
        # top level (book/, _toc.yml, ...) goes along for the tests that read it.
        top = sorted({f.split("/")[0] for f in tracked_files()} - {"inrlib", "tests", "pyproject.toml"})
        cfg += ("\n[tool.mutmut]\nsource_paths = [\"inrlib\"]\n"
                f"also_copy = {json.dumps(top)}\n"
                f"only_mutate = {json.dumps(args.modules)}\n"
                f"pytest_add_cli_args_test_selection = {json.dumps(args.tests)}\n"
                f"timeout_multiplier = {args.timeout_multiplier}\n"
                # Workers forked from a process that has run torch can deadlock on a lock some other thread
                # held at fork time; mutmut then kills them at its wall-clock limit and counts a "timeout",
                # that is a kill. A fork server that has imported nothing but the tests avoids it.
                "process_isolation = \"forkserver\"\n"
                "pytest_add_cli_args = [\"-x\", \"-q\", \"-p\", \"no:cacheprovider\"]\n")
        (work / "pyproject.toml").write_text(cfg)
        # One thread per mutant: mutmut forks its workers from a process that has run torch, and an
        # OpenMP pool inherited through fork() hangs in the child (every mutant would "time out").
        env = {**os.environ, "MPLBACKEND": "Agg", "INRLIB_PROGRESS": "0", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        args.out.mkdir(parents=True, exist_ok=True)
        # inrlib/data/meshes.py -> data.meshes (inrlib/research/theory.py and inrlib/book/studies/theory.py differ)
        name = "_".join(Path(m).with_suffix("").as_posix().removeprefix("inrlib/").replace("/", ".") for m in args.modules)
        log = args.out / f"{name}.log"
        started = time.monotonic()
        names: list[str] = []
        if args.rerun_survivors:
            listed = subprocess.run([mutmut, "results"], cwd=work, env=env, capture_output=True, text=True).stdout
            names = [line.split(":")[0].strip() for line in listed.splitlines()      # "no tests" counts as survived
                     if line.strip().endswith(("survived", "no tests"))]
            names = [n for n in names if args.match is None or any(m in n for m in args.match)]
            if not names:
                print("mutants: no survivors recorded in --work; nothing to re-test", file=sys.stderr)
                return 2
        sample = None
        if args.sample is not None:
            listed = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                                    text=True).stdout
            pool = sorted(line.split(":")[0].strip() for line in listed.splitlines()
                          if line.strip().endswith("not checked"))
            if not pool:
                print("mutants: every mutant in --work has been tested; nothing to sample", file=sys.stderr)
                return 2
            names = random.Random(args.seed).sample(pool, min(args.sample, len(pool)))
            sample = {"pool": len(pool), "drawn": len(names), "seed": args.seed}
        with open(log, "w") as fh:     # mutmut draws a progress line per mutant: keep it out of the terminal
            proc = subprocess.run([mutmut, "run", "--max-children", str(args.workers), *names], cwd=work, env=env,
                                  stdout=fh, stderr=subprocess.STDOUT)
        subprocess.run([mutmut, "export-cicd-stats"], cwd=work, env=env, capture_output=True)
        stats_path = work / "mutants" / "mutmut-cicd-stats.json"
        if not stats_path.is_file():
            print(f"mutants: mutmut wrote no statistics; see {log}", file=sys.stderr)
            return proc.returncode or 1
        stats = json.loads(stats_path.read_text())
        results = subprocess.run([mutmut, "results"], cwd=work, env=env, capture_output=True, text=True).stdout
        killed = stats.get("killed", 0) + stats.get("timeout", 0) + stats.get("segfault", 0)
        survived = stats.get("survived", 0) + stats.get("no_tests", 0)
        score = killed / max(1, killed + survived)
        surviving = [line.split(":")[0].strip() for line in results.splitlines() if line.strip().endswith("survived")]
        diffs = {m: subprocess.run([mutmut, "show", m], cwd=work, env=env, capture_output=True, text=True).stdout
                 for m in surviving[:300]}
        record = {"modules": args.modules, "tests": args.tests, "stats": stats, "score": score,
                  "seconds": round(time.monotonic() - started, 1), "surviving": diffs}
        if sample is not None:
            verdicts = {line.split(":")[0].strip(): line.rsplit(":", 1)[1].strip()
                        for line in subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env,
                                                   capture_output=True, text=True).stdout.splitlines() if ":" in line}
            drawn = [verdicts.get(n, "not checked") for n in names]
            untested = sum(v == "not checked" for v in drawn)
            if untested:     # a run stopped early: keep what was tested as an ordinary partial record
                print(f"mutants: {untested} of the {len(names)} drawn mutants were not tested; the record keeps "
                      "no sample", file=sys.stderr)
            else:
                record["sample"] = {**sample, "killed": sum(v in ("killed", "timeout") for v in drawn),
                                    "mutants": dict(zip(names, drawn))}
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"mutants: {', '.join(args.modules)}: {killed} killed, {survived} survived "
              f"(score {score:.1%}); details in {args.out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
