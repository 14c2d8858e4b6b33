"""Saved sweep runs are checked data: exact round trips, damaged files recomputed (never trusted), no
pickle on load, a store that cannot be written refused before the work, messages that say whether a rerun
helps, and pool workers that die with their parent."""
import concurrent.futures as cf
import errno
import hashlib
import io
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import torch

from inrlib.research import sweep as S
from inrlib.research.sweep import SweepError, SweepWarning, load_run, save_run, sweep, task_key


def same(a, b, where="result"):
    """Strict equality: same types (tuple vs list, int vs float, numpy scalar types), dict key order,
    array dtype/shape/memory order and bits (NaN included), float signs."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert len(a) == len(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            same(ka, kb, f"a key of {where}")
            same(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), where
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape, a.flags.f_contiguous) == (b.dtype, b.shape, b.flags.f_contiguous), where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, b.device.type, b.requires_grad) == (b.dtype, b.shape, "cpu", False), where
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        flat = lambda t: t.detach().reshape(-1).contiguous()
        if a.is_complex():
            flat = lambda t: torch.view_as_real(t.detach().resolve_conj()).reshape(-1).contiguous()
        fa, fb = flat(a), flat(b)
        assert torch.equal(fa.view(bits[fa.element_size()]), fb.view(bits[fb.element_size()])), where
    else:
        assert a == b, where


def every_type():
    structured = np.zeros(3, dtype=[("x", "<f4"), ("n", "<i2")])
    structured["x"], structured["n"] = [1.5, np.nan, -2.0], [1, -2, 3]
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    grad = torch.ones(3, requires_grad=True) * 2
    return {
        "none": None, "true": True, "false": False, "int": 7, "negative": -3, "big": 2 ** 100, "float": 0.1,
        "integral float": 1.0, "neg zero": -0.0, "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"),
        "str": "a ü 漢 \n \"quoted\" \\", "empty str": "", "list": [1, 2.0, "3", None], "tuple": (1, (2, [3])),
        "empty": [[], (), {}], "nested": {"history": {"loss": [1.0, float("nan")], "psnr": [float("inf")]}},
        # key types and order (not sorted) as given
        "keys": {3: "int", "b": 1, "a": 2, 1.5: "float", None: "none", True: "bool", (1, "x"): "tuple",
                 np.int64(9): "numpy int"},
        "snapshots": {0: {"spectra": {"total": np.linspace(1, 0, 5)}}, 30: {"floors": {"total": 1e-12}}},
        "f16": np.array([1, np.nan, -0.0], np.float16), "f32": np.array([[np.inf, 2]], np.float32),
        "i8": np.array([-128, 127], np.int8), "u64": np.array([2 ** 64 - 1], np.uint64),
        "bool arr": np.array([True, False]), "c128": np.array([1 + 2j, np.nan * 1j]),
        "big endian": np.arange(3, dtype=">f8"), "unicode arr": np.array(["ab", "ü"]), "bytes arr": np.array([b"x\x00y"]),
        "datetime": np.array(["2024-01-02"], dtype="datetime64[D]"), "structured": structured,
        "0-d": np.array(3.5), "zero size": np.zeros((0, 3), np.int32), "fortran": np.asfortranarray(base),
        "strided": base[::2, 1::3], "nan payload": np.array([np.nan, -np.nan]),
        "np scalars": [np.float64(0.25), np.float32(-0.0), np.int32(-5), np.uint8(255), np.bool_(True),
                       np.complex64(1 - 1j), np.str_("s"), np.datetime64("2024-01-01T00:00")],
        "tensors": [torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor([1, -2], dtype=torch.int64),
                    torch.tensor([True, False]), torch.tensor([1.5, -0.0, float("nan")]).bfloat16(),
                    torch.tensor(2.0, dtype=torch.float64), torch.arange(12.0).reshape(3, 4).t(),
                    torch.tensor([1 + 2j], dtype=torch.complex64), torch.empty(0, 4, dtype=torch.float16), grad],
    }


def test_every_supported_type_round_trips_exactly(tmp_path):
    result = every_type()
    path = save_run(tmp_path / "r.npz", "k", {"name": "r", "x": [1, 2]}, result, seconds=1.25)
    back = load_run(path)
    assert (back["key"], back["task"], back["seconds"]) == ("k", {"name": "r", "x": [1, 2]}, 1.25)
    same(result, back["result"])
    with np.load(path, allow_pickle=False) as z:          # plain npz: a reader needs nothing of ours
        assert "record.json" in z.files and json.loads(bytes(z["record.json"]))["key"] == "k"


def test_a_real_run_round_trips_exactly(tmp_path):
    """run()'s own output: int epoch keys, numpy spectra, history lists, None and dict fields."""
    from inrlib.data import load_image
    from inrlib.research.experiments import run
    from inrlib.research.papers import TABLE3
    coords, targets, _ = load_image("camera", 6, grayscale=True)
    cfg = TABLE3["mpe_coarse"].replace(hidden=(8,), epochs=2, lr=1.0, batch_size=None, encoding={"resolutions": [4]})
    result = run(cfg, coords, targets, ntk_epochs=[0, 2], ntk_groups=("total", "mlp"))
    assert isinstance(next(iter(result["snapshots"])), int)
    same(result, load_run(save_run(tmp_path / "run.npz", "k", {}, result))["result"])


class Foo:
    pass


@pytest.mark.parametrize("result, fragment", [
    ({"history": {"x": Foo()}}, r"result\['history'\]\['x'\] is a .*Foo; a run must be JSON data"),
    ({"a": [1, Foo()]}, r"result\['a'\]\[1\] is a"),
    ((0, {2: Foo()}), r"result\[1\]\[2\] is a"),
    ({"o": np.array([1, None], dtype=object)}, r"result\['o'\] is a numpy.ndarray.*Python objects, dtype object"),
    ({"p": torch.nn.Parameter(torch.ones(2))}, r"result\['p'\] is a .*Parameter.*\.detach\(\)"),
    ({"m": np.ma.masked_array([1, 2])}, r"result\['m'\] is a .*MaskedArray.*np.asarray"),
    ({"path": Path("x")}, r"result\['path'\] is a .*Path.*str\(path\)"),
    ({"s": {1, 2}}, r"result\['s'\] is a builtins.set"),
    ({Foo(): 1}, r"a key of result \(<.*Foo"),
])
def test_unsupported_types_are_refused_at_save_time_naming_the_place(tmp_path, result, fragment):
    with pytest.raises(TypeError, match=fragment):
        save_run(tmp_path / "r.npz", "k", {}, result)
    assert not list(tmp_path.iterdir()), "nothing half-written"


def test_a_result_that_contains_itself_is_refused(tmp_path):
    loop: list = [1]
    loop.append({"again": loop})
    with pytest.raises(TypeError, match=r"result\[1\]\['again'\] contains itself"):
        save_run(tmp_path / "r.npz", "k", {}, loop)


# ------------------------------------------------------------------ damaged and planted files

CALLS: list = []


def small_run(name, seed):
    CALLS.append(name)
    rng = np.random.default_rng(seed)
    return {"loss": [float(v) for v in rng.random(3)], "spectrum": rng.random(6), "diverged": None,
            "shape": (2, 3), "n": seed, "tag": "ok", "pred": torch.from_numpy(rng.random((2, 2)).astype(np.float32))}


def test_random_byte_changes_never_give_a_different_accepted_result(tmp_path):
    """A few hundred seeded 1-6 byte changes (and some insertions/deletions) to a stored run: each either
    loads bit-identical (the change hit bytes nothing depends on) or is recomputed with a notice. Half
    change the file as it is (the zip's CRC-32s catch most); half change one member and rewrite the zip
    around it with valid CRCs, so that only the run's own SHA-256s stand between the change and a reuse."""
    task = {"name": "fuzz", "seed": 3}
    (first,) = sweep(small_run, [task], tmp_path)
    path, truth = first["path"], first["result"]
    clean = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    rng = random.Random(1234)
    outcomes = {"reused": 0, "recomputed": 0}

    def change(raw: bytes, trial: int) -> bytes:
        data = bytearray(raw)
        if trial % 5 == 4:          # insert or delete a few bytes
            at, n = rng.randrange(len(data)), rng.randint(1, 6)
            if trial % 2:
                data[at:at] = bytes(rng.randrange(256) for _ in range(n))
            else:
                del data[at:at + n]
        else:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    for trial in range(300):
        if trial % 2:
            path.write_bytes(change(clean, trial))
        else:
            name = rng.choice(["record.json", "record.json", *members])
            S._write(path, {**members, name: change(members[name], trial)})
        CALLS.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (rec,) = sweep(small_run, [task], tmp_path)
        same(truth, rec["result"], f"trial {trial}")
        if rec["cached"]:
            assert CALLS == [] and not caught
            outcomes["reused"] += 1
        else:
            assert CALLS == ["fuzz"], trial
            notes = [str(w.message) for w in caught if issubclass(w.category, SweepWarning)]
            assert len(notes) == 1 and path.name in notes[0] and "recomputing it" in notes[0], notes
            outcomes["recomputed"] += 1
    assert outcomes["recomputed"] > 250, outcomes       # nearly every change is caught...
    same(truth, load_run(path)["result"])                 # ...and the last recompute left a good file


def test_a_changed_value_with_a_valid_zip_is_caught_by_the_checksum(tmp_path):
    """The user's case: one flipped bit in a value, the container otherwise fine (CRCs recomputed)."""
    (first,) = sweep(small_run, [{"name": "flip", "seed": 1}], tmp_path)
    with zipfile.ZipFile(first["path"]) as z:
        members = {n: z.read(n) for n in z.namelist()}
    record = json.loads(members["record.json"])
    record["result"]["dict"][4][1] = 2              # "n": 1 -> 2, JSON still valid
    members["record.json"] = json.dumps(record).encode()
    S._write(first["path"], members)
    with pytest.raises(ValueError, match=rf"{first['path'].name}.*does not match its SHA-256"):
        load_run(first["path"])
    CALLS.clear()
    with pytest.warns(SweepWarning, match="does not match its SHA-256; recomputing it"):
        (again,) = sweep(small_run, [{"name": "flip", "seed": 1}], tmp_path)
    assert CALLS == ["flip"] and again["result"]["n"] == 1


def _plant(marker):
    Path(marker).write_text("pickle ran code")


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _plant, (self.marker,)


def test_a_planted_pickle_is_never_executed(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Evil(probe)))
    assert probe.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "marker"
    store = tmp_path / "runs"
    store.mkdir()
    task = {"name": "victim", "seed": 0}
    key = task_key(small_run, task)
    payload = pickle.dumps({"key": key, "task": task, "result": Evil(marker), "seconds": 0.0})
    S._path(store, task, key).write_bytes(payload)              # under the run's own name
    S._path(store, task, key, ".pkl").write_bytes(payload)      # and under the old pickle name
    CALLS.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (rec,) = sweep(small_run, [task], store)
    notes = " | ".join(str(w.message) for w in caught)
    assert not marker.exists()
    assert CALLS == ["victim"] and not rec["cached"]
    assert "old pickle format (*.pkl): they are ignored (never unpickled) and can be deleted" in notes
    assert f"cannot use the saved run {S._path(store, task, key)}" in notes


def test_a_forged_file_with_valid_checksums_still_cannot_unpickle(tmp_path):
    """Checksums stop damage, not forgery; but even a forged object-array member is refused, not loaded."""
    marker = tmp_path / "marker"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    npy = buf.getvalue()
    record = {"format": S.FORMAT, "key": "k", "task": {}, "seconds": 0.0, "result": {"array": "a0"},
              "arrays": {"a0": hashlib.sha256(npy).hexdigest()}}
    record["sha256"] = S._digest(record)
    S._write(tmp_path / "forged.npz", {"record.json": json.dumps(record).encode(), "a0.npy": npy})
    with pytest.raises(ValueError, match="forged.npz.*allow_pickle"):
        load_run(tmp_path / "forged.npz")
    assert not marker.exists()


# ------------------------------------------------------------------ the store

def test_a_store_that_is_a_file_fails_before_the_work(tmp_path):
    store = tmp_path / "runs"
    store.write_text("not a folder")
    CALLS.clear()
    with pytest.raises(NotADirectoryError, match=f"sweep store {store} is a file.*nothing was computed"):
        sweep(small_run, [{"name": "a", "seed": 0}], store)
    with pytest.raises(NotADirectoryError, match=f"cannot write in the sweep store {store / 'sub'}"):
        sweep(small_run, [{"name": "a", "seed": 0}], store / "sub")
    assert CALLS == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_fails_before_the_work(tmp_path):
    store = tmp_path / "runs"
    store.mkdir()
    store.chmod(0o500)
    try:
        CALLS.clear()
        with pytest.raises(PermissionError, match=f"cannot write in the sweep store {store}"):
            sweep(small_run, [{"name": "a", "seed": 0}], store)
        assert CALLS == []
    finally:
        store.chmod(0o700)


def test_a_folder_on_a_runs_name_fails_before_the_work(tmp_path):
    tasks = [{"name": "a", "seed": 0}, {"name": "b", "seed": 1}]
    squat = S._path(tmp_path, tasks[1], task_key(small_run, tasks[1]))
    squat.mkdir()
    CALLS.clear()
    with pytest.raises(IsADirectoryError, match=rf"a folder sits where the run of task 'b' is saved \({squat}\)"):
        sweep(small_run, tasks, tmp_path)
    assert CALLS == [], "not even the first task may run"


def test_a_run_that_cannot_be_written_is_kept_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(S.tempfile, "tempdir", str(tmp_path / "tmp"))
    real = S._write

    def full_disk(path, members):
        if path.parent == tmp_path / "runs":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, members)

    monkeypatch.setattr(S, "_write", full_disk)
    with pytest.warns(SweepWarning, match=r"could not save the run of task 'a'.*No space left.*kept at .*inrlib-unsaved-runs"):
        (rec,) = sweep(small_run, [{"name": "a", "seed": 0}], tmp_path / "runs")
    rescued = tmp_path / "tmp" / "inrlib-unsaved-runs" / rec["path"].name
    same(rec["result"], load_run(rescued)["result"])
    same(small_run("a", 0), rec["result"])


# ------------------------------------------------------------------ failures

def fails(name, kind):
    if kind == "config":
        raise ValueError("encoding 'gird' is not one of ['grid', 'fourier']")
    if kind == "memory":
        raise MemoryError("cannot allocate 80 GiB")
    if kind == "foo":
        return {"x": Foo()}
    return {"ok": name}


def test_failure_messages_say_whether_a_rerun_helps(tmp_path):
    tasks = [{"name": "good", "kind": "ok"}, {"name": "bad", "kind": "config"}]
    with pytest.raises(SweepError) as info:
        sweep(fails, tasks, tmp_path)
    msg = str(info.value)
    assert "sweep task 'bad' failed: ValueError: encoding 'gird'" in msg and "fix the task or the code" in msg
    assert "run the sweep again" not in msg and not info.value.transient and len(info.value.saved) == 1
    with pytest.raises(SweepError) as info:
        sweep(fails, [{"name": "big", "kind": "memory"}], tmp_path)
    assert "'big' failed: MemoryError" in str(info.value) and "run the sweep again to compute only the rest" in str(info.value)
    assert info.value.transient
    with pytest.raises(SweepError, match=r"'odd' failed: TypeError: result\['x'\] is a .*Foo.*fix the task"):
        sweep(fails, [{"name": "odd", "kind": "foo"}], tmp_path)
    with cf.ThreadPoolExecutor(2) as ex, pytest.raises(SweepError, match=r"'odd2' failed: TypeError: result\['x'\]"):
        sweep(fails, [{"name": "ok2", "kind": "ok"}, {"name": "odd2", "kind": "foo"}], tmp_path, executor=ex)


@pytest.mark.parametrize("err, transient", [
    (MemoryError(), True), (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), True),
    (BrokenProcessPool("a worker died"), True), (ConnectionResetError(), True), (TimeoutError(), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (FileNotFoundError(errno.ENOENT, "no such photo"), False), (PermissionError(errno.EACCES, "denied"), False),
    (ValueError("bad lr"), False), (TypeError("x"), False), (KeyError("encoding"), False), (RuntimeError("shape"), False),
    (type("KilledWorker", (Exception,), {})("dask lost it"), True),
])
def test_is_transient(err, transient):
    assert S.is_transient(err) is transient


# ------------------------------------------------------------------ process_pool

@pytest.mark.parametrize("bad, kind", [(-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError), (None, TypeError)])
def test_process_pool_refuses_bad_worker_counts(bad, kind):
    with pytest.raises(kind, match=rf"workers must be an integer >= 0, got {bad!r}"):
        S.process_pool(bad)


def test_process_pool_of_zero_is_in_process():
    assert S.process_pool(0) is None and S.process_pool(np.int64(0)) is None


PARENT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing as mp, os, sys, time

    def nap(seconds):
        print(os.getpid(), flush=True)
        time.sleep(seconds)

    if __name__ == "__main__":
        from inrlib.research import sweep as S
        if sys.argv[1] == "prctl":
            pool = S.process_pool(2)
        else:          # the watch thread used off Linux
            pool = cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=S._die_with_parent,
                                          initargs=(os.getpid(), False))
        futures = [pool.submit(nap, 120) for _ in range(2)]
        time.sleep(600)
""")


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["prctl", "watch"])
def test_pool_workers_die_with_their_parent(tmp_path, mode):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(parent.stdout.readline()) for _ in range(2)]     # both are running a task
        family = set(_children(parent.pid)) | set(workers)              # the workers and the resource tracker
        assert set(workers) <= family and all(_alive(p) for p in family)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in family if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} of {sorted(family)} outlived their parent"
