"""The papers' claims: their own values in one place, and the records chapters write about them.

:data:`PAPER_VALUES` holds every number and sentence of the three papers that a chapter tests, each
with its source (paper, table / figure / section, row) and, for a sentence, the quoted text. Nothing
else in the library or the book types in a paper's number: chapters call :func:`paper_value` or
:func:`claim`.

A chapter records what it found as a list of claim records (DESIGN.md, "Claims as data") under
``numbers.claims`` of its results file::

    {"id": "000.table3.psnr.mpe_fine", "paper": "000", "statement": "...", "paper_value": 41.5,
     "ours": 38.2, "unit": "dB", "verdict": "differs", "note": "...", "source": "Table 3, row Fine (MPE)"}

``verdict`` is one of :data:`VERDICTS`. :func:`claim` builds a record from an id (the paper's side
comes from :data:`PAPER_VALUES`), :func:`check_claims` validates a list, and
:func:`verdict_from_difference` is the rule for numeric comparisons, stated where it is used.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

__all__ = ["PAPER_VALUES", "VERDICTS", "CLAIM_FIELDS", "paper_value", "claim", "check_claims",
           "verdict_from_difference", "verdict_counts"]

VERDICTS = ("holds", "approximately", "differs", "fails", "not tested")
CLAIM_FIELDS = ("id", "paper", "statement", "paper_value", "ours", "unit", "verdict", "note", "source")

_ENC_ROWS = {"baseline": "Baseline", "ffe_low": "Low (FFE)", "ffe_mid": "Mid (FFE)", "ffe_high": "High (FFE)",
             "mpe_coarse": "Coarse (MPE)", "mpe_fine": "Fine (MPE)"}
_T3_PSNR = {"baseline": 20.0, "ffe_low": 25.0, "ffe_mid": 35.0, "ffe_high": 36.5, "mpe_coarse": 34.5, "mpe_fine": 41.5}
_T1_SCALING_MSSSIM = {"baseline": 0.08, "ffe_low": 0.20, "ffe_mid": 0.23, "ffe_high": 0.40, "mpe_coarse": 0.37,
                      "mpe_fine": 0.73}
_T2_PSNR = {"mpe": 45.28, "ffe": 33.47, "baseline": 29.94}
_T1_IMAGENET_MSSSIM = {"mpe": 0.79, "ffe": 0.39, "baseline": 0.32}
_T1_ROWS = {"mpe": "Multigrid", "ffe": "Fourier", "baseline": "Baseline"}

#: id -> {"paper", "source", "statement", "value", "unit", "quote"?}. ``value`` is the paper's number,
#: or ``None`` for a qualitative statement (then ``quote`` is the paper's sentence).
PAPER_VALUES: dict[str, dict[str, Any]] = {}


def _add(id_: str, source: str, statement: str, value: Any = None, unit: str = "", quote: str | None = None) -> None:
    if id_ in PAPER_VALUES:
        raise ValueError(f"duplicate paper value id {id_!r}")
    entry = {"paper": id_.split(".", 1)[0], "source": source, "statement": statement, "value": value, "unit": unit}
    if quote is not None:
        entry["quote"] = quote
    PAPER_VALUES[id_] = entry


for _k, _v in _T3_PSNR.items():
    _add(f"000.table3.psnr.{_k}", f"paper 000, Table 3, row {_ENC_ROWS[_k]}, column PSNR",
         f"PSNR of the {_ENC_ROWS[_k]} encoding in the scaling study", _v, "dB")
for _k, _v in _T1_SCALING_MSSSIM.items():
    _add(f"000.table1.msssim.{_k}", f"paper 000, Table 1, Scaling columns, {_ENC_ROWS[_k].split(' ')[0]}, row m-SSIM",
         f"MS-SSIM of the {_ENC_ROWS[_k]} encoding in the scaling study", _v, "")
for _k, _v in _T2_PSNR.items():
    _add(f"000.table2.psnr.{_k}", f"paper 000, Table 2, row {_T1_ROWS[_k]}, column PSNR",
         f"PSNR of the tuned {_T1_ROWS[_k]} encoding, mean over the ImageNet images", _v, "dB")
for _k, _v in _T1_IMAGENET_MSSSIM.items():
    _add(f"000.table1.imagenet_msssim.{_k}", f"paper 000, Table 1, ImageNet columns, {_T1_ROWS[_k]}, row m-SSIM",
         f"MS-SSIM of the tuned {_T1_ROWS[_k]} encoding on ImageNet", _v, "")

_ABSTRACT = ("we show that the MPE increases the minimum eigenvalue by 8 orders of magnitude over the baseline and "
             "2 orders of magnitude over the FFE. The increase in spectrum corresponds to a 15 dB (PSNR) / 0.65 "
             "(MS-SSIM) increase over baseline and a 12 dB (PSNR) / 0.33 (MS-SSIM) increase over the FFE.")
_add("000.abstract.lambda_min.mpe_over_baseline", "paper 000, abstract",
     "the MPE raises the minimum NTK eigenvalue over the baseline by 8 orders of magnitude", 8.0,
     "orders of magnitude", _ABSTRACT)
_add("000.abstract.lambda_min.mpe_over_ffe", "paper 000, abstract",
     "the MPE raises the minimum NTK eigenvalue over the FFE by 2 orders of magnitude", 2.0,
     "orders of magnitude", _ABSTRACT)
_add("000.abstract.psnr_gain.over_baseline", "paper 000, abstract", "PSNR gain of the MPE over the baseline",
     15.0, "dB", _ABSTRACT)
_add("000.abstract.psnr_gain.over_ffe", "paper 000, abstract", "PSNR gain of the MPE over the FFE", 12.0, "dB",
     _ABSTRACT)
_add("000.abstract.msssim_gain.over_baseline", "paper 000, abstract", "MS-SSIM gain of the MPE over the baseline",
     0.65, "", _ABSTRACT)
_add("000.abstract.msssim_gain.over_ffe", "paper 000, abstract", "MS-SSIM gain of the MPE over the FFE", 0.33, "",
     _ABSTRACT)
_add("000.fig2.no_grid_near_baseline", "paper 000, Figure 2 (caption) and Section 4",
     "without its grid term the MPE's spectrum is barely above the baseline's; with it, far higher", None, "",
     "Without the grid, the spectrum is barely above the baseline. With the grid, the spectrum is 8 magnitudes higher.")
_add("000.fig4.ffe_saturates", "paper 000, Figure 4 and Section 5 (Scaling Analysis)",
     "the FFE's spectrum saturates: little improvement from the mid to the high frequencies", None, "",
     "we see that the FFE saturates, and there is little improvement between the mid and high frequencies.")
_add("000.fig4.fine_mpe_highest", "paper 000, Figure 4 and Section 5 (Scaling Analysis)",
     "the fine MPE has the highest spectrum of all encodings", None, "",
     "The fine grid has the highest spectrum overall")
_add("000.fig4.coarse_crosses_high_ffe", "paper 000, Figure 4 and Section 5 (Scaling Analysis)",
     "the spectra of the coarse MPE and the high FFE cross around the middle of the plot", None, "",
     "the FFE and coarse MPE flip around the middle of the plot.")
_add("000.fig6.mpe_loss_1e-3_sooner", "paper 000, Appendix A.2, Figure 6",
     "the coarse MPE's loss drops below 1e-3 125 epochs sooner than the mid and high FFE's", 125.0, "epochs",
     "it trains much faster with the loss dropping below 1e-3 125 epochs sooner than the mid and high frequency "
     "encodings.")
_add("000.appB.spectrum_changes", "paper 000, Appendix B, Figure 11",
     "the spectrum at the start of training is very different from the end: low and close between encodings "
     "at the start, raised and separated at the end", None, "",
     "We see that the spectrum is very low and close between encodings at the start of training, but raises and "
     "separates by the end of training.")
_add("000.appC.regions_similar", "paper 000, Appendix C, Figure 13",
     "the MPEs and the higher-frequency FFEs have similar numbers of activation regions", None, "",
     "We find that the network has similar activation for both the MPEs and higher frequency FFEs.")
_add("000.eq5.kernel_predicts_order", "paper 000, Section 3, Eq. 5 (the premise of the analysis)",
     "training is approximated by kernel regression with the NTK, so the kernel predicts how well each "
     "encoding fits", None, "",
     "Assuming K_NTK is invertible, the network's prediction can be approximated by kernel regression")


_add("000.eq2", "paper 000, Section 3.3, Eq. 2 (with Eq. 10)",
     "a grid cell's value at (x, y) is the bilinear interpolation of its four corner weights", None, "",
     "[Dx2 Dx1] [[w11 w12] [w21 w22]] [Dy2 Dy1]^T = w11 Dy2 Dx2 + w12 Dy1 Dx2 + w21 Dy2 Dx1 + w22 Dy1 Dx1")
_add("000.eq9", "paper 000, Section 4, Eq. 9",
     "the NTK of a one-hidden-layer MLP is the sum of three inner products (output weights, input weights, "
     "biases)", None, "",
     "K_NTK(i,j) = E[1/n <phi(W1 x_i + beta b), phi(W1 x_j + beta b)> + 1/n <W2 x_i phi'(.), W2 x_j phi'(.)> "
     "+ beta^2/n <W2 phi'(.), W2 phi'(.)>]")
_add("000.eq11", "paper 000, Section 4, Eq. 11",
     "the gradient of a grid cell's value with respect to its four weights is the outer product of the "
     "interpolation weights", None, "",
     "It should be apparent that the gradient with respect to the weights in the grid cell is "
     "grad_W g(x, y) = 1/(Dx Dy) [Dx2 Dx1]^T [Dy2 Dy1].")
_add("000.eq13.grid_term", "paper 000, Section 4, Eq. 12-13",
     "the MPE's NTK is the MLP's kernel on the embedding plus one grid term per level and feature", None, "",
     "The NTK induced by the composition of the MPE and a MLP is the sum of the original NTK, Equation 9, without "
     "any encoding and the NTK produced by each layer and learnable parameter, Equation 12.")
_add("000.eq14.ffe_no_grid_term", "paper 000, Section 4, Eq. 14",
     "the FFE's NTK is the MLP's kernel at the Fourier features: no further term", None, "",
     "Equation 14 shows that the FFE improves the NTK solely through its embedding space, and Theorem 1 does not "
     "apply.")
_THEOREM1 = ("The ith eigenvalue, sorted in descending order, of each kernel follows lambda_i^MLP <= lambda_i^MLP + "
             "lambda_n^MPE <= lambda_i^MLP+MPE for all i in {1, ..., n}")
_add("000.theorem1.chain_a", "paper 000, Section 4, Theorem 1 and its proof (Weyl's inequality)",
     "lambda_i(K_MLP on the embedding) + lambda_n(K+) <= lambda_i(K_MPE) for every i (Weyl's inequality, with "
     "the MPE network's own MLP term)", None, "", _THEOREM1)
_add("000.theorem1.chain_b", "paper 000, Section 4, Theorem 1 as stated",
     "lambda_i(K_MLP) <= lambda_i(K_MPE) for every i, K_MLP the kernel of the network without encoding", None, "",
     _THEOREM1)


_add("000.table2.psnr_order", "paper 000, Table 2 caption",
     "with tuned encodings the MPE keeps a large PSNR lead over the FFE and the baseline", None, "",
     "The multigrid parametric encoding (MPE) is able to maintain a large lead in PSNR over the Fourier feature "
     "encoding (FFE) and baseline.")
_add("000.fig5a.order", "paper 000, Figure 5(a) and its caption; Section 5, ImageNet Analysis",
     "mean NTK spectra over the ImageNet images: MPE above FFE above baseline", None, "",
     "We find that tuned encodings have fairly regular performance: the MPE outperforms the FFE, which outperforms "
     "the baseline.")


_add("000.fig5b.order", "paper 000, Figure 5(b); Section 5, OccupancyNet Analysis",
     "mean NTK spectra over the meshes: MPE above FFE above baseline", None, "",
     "Again, we see a clear benefit of the MPE, with the spectra raising above the other encodings. [...] Both "
     "encodings show a clear improvement over the baseline, as expected.")
_add("000.fig5b.min_eig_ffe_close_to_mpe", "paper 000, Section 5, OccupancyNet Analysis",
     "the minimum eigenvalues of the FFE and the MPE are similar (the MPE's spectrum is higher overall)", None, "",
     "The minimum eigenvalues of the FFE and MPE are similar, but the overall spectrum for the MPE is higher.")
_add("000.appE.iou_order", "paper 000, Appendix E, Figure 14 caption",
     "per mesh, the MPE's surface beats the FFE's, which beats the baseline's (here: by IoU)", None, "",
     "We find that the MPE outperforms the FFE and baseline in all scenarios, with baseline struggling to capture "
     "any recognizable features of the original mesh.")


_add("001.lemma1", "paper 001, Section 3, Lemma 1",
     "N(0, c^2/3) and U(-c, c) have the same variance, so Kaiming normal keeps SIREN's hidden-layer variance",
     None, "", "Lemma 1. Given any c, for X ~ N(0, 1/3 c^2) and Y ~ U(-c, c), we have Var[X] = Var[Y] = 1/3 c^2.")
_add("001.ntk_low_pass", "paper 001, Abstract and Section 1",
     "the NTK of a simple sinusoidal network approximates a low-pass filter", None, "",
     "We then analyze the behavior of these networks from the neural tangent kernel perspective and demonstrate "
     "that their kernel approximates a low-pass filter with an adjustable bandwidth.")
_add("001.bandwidth_grows_with_w", "paper 001, Abstract and Section 3",
     "the filter's bandwidth is adjustable, set by the first layer's w", None, "",
     "We will, however, keep the w parameter, since (as we will see in future analyses) it is in fact a useful "
     "tool for allowing the network to fit inputs of diverse frequencies.")
_add("001.best_w_tracks_signal_frequency", "paper 001, Section 1",
     "the best w is the one whose bandwidth matches the signal's highest frequency", None, "",
     "We demonstrate we can optimize the performance of a sinusoidal network by tuning the bandwidth of its kernel "
     "to the maximum frequency present in the input signal being learned.")
_add("001.simple_matches_siren", "paper 001, Section 1",
     "simple sinusoidal networks match or outperform SIREN on implicit representations", None, "",
     "We show that these simple sinusoidal networks can match and outperform SIRENs in implicit representation "
     "learning tasks, such as fitting videos, images and audio signals.")


_add("002.init_standard_normal", "paper 002, Abstract, contribution (iii)",
     "STAF's initialization gives standard normal post-activations without a central-limit argument", None, "",
     "(iii) provides an initialization that yields standard normal post-activations without asymptotic central "
     "limit theorem (CLT) arguments.")
_add("002.kronecker_equivalence", "paper 002, Abstract, contribution (i)",
     "a trainable sinusoidal activation network is expressible as a standard sine network (Kronecker construction)",
     None, "", "(i) establishes a Kronecker-equivalence construction that expresses trainable sinusoidal activations "
     "with standard sine networks and quantifies expressive growth")
_add("002.ntk_spectrum_changes", "paper 002, Abstract, contribution (ii)",
     "the trainable sinusoidal parameterization changes the NTK spectrum", None, "",
     "(ii) characterizes how the Neural Tangent Kernel (NTK) spectrum changes under trainable sinusoidal "
     "parameterization")
_add("002.psnr_vs_siren", "paper 002, Abstract",
     "STAF is competitive with, and often stronger than, SIREN-like networks in PSNR", None, "",
     "Empirically, on images, audio, shapes, inverse problems (super-resolution, denoising) and NeRF, STAF is "
     "competitive and often stronger on distortion-oriented reconstruction metrics such as PSNR/SSIM")


def paper_value(id_: str) -> dict[str, Any]:
    """The paper's side of claim ``id_`` (a copy); a clear error for an unknown id."""
    if id_ not in PAPER_VALUES:
        near = [k for k in PAPER_VALUES if k.split(".")[:2] == id_.split(".")[:2]]
        raise KeyError(f"no paper value {id_!r} in inrlib.claims.PAPER_VALUES"
                       + (f"; ids of that group: {', '.join(near)}" if near else ""))
    return dict(PAPER_VALUES[id_])


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def claim(id_: str, ours: Any, verdict: str, note: str = "", *, statement: str | None = None,
          unit: str | None = None, bound: str | None = None, paper_id: str | None = None) -> dict[str, Any]:
    """A claim record: the paper's side from :data:`PAPER_VALUES`, ours as given.

    ``paper_id`` (default ``id_``) names the paper's entry when one statement is tested several
    times under its own ids, e.g. ``000.appE.iou_order.bunny`` against ``000.appE.iou_order``.

    ``ours`` is a number, a short string or ``None`` (not measured); non-finite numbers become
    ``None``. ``verdict`` must be one of :data:`VERDICTS`; a ``"not tested"`` verdict needs a note
    saying why. ``bound="lower bound"`` (or ``"upper bound"``) marks ``ours`` as a bound, not a
    measurement (stored as ``ours_bound``).
    """
    ref = paper_value(paper_id or id_)
    if bound not in (None, "exact", "lower bound", "upper bound"):
        raise ValueError(f"bound must be None, 'exact', 'lower bound' or 'upper bound', got {bound!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} for claim {id_!r} must be one of {', '.join(VERDICTS)}")
    if verdict == "not tested" and not note:
        raise ValueError(f"claim {id_!r} is 'not tested': give a note saying why")
    if hasattr(ours, "item"):
        ours = ours.item()
    record = {"id": id_, "paper": ref["paper"], "statement": statement or ref["statement"],
              "paper_value": ref["value"] if ref["value"] is not None else ref.get("quote"),
              "ours": _finite_or_none(ours), "unit": ref["unit"] if unit is None else unit, "verdict": verdict,
              "note": note, "source": ref["source"]}
    if bound not in (None, "exact"):
        record["ours_bound"] = bound
    return record


def check_claims(claims: Iterable[Mapping[str, Any]], required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Validate claim records: every field present, known verdicts, unique ids, and every id in
    ``required`` recorded. Returns them as plain dicts; raises ``ValueError`` naming each problem."""
    out, problems, seen = [], [], set()
    for c in claims:
        c = dict(c)
        missing = [f for f in CLAIM_FIELDS if f not in c]
        if missing:
            problems.append(f"claim {c.get('id', '?')!r} lacks {', '.join(missing)}")
        if c.get("verdict") not in VERDICTS:
            problems.append(f"claim {c.get('id', '?')!r} has verdict {c.get('verdict')!r}, not one of {VERDICTS}")
        if c.get("id") in seen:
            problems.append(f"claim {c.get('id')!r} recorded twice")
        seen.add(c.get("id"))
        out.append(c)
    absent = [r for r in required if r not in seen]
    if absent:
        problems.append(f"claims not recorded: {', '.join(absent)}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def verdict_from_difference(ours: float, paper: float, holds_within: float, approximately_within: float) -> str:
    """``"holds"`` when ``|ours - paper| <= holds_within``, ``"approximately"`` when within
    ``approximately_within``, else ``"differs"``; ``"not tested"`` when ours is not a finite number."""
    if ours is None or not math.isfinite(float(ours)):
        return "not tested"
    gap = abs(float(ours) - float(paper))
    if gap <= holds_within:
        return "holds"
    if gap <= approximately_within:
        return "approximately"
    return "differs"


def verdict_counts(claims: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{verdict: count}`` over ``claims``, every verdict listed (zeros included)."""
    counts = {v: 0 for v in VERDICTS}
    for c in claims:
        counts[c["verdict"]] += 1
    return counts
