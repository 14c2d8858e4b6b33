"""One training run of a configuration, with NTK snapshots.

- :class:`RunConfig`: one configuration (a :class:`~inrlib.models.ModelConfig` and the optimizer
  settings) with its source in the paper (the papers' own configurations are in
  :mod:`inrlib.research.papers`).
- :func:`build_model`: the ``CoordinateMLP`` of a config, seeded (``CoordinateMLP.from_config``).
- :func:`run`: train one config on one signal; at chosen epochs take the empirical NTK (float64),
  its spectra and rounding floors, and call a study's ``measure`` function; a run that diverges is
  reported, not raised.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["RunConfig", "build_model", "run", "run_ensemble"]


#: RunConfig's model settings, read through to its ModelConfig (``config.hidden``, ``replace(hidden=...)``).
_MODEL_FIELDS = ("encoding", "hidden", "activation", "options", "output_activation", "out_features")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training configuration: a model and how to train it.

    ``model`` is a :class:`inrlib.models.ModelConfig` (or its dict) whose encoding dict leaves out
    ``dim`` and which leaves out ``out_features`` (both come from the data). ``optimizer``, ``lr``,
    ``epochs``, ``batch_size``, ``loss`` go to :func:`inrlib.train.fit` (the loss is mean-reduced,
    see :mod:`inrlib.train`). ``source`` says where the numbers come from and ``note`` what was
    changed from it. The model's settings read through: ``config.encoding``, ``config.hidden``,
    ``config.activation``, ``config.output_activation``.
    """

    name: str
    model: Any
    label: str = ""
    optimizer: str = "sgd"
    lr: float = 100.0
    epochs: int = 300
    batch_size: int | None = 32
    loss: str = "mse"
    source: str = ""
    note: str = ""

    def __post_init__(self):
        from ..models import ModelConfig
        object.__setattr__(self, "model", ModelConfig.from_dict(self.model))

    @property
    def encoding(self) -> dict[str, Any]:
        return self.model.encoding

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.model.hidden

    @property
    def activation(self) -> str:
        return self.model.activation

    @property
    def output_activation(self) -> str | None:
        return self.model.output_activation

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; the model's settings (``hidden``, ``activation``, ``options``, ...) go
        to the model, and ``encoding`` entries merge into the encoding dict: pass
        ``encoding={"resolutions": [36]}`` to change only the grid."""
        model_changes = {k: changes.pop(k) for k in _MODEL_FIELDS if k in changes}
        if "encoding" in model_changes:
            model_changes["encoding"] = {**self.model.encoding, **dict(model_changes["encoding"])}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"RunConfig has no field(s) {sorted(unknown)}; its fields are "
                            f"{[f.name for f in dataclasses.fields(self)]} and the model's {list(_MODEL_FIELDS)}")
        if model_changes:
            if "model" in changes:
                raise TypeError(f"give a new model or model settings {sorted(model_changes)}, not both")
            changes["model"] = self.model.replace(**model_changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able and flat: ``name``, ``label``, the entries of ``model.to_dict()`` (``encoding``,
        ``hidden``, ``activation``, ``options``, ...), the training settings, ``source``, ``note``."""
        d: dict[str, Any] = {"name": self.name, "label": self.label, **self.model.to_dict()}
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in (*d, "model")})
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Read :meth:`to_dict`'s output; dicts of earlier versions (a top-level ``parameterization``,
        no ``options``) load too. Unknown keys are refused."""
        data = dict(data)
        known = [f.name for f in dataclasses.fields(cls) if f.name != "model"] + list(_MODEL_FIELDS)
        unknown = set(data) - set(known) - {"parameterization"}
        if unknown:
            raise ValueError(f"unknown RunConfig fields {sorted(unknown)}; known: {sorted(known)}")
        model = {k: data.pop(k) for k in _MODEL_FIELDS if k in data}
        model.setdefault("hidden", (512, 512))
        if "parameterization" in data:                       # earlier versions: a top-level field
            par = data.pop("parameterization")
            if model.get("activation", "relu") in ("relu", "tanh"):
                model["options"] = {**(model.get("options") or {}), "parameterization": par}
        return cls(model=model, **data)

    @property
    def train_settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`inrlib.train.fit`."""
        return {"optimizer": self.optimizer, "lr": float(self.lr), "epochs": int(self.epochs),
                "batch_size": self.batch_size, "loss": self.loss}


def build_model(config: RunConfig, dim: int, out_features: int, seed: int = 0) -> nn.Module:
    """``CoordinateMLP.from_config(config.model, dim=dim, out_features=out_features, seed=seed)``:
    the config's network for ``dim``-D inputs and ``out_features`` outputs, seeded."""
    from ..models import CoordinateMLP
    return CoordinateMLP.from_config(config.model, dim=dim, out_features=out_features, seed=seed)


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
    from ..train import TrainingDiverged, fit

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
                      callbacks={"snapshot": snap}, snapshot_epochs=snap_epochs, progress=None,
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
    from ..train import fit_ensemble

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
                             snapshot_epochs=snap_epochs, progress=None, **dict(fit_kwargs or {}))
    seconds = time.perf_counter() - t0
    out = []
    for m, h in enumerate(histories):
        diverged = None if h.diverged_epoch is None else {"epoch": h.diverged_epoch, "message": h.message}
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
    from ..ntk import empirical_ntk, rounding_floor, spectrum
    from ..train import resolve_epochs

    epochs = int(config.epochs)
    k_epochs = set(resolve_epochs(ntk_epochs, epochs)) if ntk_epochs is not None else set()
    m_epochs = set(resolve_epochs(measure_epochs, epochs)) if measure_epochs is not None else set()

    def snap(model: nn.Module, epoch: int, history: Any) -> None:
        m = 0 if history.member is None else history.member          # fit: None; fit_ensemble: the index
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
