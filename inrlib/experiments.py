"""The papers' experiment configurations as data, one training run with NTK snapshots, and a
resumable sweep over independent runs.

- :class:`RunConfig`: one configuration (encoding, MLP, optimizer settings) with its source in the
  paper. :data:`TABLE3` holds paper 000's scaling study (Table 3), six rows;
  :data:`TABLE2` its Optuna-tuned ImageNet encodings (Table 2), three; :data:`TABLE4` its occupancy
  networks per mesh (Table 4), nine.
- :func:`build_model`: the ``CoordinateMLP`` of a config, seeded.
- :func:`run`: train one config on one signal; at chosen epochs take the empirical NTK (float64),
  its spectra and rounding floors, and call a study's ``measure`` function; a run that diverges is
  reported, not raised.
- :func:`sweep`: run independent tasks through any :class:`concurrent.futures.Executor` (``None``:
  in this process; a process pool; Dask's ``Client.get_executor()``), write each finished run at once
  (atomically) under a key from its task and the library's code, and skip what exists: an
  interrupted sweep resumes where it stopped.
- :func:`tune`: the papers' Optuna search over a config's hyperparameters, stored in an RDB
  (SQLite by default), resumable and shareable.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import json
import pickle
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .io import atomic_path

__all__ = ["RunConfig", "TABLE2", "table2", "TABLE3", "table3", "TABLE4", "TABLE4_MESHES", "table4", "build_model", "run", "run_ensemble", "sweep", "task_key", "code_fingerprint",
           "SweepError", "load_run", "tune", "storage_url"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training configuration.

    ``encoding`` is a :func:`inrlib.models.build_encoding` dict without ``dim`` (filled in from the
    data); ``hidden``, ``activation``, ``parameterization``, ``output_activation`` build the MLP;
    ``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``loss`` go to :func:`inrlib.train.fit` (the
    loss is mean-reduced, see :mod:`inrlib.train`). ``source`` says where the numbers come from and
    ``note`` what was changed from it.
    """

    name: str
    encoding: Mapping[str, Any]
    label: str = ""
    hidden: tuple[int, ...] = (512, 512)
    activation: str = "relu"
    parameterization: str = "ntk"
    output_activation: str | None = None
    optimizer: str = "sgd"
    lr: float = 100.0
    epochs: int = 300
    batch_size: int | None = 32
    loss: str = "mse"
    source: str = ""
    note: str = ""

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes`` (``encoding`` entries merge into the encoding dict: pass
        ``encoding={"resolutions": [36]}`` to change only the grid)."""
        if "encoding" in changes:
            changes["encoding"] = {**dict(self.encoding), **dict(changes["encoding"])}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"RunConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["encoding"] = dict(self.encoding)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RunConfig fields {sorted(unknown)}; known: {sorted(known)}")
        data["hidden"] = tuple(int(h) for h in data.get("hidden", (512, 512)))
        data["encoding"] = dict(data["encoding"])
        return cls(**data)

    @property
    def train_settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`inrlib.train.fit`."""
        return {"optimizer": self.optimizer, "lr": float(self.lr), "epochs": int(self.epochs),
                "batch_size": self.batch_size, "loss": self.loss}


def _t3(name: str, label: str, row: str, encoding: Mapping[str, Any]) -> RunConfig:
    return RunConfig(name=name, label=label, encoding=encoding, hidden=(512, 512), activation="relu",
                     parameterization="ntk", optimizer="sgd", lr=100.0, epochs=300, batch_size=32, loss="mse",
                     source=f"paper 000, Table 3, row {row}; Section 5 (2 x 512 ReLU) and Appendix A.1 "
                            "(NTK parameterization, SGD, MSE)")


#: Paper 000, Table 3: the scaling study's six encodings (lr 100, 300 epochs, batch 32).
TABLE3: dict[str, RunConfig] = {c.name: c for c in (
    _t3("baseline", "Baseline", "Baseline", {"type": "identity"}),
    _t3("ffe_low", "Low (FFE)", "Low (FFE), L = 4", {"type": "fourier", "levels": 4}),
    _t3("ffe_mid", "Mid (FFE)", "Mid (FFE), L = 8", {"type": "fourier", "levels": 8}),
    _t3("ffe_high", "High (FFE)", "High (FFE), L = 16", {"type": "fourier", "levels": 16}),
    _t3("mpe_coarse", "Coarse (MPE)", "Coarse (MPE), k = 2, L = 1, x = 100",
        {"type": "multigrid", "resolutions": [100], "features": 2}),
    _t3("mpe_fine", "Fine (MPE)", "Fine (MPE), k = 2, L = 1, x = 200",
        {"type": "multigrid", "resolutions": [200], "features": 2}),
)}


def table3() -> list[RunConfig]:
    """Table 3's configurations in the paper's order."""
    return list(TABLE3.values())


def _t2(name: str, label: str, row: str, encoding: Mapping[str, Any], lr: float, batch_size: int) -> RunConfig:
    return RunConfig(name=name, label=label, encoding=encoding, hidden=(512, 512), activation="relu",
                     parameterization="ntk", optimizer="sgd", lr=lr, epochs=100, batch_size=batch_size, loss="mse",
                     source=f"paper 000, Table 2 (Appendix D), row {row}: found by Optuna, 30 trials, maximizing "
                            "PSNR; Section 5 (2 x 512 ReLU) and Appendix A.1 (NTK parameterization, SGD, MSE)")


#: Paper 000, Table 2: the encodings tuned with Optuna for the ImageNet study (100 epochs).
TABLE2: dict[str, RunConfig] = {c.name: c for c in (
    _t2("mpe", "MPE", "Multigrid, k = 3, L = 2, x = [96, 277]",
        {"type": "multigrid", "resolutions": [96, 277], "features": 3}, lr=0.3932, batch_size=10),
    _t2("ffe", "FFE", "Fourier, L = 6", {"type": "fourier", "levels": 6}, lr=0.3865, batch_size=92),
    _t2("baseline", "Baseline", "Baseline", {"type": "identity"}, lr=0.2394, batch_size=10),
)}


def table2() -> list[RunConfig]:
    """Table 2's configurations in the paper's order (MPE, FFE, baseline)."""
    return list(TABLE2.values())


def _t4(mesh: str, enc: str, label: str, encoding: Mapping[str, Any], lr: float, batch_size: int) -> RunConfig:
    return RunConfig(name=f"{mesh}/{enc}", label=label, encoding=encoding, hidden=(256,) * 8, activation="relu",
                     parameterization="ntk", output_activation="sigmoid", optimizer="sgd", lr=lr, epochs=4000,
                     batch_size=batch_size, loss="bce",
                     source=f"paper 000, Table 4 (Appendix D), row {mesh.title()} ({label}): found by Optuna minimizing "
                            "the training loss; Appendix E (8 x 256 ReLU, sigmoid output, binary cross-entropy, SGD)")


#: Paper 000, Table 4: the occupancy networks per mesh (Optuna-tuned; 4000 epochs). Keys
#: ``"<mesh>/<encoding>"`` for the meshes ``armadillo``, ``buddha``, ``dragon`` and the encodings
#: ``baseline``, ``ffe``, ``mpe``. The paper's NTK parameterization of Appendix A.1 is assumed for 3D.
TABLE4: dict[str, RunConfig] = {c.name: c for c in (
    *(cfg for mesh, mpe in (("armadillo", ({"type": "multigrid", "resolutions": [44], "features": 1}, 0.99469, 10903)),
                            ("buddha", ({"type": "multigrid", "resolutions": [38, 102], "features": 2}, 0.78445, 9267)),
                            ("dragon", ({"type": "multigrid", "resolutions": [33, 136], "features": 2}, 0.80905, 9989)))
      for cfg in (_t4(mesh, "baseline", "Base", {"type": "identity"}, 0.92224, 13187),
                  _t4(mesh, "ffe", "FFE", {"type": "fourier", "levels": 7}, 0.78930, 9799),
                  _t4(mesh, "mpe", "MPE", mpe[0], mpe[1], mpe[2]))),
)}
TABLE4_MESHES = ("armadillo", "buddha", "dragon")


def table4(mesh: str) -> list[RunConfig]:
    """Table 4's baseline, FFE and MPE for ``mesh`` (``armadillo``, ``buddha`` or ``dragon``)."""
    if mesh not in TABLE4_MESHES:
        raise ValueError(f"Table 4 has rows for {', '.join(TABLE4_MESHES)}, not {mesh!r}")
    return [TABLE4[f"{mesh}/{e}"] for e in ("baseline", "ffe", "mpe")]


def build_model(config: RunConfig, dim: int, out_features: int, seed: int = 0) -> nn.Module:
    """The config's ``CoordinateMLP`` for ``dim``-D inputs and ``out_features`` outputs, built after
    ``torch.manual_seed(seed)`` (same config and seed, same weights)."""
    from .models import CoordinateMLP, build_encoding
    enc = dict(config.encoding)
    enc.setdefault("dim", dim)
    torch.manual_seed(int(seed))
    return CoordinateMLP(build_encoding(enc), list(config.hidden), out_features, config.activation,
                         parameterization=config.parameterization, output_activation=config.output_activation)


# ----------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------

def run(config: RunConfig, coords: Tensor, targets: Tensor, *, seed: int = 0,
        ntk_epochs: str | Iterable[int | str] | None = "start,middle,end",
        measure_epochs: str | Iterable[int | str] | None = None, ntk_points: Tensor | None = None,
        ntk_groups: Sequence[str] = ("total",),
        measure: Callable[[nn.Module, int, dict[str, Tensor] | None, bool], Any] | None = None,
        device: torch.device | str = "cpu", fit_kwargs: Mapping[str, Any] | None = None,
        ntk_dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """Train ``config`` on ``(coords, targets)`` and take snapshots.

    At each epoch of ``ntk_epochs`` (see :func:`inrlib.train.resolve_epochs`; 0 = before training)
    the empirical NTK on ``ntk_points`` (default: all ``coords``) is computed in float64 with
    ``groups=True`` and the spectra of ``ntk_groups`` (``"total"``, ``"mlp"``, ``"grid"``, a module
    name) are kept with their rounding floors. At each epoch of ``ntk_epochs`` and ``measure_epochs``,
    ``measure(model, epoch, kernels, final)`` is called (``kernels``: the dict of NTK terms at an NTK
    epoch, else ``None``; ``final``: the last epoch) and its return value kept.

    Returns ``{"config", "seed", "history" (History.to_dict()), "diverged" (None or {"epoch",
    "message"}), "snapshots": {epoch: {"spectra": {group: eigenvalues}, "floors": {group: floor},
    "measure": ...}}, "seconds"}``. A run whose training diverges returns what it recorded before.
    ``ntk_dtype``: the kernels' precision (float64 by default; float32 is 30-60x faster on consumer
    GPUs, with a rounding floor ~5e8 times higher).
    """
    from .train import TrainingDiverged, fit

    t0 = time.perf_counter()
    device = torch.device(device)
    targets = torch.as_tensor(targets)
    model = build_model(config, int(coords.shape[1]), _out_features(targets), seed).to(device)
    snapshots: dict[int, dict[str, Any]] = {}
    snap, snap_epochs = _snapshotter(config, [snapshots], [coords if ntk_points is None else ntk_points],
                                     [measure], ntk_epochs, measure_epochs, ntk_groups, device, ntk_dtype)
    diverged = None
    try:
        history = fit(model, coords.to(device), targets.to(device), **config.train_settings, seed=seed,
                      callbacks={"snapshot": snap}, snapshot_epochs=snap_epochs, progress=False,
                      **dict(fit_kwargs or {}))
    except TrainingDiverged as err:
        history = err.history
        diverged = {"epoch": err.epoch, "message": str(err)}
    return {"config": config.to_dict(), "seed": int(seed), "history": history.to_dict(), "diverged": diverged,
            "snapshots": snapshots, "seconds": time.perf_counter() - t0}


def run_ensemble(config: RunConfig, data: Sequence[tuple[Tensor, Tensor]], *, seeds: Sequence[int],
                 ntk_epochs: str | Iterable[int | str] | None = "start,middle,end",
                 measure_epochs: str | Iterable[int | str] | None = None,
                 ntk_points: Sequence[Tensor] | None = None, ntk_groups: Sequence[str] = ("total",),
                 measure: Sequence[Callable] | Callable | None = None, device: torch.device | str = "cpu",
                 fit_kwargs: Mapping[str, Any] | None = None,
                 ntk_dtype: torch.dtype = torch.float64) -> list[dict[str, Any]]:
    """:func:`run` for ``M`` signals at once: member ``m`` is ``config`` built with ``seeds[m]`` and
    trained on ``data[m] = (coords, targets)`` (all of one shape), the members trained together by
    :func:`inrlib.train.fit_ensemble`. ``ntk_points`` and ``measure`` are one per member (or one
    ``measure`` for all). Returns one :func:`run` result per member, in order; a member that
    diverges has ``diverged`` set and the others are unaffected.
    """
    from .train import fit_ensemble

    t0 = time.perf_counter()
    device = torch.device(device)
    data = [(torch.as_tensor(c), torch.as_tensor(t)) for c, t in data]
    if not data or len(seeds) != len(data):
        raise ValueError(f"run_ensemble needs one seed per signal: {len(data)} signals, {len(seeds)} seeds")
    M = len(data)
    measures = list(measure) if isinstance(measure, Sequence) else [measure] * M
    points = [c for c, _ in data] if ntk_points is None else list(ntk_points)
    if len(measures) != M or len(points) != M:
        raise ValueError(f"give one measure and one set of NTK points per signal ({M})")
    models = [build_model(config, int(data[0][0].shape[1]), _out_features(data[0][1]), s).to(device) for s in seeds]
    snapshots: list[dict[int, dict[str, Any]]] = [{} for _ in range(M)]
    snap, snap_epochs = _snapshotter(config, snapshots, points, measures, ntk_epochs, measure_epochs, ntk_groups,
                                     device, ntk_dtype)
    histories = fit_ensemble(models, [c.to(device) for c, _ in data], [t.to(device) for _, t in data],
                             **config.train_settings, seeds=[int(s) for s in seeds], callbacks={"snapshot": snap},
                             snapshot_epochs=snap_epochs, progress=False, **dict(fit_kwargs or {}))
    seconds = time.perf_counter() - t0
    out = []
    for m, h in enumerate(histories):
        diverged = None
        if h.stopped and h.stopped.startswith("diverged in epoch "):
            diverged = {"epoch": int(h.stopped.rsplit(" ", 1)[1]), "message": h.message}
        out.append({"config": config.to_dict(), "seed": int(seeds[m]), "history": h.to_dict(), "diverged": diverged,
                    "snapshots": snapshots[m], "seconds": seconds / M, "ensemble": {"members": M, "member": m}})
    return out


def _out_features(targets: Tensor) -> int:
    return 1 if targets.dim() == 1 else int(targets.shape[1])


def _snapshotter(config: RunConfig, stores: list[dict[int, dict[str, Any]]], points: list[Tensor],
                 measures: list[Callable | None], ntk_epochs, measure_epochs, ntk_groups: Sequence[str],
                 device: torch.device, ntk_dtype: torch.dtype) -> tuple[Callable, list[int]]:
    """The snapshot callback of :func:`run` / :func:`run_ensemble` (member ``m`` writes ``stores[m]``)
    and the epochs it runs at."""
    from .ntk import empirical_ntk, rounding_floor, spectrum
    from .train import resolve_epochs

    epochs = int(config.epochs)
    k_epochs = set(resolve_epochs(ntk_epochs, epochs)) if ntk_epochs is not None else set()
    m_epochs = set(resolve_epochs(measure_epochs, epochs)) if measure_epochs is not None else set()

    def snap(model: nn.Module, epoch: int, history: Any) -> None:
        m = history.config.get("ensemble", {}).get("member", 0)
        entry: dict[str, Any] = {}
        kernels = None
        if epoch in k_epochs:
            kernels = empirical_ntk(model, points[m].to(device), groups=True, dtype=ntk_dtype)
            entry["spectra"], entry["floors"] = {}, {}
            for g in ntk_groups:
                if g not in kernels:
                    raise KeyError(f"NTK group {g!r} not in the engine's terms {sorted(kernels)}")
                K = kernels[g]
                zero = not bool(K.abs().max() > 0)
                ev = np.zeros(K.shape[0]) if zero else spectrum(K)
                entry["spectra"][g] = ev
                entry["floors"][g] = 0.0 if zero else rounding_floor(K, ev)
        if measures[m] is not None:
            entry["measure"] = measures[m](model, epoch, kernels, epoch == epochs)
        stores[m][epoch] = entry

    return snap, sorted(k_epochs | m_epochs) or [epochs]


# ----------------------------------------------------------------------------------------------
# sweeps
# ----------------------------------------------------------------------------------------------

class SweepError(RuntimeError):
    """A task of a sweep failed; the runs finished before it are saved (``saved``: their paths)."""

    def __init__(self, message: str, *, task: Mapping[str, Any], saved: list[Path]):
        super().__init__(message)
        self.task = dict(task)
        self.saved = saved


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of every ``inrlib/**/*.py`` file: runs computed by other
    library code are not reused."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as err:
        raise TypeError(f"a sweep task must be JSON data (numbers, strings, lists, dicts) so that it has a "
                        f"stable key; {err}. Pass names and sizes (e.g. an image name and a resolution), not "
                        "tensors or modules") from None


def task_key(fn: Callable, task: Mapping[str, Any], code: str | None = "auto") -> str:
    """The key a sweep stores ``fn(**task)`` under: a hash of the function's name, the task and
    (``code="auto"``) :func:`code_fingerprint`; ``code=None`` leaves the code out."""
    code = code_fingerprint() if code == "auto" else code
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return hashlib.sha256(_canonical({"fn": name, "task": task, "code": code}).encode()).hexdigest()[:20]


def _path(store: Path, task: Mapping[str, Any], key: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(task.get("name", "run")))[:60] or "run"
    return store / f"{stem}-{key}.pkl"


def load_run(path: str | Path) -> dict[str, Any]:
    """A run a sweep saved: ``{"key", "task", "result", "seconds"}`` (a clear error when unreadable)."""
    try:
        with open(path, "rb") as f:
            record = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as err:
        raise ValueError(f"cannot read the saved run {path} ({type(err).__name__}: {err}); delete it to recompute") from None
    if not isinstance(record, dict) or "result" not in record:
        raise ValueError(f"{path} is not a saved sweep run; delete it to recompute")
    return record


def _save(path: Path, key: str, task: Mapping[str, Any], result: Any, seconds: float) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({"key": key, "task": dict(task), "result": result, "seconds": seconds}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)


def _timed(fn: Callable, task: Mapping[str, Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(**task)
    return result, time.perf_counter() - t0


def sweep(fn: Callable[..., Any], tasks: Sequence[Mapping[str, Any]], store: str | Path, *,
          executor: cf.Executor | None = None, code: str | None = "auto",
          progress: Callable[[Iterable], Iterable] | None = None) -> list[dict[str, Any]]:
    """Run ``fn(**task)`` for every task, saving each finished run at once; reuse saved runs.

    Args:
        fn: a module-level function (so that process pools and Dask can send it to workers)
            returning picklable data.
        tasks: JSON-able dicts of ``fn``'s keyword arguments; ``task["name"]`` (if any) names the file.
        store: folder of the saved runs, ``<name>-<key>.pkl`` (:func:`task_key`).
        executor: where to run: ``None`` in this process, one task after another; any
            ``concurrent.futures.Executor`` otherwise (``ProcessPoolExecutor``, Dask's
            ``Client(...).get_executor()``). Runs are written by this process as they finish, so
            workers need no access to ``store``.
        code: ``"auto"``: keys include :func:`code_fingerprint` (a changed library recomputes);
            ``None``: they do not.

    Returns one record per task, in task order: ``{"task", "key", "path", "result", "seconds",
    "cached"}``. Raises :class:`SweepError` when a task fails, after saving every run that finished.
    """
    store = Path(store)
    tasks = [dict(t) for t in tasks]
    keys = [task_key(fn, t, code) for t in tasks]
    if len(set(keys)) != len(keys):
        dup = [t.get("name", t) for t, k in zip(tasks, keys) if keys.count(k) > 1]
        raise ValueError(f"the sweep has identical tasks {dup}: each task must differ (a seed, a name, ...)")
    paths = [_path(store, t, k) for t, k in zip(tasks, keys)]
    records: list[dict[str, Any] | None] = [None] * len(tasks)
    todo = []
    for i, (task, key, path) in enumerate(zip(tasks, keys, paths)):
        if path.is_file():
            try:
                saved = load_run(path)
            except ValueError:
                saved = None
            if saved is not None and saved.get("key") == key:
                records[i] = {"task": task, "key": key, "path": path, "result": saved["result"],
                              "seconds": saved.get("seconds"), "cached": True}
                continue
        todo.append(i)
    store.mkdir(parents=True, exist_ok=True)
    saved_paths: list[Path] = []

    def finish(i: int, result: Any, seconds: float) -> None:
        _save(paths[i], keys[i], tasks[i], result, seconds)
        saved_paths.append(paths[i])
        records[i] = {"task": tasks[i], "key": keys[i], "path": paths[i], "result": result, "seconds": seconds,
                      "cached": False}

    def failure(i: int, err: BaseException) -> SweepError:
        name = tasks[i].get("name", f"task {i}")
        done = sum(r is not None for r in records)
        return SweepError(f"sweep task {name!r} failed: {type(err).__name__}: {err}. The {done} finished run(s) "
                          f"are saved in {store}; run the sweep again to compute only the rest",
                          task=tasks[i], saved=list(saved_paths))

    if executor is None:
        for i in (progress(todo) if progress else todo):
            try:
                result, seconds = _timed(fn, tasks[i])
            except Exception as err:  # noqa: BLE001 - re-raised with what was saved
                raise failure(i, err) from err
            finish(i, result, seconds)
    else:
        futures = {executor.submit(_timed, fn, tasks[i]): i for i in todo}
        first_error: tuple[int, BaseException] | None = None
        done_iter = cf.as_completed(futures)
        for fut in (progress(done_iter) if progress else done_iter):
            i = futures[fut]
            if fut.cancelled():
                continue
            err = fut.exception()
            if err is not None:
                if first_error is None:
                    first_error = (i, err)
                    for other in futures:
                        other.cancel()
                continue
            finish(i, *fut.result())
        if first_error is not None:
            raise failure(*first_error) from first_error[1]
    return records  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# hyperparameter search (Optuna)
# ----------------------------------------------------------------------------------------------

def storage_url(storage: str | Path) -> str:
    """An Optuna RDB storage URL: a database URL as given (``sqlite:///...``, ``postgresql://...``),
    or a file path turned into ``sqlite:///<absolute path>`` (its folder created)."""
    text = str(storage)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def tune(objective: Callable[[RunConfig], float], base: RunConfig,
         space: Callable[[Any], Mapping[str, Any]], *, n_trials: int = 30,
         storage: str | Path = "tuning.sqlite3", study_name: str | None = None, seed: int = 0,
         direction: str = "maximize") -> dict[str, Any]:
    """Search ``base``'s hyperparameters with Optuna (paper 000 tuned Table 2 this way: 30 trials,
    maximizing PSNR); the study lives in Optuna's RDB storage, so it resumes and can be shared.

    ``space(trial)`` draws one configuration's changes with Optuna's ``trial.suggest_*`` (e.g.
    ``{"lr": trial.suggest_float("lr", 1e-2, 10, log=True), "encoding": {...}}``; they go to
    :meth:`RunConfig.replace`), and ``objective(config)`` scores it (a PSNR; return ``nan`` or raise
    ``optuna.TrialPruned`` for a run that diverged: the trial is recorded as pruned).

    The study ``study_name`` (default ``base.name``) in ``storage`` (a file path, default
    ``tuning.sqlite3``, or any database URL, see :func:`storage_url`) is loaded if it exists:
    finished trials (complete or pruned) count towards ``n_trials`` and only the rest run, so an
    interrupted search continues where it stopped, and several processes or machines pointing at
    one database share the work. The sampler is Optuna's TPE, seeded with ``seed``.

    Returns ``{"study_name", "storage", "direction", "best_value", "best_config" (a RunConfig dict),
    "n_finished", "trials": [{"number", "state", "value", "params", "config"}]}``.
    """
    import optuna

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(storage)
    name = study_name or base.name
    study = optuna.create_study(study_name=name, storage=url, load_if_exists=True, direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    if study.direction.name.lower() != direction:
        raise ValueError(f"the study {name!r} in {url} was created to {study.direction.name.lower()}, not {direction}; "
                         "use another study_name")
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def run_trial(trial: Any) -> float:
        config = base.replace(**dict(space(trial)))
        trial.set_user_attr("config", config.to_dict())
        value = float(objective(config))
        if value != value:
            raise optuna.TrialPruned("the run diverged (objective nan)")
        return value

    remaining = n_trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        study.optimize(run_trial, n_trials=remaining)
    trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
               "config": t.user_attrs.get("config")} for t in study.get_trials(deepcopy=False)]
    complete = [t for t in trials if t["state"] == "complete"]
    best = None
    if complete:
        best = (max if direction == "maximize" else min)(complete, key=lambda t: t["value"])
    return {"study_name": name, "storage": url, "direction": direction,
            "best_value": best["value"] if best else None, "best_config": best["config"] if best else None,
            "n_finished": sum(t["state"] in ("complete", "pruned") for t in trials), "trials": trials}
