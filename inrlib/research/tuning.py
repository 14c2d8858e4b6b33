"""The papers' hyperparameter search: Optuna over a :class:`~inrlib.research.experiments.RunConfig`,
in an RDB storage (an SQLite file by default) that resumes and can be shared between processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .experiments import RunConfig

__all__ = ["tune", "storage_url"]


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
