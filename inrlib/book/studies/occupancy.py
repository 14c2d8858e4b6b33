r"""Paper 000's occupancy study (Section 5 "OccupancyNet Analysis", Appendix E, Table 4, Fig. 5b):
implicit surfaces of Stanford scans with no encoding, Fourier features and a multigrid encoding.

- :func:`mesh_list`: the meshes asked for (names or paths), each with the Table 4 row it uses;
- :func:`load_meshes`: those that can be used, each refusal reported (a missing mesh is an error);
- :func:`table4_configs`: that row's three networks at a chosen size and length;
- :func:`occupancy_task`: one network on one mesh (a sweep task): training on points drawn anew
  every epoch, NTK spectra at chosen epochs, held-out IoU curves, and at the end the extracted
  0.5 level set, its Chamfer-L1 to the truth and renders of both;
- :func:`summarize`, :func:`mean_spectra`, :func:`occupancy_claims`: the tables, Fig. 5b's mean
  spectra and the claim records.

**Training points.** The paper: "Points were randomly sampled each epoch in the scaled mesh's
bounding box", labels 1 inside and 0 outside. We draw, once per mesh, a pool of ``pool_points``
uniform points in the normalized mesh's bounding box with exact labels
(:func:`inrlib.data.occupancy_samples`, winding numbers; cached), and every epoch a fresh
``points_per_epoch`` of them at random (with replacement, from the run's seeded generator). With
``points_per_epoch`` equal to the batch size, an epoch is one SGD step. Uniform only, no
near-surface oversampling: the paper says uniform, and Occupancy Networks (Mescheder et al. 2019)
trains on uniform points in the padded bounding box too.

**Metrics** (normalized frame, longest axis 1), as Occupancy Networks reports them: IoU of
``p >= 0.5`` against the labels on ``eval_points`` held-out uniform points in the bounding box and
on as many near-surface points (surface samples moved by ``N(0, 0.01^2)`` per axis), and
Chamfer-L1 (:func:`inrlib.render.chamfer_l1`) between the marching-cubes surface at
``resolution^3`` and the true mesh.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...ntk.spectra import compare_at, mean_log_spectrum, mean_resampled, ordered_fraction
from ...research.claims import claim
from ...research.experiments import RunConfig, run
from ...research.papers import TABLE4, TABLE4_MESHES
from .common import kernel_dtype, setting_text

__all__ = ["ENCODINGS", "LABELS", "logits", "mesh_list", "load_meshes",
           "table4_configs", "occupancy_task", "summarize", "mean_spectra",
           "occupancy_claims", "CAMERA"]

ENCODINGS = ("baseline", "ffe", "mpe")
LABELS = {"baseline": "Baseline", "ffe": "FFE", "mpe": "MPE"}
#: The camera of every render: offset from the mesh's bounding-box centre (normalized units).
CAMERA = (0.9, 0.75, 1.6)
#: The Table 4 row a mesh that is not in Table 4 uses.
DEFAULT_ROW = "dragon"


def mesh_list(meshes: str | Sequence[str]) -> list[dict[str, str]]:
    """Parse ``meshes`` (a name, a path, or a comma-separated list; or a list) into
    ``[{"spec", "name", "row", "row_note"}]``: ``name`` a short unique label (the file stem),
    ``row`` the Table 4 row used (the mesh's own when its name contains ``armadillo``, ``buddha``
    or ``dragon``; else :data:`DEFAULT_ROW`, and ``row_note`` says so)."""
    items = [m.strip() for m in (meshes.split(",") if isinstance(meshes, str) else meshes) if str(m).strip()]
    if not items:
        raise ValueError("meshes is empty: give a name ('bunny', 'dragon'), a mesh file path, or a comma-separated list")
    out, seen = [], set()
    for spec in items:
        stem = re.sub(r"[^a-z0-9]+", "_", Path(str(spec)).stem.lower()).strip("_") or "mesh"
        name, k = stem, 2
        while name in seen:
            name, k = f"{stem}_{k}", k + 1
        seen.add(name)
        row = next((r for r in TABLE4_MESHES if r in stem), None)
        note = "" if row else f"not in Table 4: the {DEFAULT_ROW.title()}'s row"
        out.append({"spec": str(spec), "name": name, "row": row or DEFAULT_ROW, "row_note": note})
    return out


def load_meshes(meshes: str | Sequence[str], *, repair: bool = False,
                skip_missing: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Read every mesh of :func:`mesh_list` ``(meshes)`` with :func:`inrlib.data.load_mesh` (``repair``
    passed on).

    Returns ``(rows, problems)``: ``rows`` the meshes that can be used (:func:`mesh_list`'s fields plus
    ``faces``, ``extent`` (normalized, ``"x x y x z"``) and ``source``), ``problems`` one ``"<mesh>: <reason>"``
    per mesh left out. A mesh refused by ``load_mesh`` (empty, not watertight, unreadable) is left out;
    a missing one (no such file, a name inrlib cannot fetch) is an error unless ``skip_missing``. Each
    problem is also printed to stderr as it happens (papermill's ``--log-output`` and the book pipeline
    show it in the terminal).

    Raises:
        FileNotFoundError: a mesh is missing and ``skip_missing`` is False (every missing one listed).
        ValueError: no mesh is left (every reason listed).
    """
    from ...data import list_meshes, load_mesh

    rows, problems, missing = [], [], []
    for m in mesh_list(meshes):
        spec = m["spec"]
        try:
            mesh = load_mesh(spec, repair=repair)
        except (ValueError, FileNotFoundError, IsADirectoryError) as err:
            absent = not Path(os.path.expanduser(spec)).exists() and spec.strip().lower() not in list_meshes()
            if absent:
                missing.append(f"{spec}: {err}")
            what = "is missing" if absent else "was refused"
            left = "; left out (skip_missing=True)" if absent and skip_missing else ""
            print(f"occupancy: mesh {spec!r} {what}: {err}{left if absent else '; left out'}", file=sys.stderr,
                  flush=True)
            problems.append(f"{spec}: {err}")
            continue
        ext = mesh.bounds[1] - mesh.bounds[0]
        rows.append({**m, "faces": len(mesh.faces), "extent": " x ".join(f"{v:.2f}" for v in ext),
                     "source": mesh.metadata.get("source", spec)})
    if missing and not skip_missing:
        raise FileNotFoundError(f"{len(missing)} of the meshes {meshes!r} not found:\n"
                                + "\n".join(f"- {p}" for p in missing)
                                + "\nfix the name or path, or pass skip_missing=True to leave them out")
    if not rows:
        hint = "" if repair else "; a mesh that is not watertight may pass with repair=True"
        raise ValueError(f"none of the meshes {meshes!r} could be used:\n" + "\n".join(f"- {p}" for p in problems)
                         + hint)
    return rows, problems


def table4_configs(row: str, *, epochs: int | None = None, batch_size: int | None = None,
                   hidden: Sequence[int] | None = None, lr_scale: float = 1.0) -> list[RunConfig]:
    """Table 4's baseline, FFE and MPE of ``row`` with the changes given (``None``: Table 4's;
    ``lr_scale`` multiplies Table 4's learning rate)."""
    out = []
    for enc in ENCODINGS:
        c = TABLE4[f"{row}/{enc}"]
        changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size),
                                     ("hidden", tuple(hidden) if hidden is not None else None)) if v is not None}
        note = ", ".join(f"{k} {v if k != 'hidden' else f'{len(v)} x {v[0]}'}" for k, v in changes.items())
        if lr_scale != 1:
            changes["lr"] = c.lr * float(lr_scale)
            note += f"{', ' if note else ''}lr x {lr_scale:g}"
        out.append(c.replace(name=enc, **changes, note=note))
    return out


def logits(model: torch.nn.Module) -> torch.nn.Module:
    """The network before its final sigmoid (sharing its parameters): ``encoding`` then ``mlp[:-1]``."""
    if not isinstance(getattr(model, "mlp", None), torch.nn.Sequential) or not isinstance(model.mlp[-1], torch.nn.Sigmoid):
        raise ValueError("logits needs a CoordinateMLP ending in a sigmoid (output_activation='sigmoid')")
    return torch.nn.Sequential(model.encoding, *list(model.mlp)[:-1])


class _Surface:
    """``measure`` of :func:`inrlib.research.experiments.run` for one occupancy network: at each NTK epoch the
    spectrum of the NTK of its *logits* (before the sigmoid) on the NTK points; at the last epoch
    the extracted level set, its Chamfer-L1 to the truth, the held-out IoUs and a render."""

    def __init__(self, mesh, held: Mapping[str, tuple[torch.Tensor, torch.Tensor]], resolution: int,
                 chamfer_points: int, render_size: int, seed: int, probe: torch.Tensor | None = None,
                 ntk_dtype: torch.dtype = torch.float64, surface: bool = True):
        self.mesh, self.held, self.resolution = mesh, held, resolution
        self.chamfer_points, self.render_size, self.seed = chamfer_points, render_size, seed
        self.probe, self.ntk_dtype, self.surface = probe, ntk_dtype, surface

    def __call__(self, model, epoch, kernels, final):
        out: dict[str, Any] = {}
        dev = next(model.parameters()).device
        if kernels is not None and self.probe is not None:
            from ...ntk import empirical_ntk, rounding_floor, spectrum
            K = empirical_ntk(logits(model), self.probe.to(dev), dtype=self.ntk_dtype)
            ev = spectrum(K)
            out["logit_spectrum"], out["logit_floor"] = ev, rounding_floor(K, ev)
        if not final:
            return out or None
        from ...render import EmptySurfaceError, chamfer_l1, extract_surface, render
        out["iou"] = _held_iou(model, self.held)
        if not self.surface:
            return out
        lo, hi = np.clip(self.mesh.bounds[0] - 0.02, 0, 1), np.clip(self.mesh.bounds[1] + 0.02, 0, 1)
        try:
            surface = extract_surface(lambda p: model(p.to(dev)), self.resolution, box=(lo, hi), device=dev)
        except EmptySurfaceError as err:
            out.update({"no_surface": str(err), "chamfer": None})
            return out
        out["chamfer"] = chamfer_l1(surface, self.mesh, n=self.chamfer_points, seed=self.seed)
        out["surface_faces"] = int(len(surface.faces))
        eye = self.mesh.bounds.mean(axis=0) + np.asarray(CAMERA)
        pic = render(surface, self.render_size, self.render_size, eye=eye, target=self.mesh.bounds.mean(axis=0))
        out["render"] = pic["shaded"].astype(np.float32)
        return out


def _held_iou(model, held: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    from ...metrics import iou
    dev = next(model.parameters()).device
    with torch.no_grad():
        return {k: float(iou(model(x.to(dev)).reshape(-1).cpu(), y)) for k, (x, y) in held.items()}


def occupancy_task(name: str, config: Mapping[str, Any], mesh: str, seed: int, pool_points: int,
                   points_per_epoch: int, ntk_points: int, ntk_epochs: Sequence[int], eval_points: int,
                   eval_every: int, resolution: int, chamfer_points: int, render_size: int,
                   device: str = "cpu", ntk_dtype: str = "float64", surface: bool = True,
                   repair: bool = False) -> dict[str, Any]:
    """One occupancy network on one mesh (a sweep task; arguments are plain data; see the module
    notes for the sampling and the metrics).

    Returns :func:`inrlib.research.experiments.run`'s result plus ``name``, ``mesh``, ``iou_curve``
    (``{"epochs", "uniform", "near"}``, held-out IoU every ``eval_every`` epochs and at the end),
    ``final`` (the last measure: ``iou``, ``chamfer``, ``render`` or ``no_surface``) and
    ``truth_render`` (the true mesh from the same camera). ``surface=False`` skips the level set,
    Chamfer and renders (a control run: only the IoUs). ``repair`` is :func:`inrlib.data.load_mesh`'s.
    """
    from ...data import load_mesh, occupancy_samples
    from ...render import render
    dtype = kernel_dtype(ntk_dtype)
    cfg = RunConfig.from_dict(config)
    m = load_mesh(mesh, repair=repair)
    pool_x, pool_y = occupancy_samples(m, int(pool_points), seed=seed, box="mesh")
    probe, _ = occupancy_samples(m, int(ntk_points), seed=seed + 1, box="mesh")
    held = {"uniform": occupancy_samples(m, int(eval_points), seed=seed + 2, box="mesh"),
            "near": occupancy_samples(m, int(eval_points), seed=seed + 3, near_surface=1.0, sigma=0.01, box="mesh")}
    k = int(points_per_epoch)

    def draw(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(pool_x.shape[0], (k,), generator=generator)
        return pool_x[idx], pool_y[idx]

    first = draw(torch.Generator().manual_seed(seed + 4))
    curve: dict[str, list] = {"epochs": [], "uniform": [], "near": []}

    def eval_fn(model, epoch):
        if epoch % int(eval_every) and epoch != cfg.epochs:
            return float("nan")
        values = _held_iou(model, held)
        curve["epochs"].append(int(epoch))
        for key, v in values.items():
            curve[key].append(v)
        return values["uniform"]

    result = run(cfg, first[0], first[1], seed=seed, ntk_epochs=list(ntk_epochs), ntk_points=probe,
                 measure_epochs="end",
                 measure=_Surface(m, held, int(resolution), int(chamfer_points), int(render_size), seed, probe,
                                  dtype, surface),
                 device=device, ntk_dtype=dtype,
                 # the epoch's own points are fresh: their loss after the step adds a forward pass and little
                 # information, so the history keeps the running loss; held-out IoUs come from eval_fn
                 fit_kwargs={"resample": lambda epoch, gen: draw(gen), "eval_fn": eval_fn, "full_eval": False})
    last = result["snapshots"].get(cfg.epochs, {}).get("measure") if result["diverged"] is None else None
    eye = m.bounds.mean(axis=0) + np.asarray(CAMERA)
    truth = render(m, int(render_size), int(render_size), eye=eye, target=m.bounds.mean(axis=0)) if surface else None
    result.update({"name": name, "mesh": mesh, "iou_curve": curve, "final": last,
                   "truth_render": truth["shaded"].astype(np.float32) if truth else None, "n_faces": int(len(m.faces)),
                   "inside_fraction": float(pool_y.mean())})
    return result


# ----------------------------------------------------------------------------------------------
# reading the runs
# ----------------------------------------------------------------------------------------------

def summarize(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per mesh and encoding (``results[mesh][encoding]``): held-out IoUs, Chamfer-L1, the
    final training loss, whether a surface was found, and divergence."""
    rows = []
    for mesh, per in results.items():
        for enc, r in per.items():
            f = r["final"] or {}
            ch = f.get("chamfer") or {}
            rows.append({"mesh": mesh, "encoding": enc, "label": LABELS[enc], "setting": setting_text(r["config"]["encoding"]),
                         "lr": r["config"]["lr"], "batch_size": r["config"]["batch_size"],
                         "iou_uniform": f.get("iou", {}).get("uniform", float("nan")),
                         "iou_near": f.get("iou", {}).get("near", float("nan")),
                         "chamfer": ch.get("chamfer_l1", float("nan")),
                         "final_loss": (r["history"].get("full_loss") or r["history"].get("loss") or [float("nan")])[-1],
                         "surface": bool(f) and "no_surface" not in f,
                         "diverged_epoch": r["diverged"]["epoch"] if r["diverged"] else None})
    return rows


def mean_spectra(results: Mapping[str, Mapping[str, Mapping[str, Any]]], encoding: str, epoch: int,
                 length: int = 8000, kernel: str = "output") -> dict[str, Any] | None:
    """Fig. 5b's curve: :func:`inrlib.spectra.mean_resampled` of ``encoding``'s spectra over the
    meshes, of the NTK of the network's output (``kernel="output"``, after the sigmoid) or of its
    logits (``"logit"``)."""
    pairs = []
    for per in results.values():
        snap = per[encoding]["snapshots"].get(epoch, {})
        if kernel == "output" and "spectra" in snap:
            pairs.append((snap["spectra"]["total"], snap["floors"]["total"]))
        elif kernel == "logit" and "logit_spectrum" in (snap.get("measure") or {}):
            pairs.append((snap["measure"]["logit_spectrum"], snap["measure"]["logit_floor"]))
    return mean_resampled(pairs, length)


def occupancy_claims(rows: Sequence[Mapping[str, Any]], curves: Mapping[str, Mapping[str, Any] | None],
                     context: str, logit_curves: Mapping[str, Mapping[str, Any] | None] | None = None
                     ) -> list[dict[str, Any]]:
    """The claim records of the occupancy study (rules stated here once and on the page).

    ``curves``: the mean end-of-training spectra per encoding (:func:`mean_spectra`) of the NTK of
    the network's output, which the verdicts use; ``logit_curves`` (optional) the same for the NTK
    of its logits, reported in the notes.
    ``000.fig5b.order`` holds when MPE > FFE > baseline at >= 90 % of the indices resolved in all
    three (approximately >= 50 %). ``000.fig5b.min_eig_ffe_close_to_mpe``: the mean spectra's
    smallest values within 1 order holds, within 2 approximately, else differs (a bound when one is
    at its floor). ``000.appE.iou_order.<mesh>``: MPE > FFE > baseline in held-out IoU on both the
    uniform and the near-surface points holds, on one of them approximately, else fails.
    """
    out = []
    if all(curves.get(e) is not None for e in ENCODINGS):
        o = ordered_fraction(curves, ("mpe", "ffe", "baseline"))
        f = o["ordered_resolved"]
        if f == f:
            verdict = "holds" if f >= 0.9 else "approximately" if f >= 0.5 else "fails"
            extra = ""
            if logit_curves and all(logit_curves.get(e) is not None for e in ENCODINGS):
                g = ordered_fraction(logit_curves, ("mpe", "ffe", "baseline"))["ordered_resolved"]
                extra = f"The NTK of the logits (before the sigmoid) is so ordered at {g:.0%} of its resolved indices. "
            out.append(claim("000.fig5b.order", f, verdict,
                             f"the mean end-of-training spectra over {curves['mpe']['n']} mesh(es) are ordered MPE > FFE > "
                             f"baseline at {f:.0%} of the indices resolved in all three ({o['resolved']:.0%} of all). "
                             + extra + f"Holds at >= 90 %, approximately at >= 50 %. {context}", unit="fraction of indices"))
        else:
            out.append(claim("000.fig5b.order", None, "not tested", f"no index is resolved in all three spectra. {context}"))
        mpe, ffe = curves["mpe"], curves["ffe"]
        c = compare_at(mpe["mean"], mpe["floor"], ffe["mean"], ffe["floor"], 0)
        overall = mean_log_spectrum(mpe["mean"], mpe["floor"]) - mean_log_spectrum(ffe["mean"], ffe["floor"])
        note = (f"log10(MPE / FFE) at the smallest value of the mean spectra: {c['value']:+.2f} ({c['kind']}); over the "
                f"whole spectrum the mean log10 eigenvalue of the MPE minus that of the FFE is {overall:+.2f} orders. ")
        if c["kind"] == "exact":
            gap = abs(c["value"])
            verdict = "holds" if gap <= 1 else "approximately" if gap <= 2 else "differs"
        elif c["kind"] == "noise":
            verdict = "not tested"
            both = np.flatnonzero((np.asarray(mpe["mean"]) > mpe["floor"]) & (np.asarray(ffe["mean"]) > ffe["floor"]))
            note += "Both are at their rounding floors: no measurement. "
            if both.size:
                j = int(both[-1])
                note += (f"At the smallest index resolved in both ({j + 1} of {len(mpe['mean'])}) the ratio is "
                         f"{np.log10(mpe['mean'][j] / ffe['mean'][j]):+.2f} orders. ")
        else:
            verdict = "not tested"
            note += "One of them is at its rounding floor, so the value is only a bound. "
        out.append(claim("000.fig5b.min_eig_ffe_close_to_mpe", c["value"], verdict,
                         note + f"Holds within 1 order, approximately within 2. {context}", unit="orders of magnitude",
                         bound=c["kind"] if c["kind"] in ("lower bound", "upper bound") else None))
    else:
        for id_ in ("000.fig5b.order", "000.fig5b.min_eig_ffe_close_to_mpe"):
            out.append(claim(id_, None, "not tested", f"an encoding has no end-of-training spectrum (diverged). {context}"))
    by: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["mesh"], {})[r["encoding"]] = r
    for mesh, per in by.items():
        id_ = f"000.appE.iou_order.{mesh}"
        if any(per[e]["diverged_epoch"] is not None for e in ENCODINGS):
            out.append(claim(id_, None, "not tested", f"{mesh}: a network diverged. {context}", paper_id="000.appE.iou_order"))
            continue
        u = [per[e]["iou_uniform"] for e in ("mpe", "ffe", "baseline")]
        n = [per[e]["iou_near"] for e in ("mpe", "ffe", "baseline")]
        ok_u, ok_n = u[0] > u[1] > u[2], n[0] > n[1] > n[2]
        verdict = "holds" if ok_u and ok_n else "approximately" if ok_u or ok_n else "fails"
        ours = " / ".join(f"{v:.2f}" for v in u)   # MPE / FFE / baseline
        out.append(claim(id_, ours, verdict,
                         f"{mesh}: IoU MPE / FFE / baseline on uniform held-out points " + " / ".join(f"{v:.3f}" for v in u)
                         + ", near the surface " + " / ".join(f"{v:.3f}" for v in n)
                         + f". Holds when MPE > FFE > baseline on both, approximately on one. {context}",
                         paper_id="000.appE.iou_order", statement=f"{mesh}: the MPE's IoU beats the FFE's, which beats "
                                                                 "the baseline's", unit="IoU"))
    return out
