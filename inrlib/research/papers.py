"""The three papers as data: their titles, the experiment configurations they print (paper 000's
Tables 2, 3 and 4) and every value of theirs a chapter tests (:data:`PAPER_VALUES`, with sources).

Nothing else in the library or the book types in a paper's number.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import ModelConfig
from .experiments import RunConfig

__all__ = ["PAPERS", "PAPER_VALUES", "TABLE2", "table2", "TABLE3", "table3", "TABLE4", "TABLE4_MESHES", "table4"]

#: Paper ids and their short titles.
PAPERS = {"000": "Multigrid parametric encodings vs Fourier features (Audia et al.)",
          "001": "Simple sinusoidal networks (bandwidth of the NTK)",
          "002": "STAF: sinusoidal trainable activation functions"}


def _relu_ntk(encoding: Mapping[str, Any], hidden: tuple[int, ...],
              output_activation: str | None = None) -> ModelConfig:
    """Paper 000's network: ReLU layers in the NTK parameterization (Appendix A.1, bias scale 0.1)."""
    return ModelConfig(encoding, hidden, "relu", {"parameterization": "ntk", "beta": 0.1},
                       output_activation=output_activation)


def _t3(name: str, label: str, row: str, encoding: Mapping[str, Any]) -> RunConfig:
    return RunConfig(name=name, label=label, model=_relu_ntk(encoding, (512, 512)), optimizer="sgd", lr=100.0,
                     epochs=300, batch_size=32, loss="mse",
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
    return RunConfig(name=name, label=label, model=_relu_ntk(encoding, (512, 512)), optimizer="sgd", lr=lr,
                     epochs=100, batch_size=batch_size, loss="mse",
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
    return RunConfig(name=f"{mesh}/{enc}", label=label,
                     model=_relu_ntk(encoding, (256,) * 8, output_activation="sigmoid"), optimizer="sgd", lr=lr,
                     epochs=4000, batch_size=batch_size, loss="bce",
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


# ----------------------------------------------------------------------------------------------
# the values a chapter tests
# ----------------------------------------------------------------------------------------------

_ENC_ROWS = {name: config.label for name, config in TABLE3.items()}   # Table 3's row labels
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
