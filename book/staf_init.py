# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: mystnb
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (inrlib)
#     language: python
#     name: inrlib
#   mystnb:
#     render_markdown_format: myst
# ---

# %% [markdown]
# # STAF: trainable sinusoids, their initialization and their kernel
#
# **Question.** Paper 002 replaces the sine of SIREN by a trainable sum of sinusoids,
#
# ```{math}
# :label: staf-act
# \sigma(z) = \sum_{t=1}^{\tau} a_t \sin(\omega_t z + \varphi_t), \qquad \omega_t = \omega_0\, U[0, 1),\quad
# \varphi_t \sim U(-\pi, \pi),
# ```
#
# with amplitudes, frequencies and phases learned (per neuron here, or one set per layer as in the
# public code). It claims (i) a STAF network *is* a standard sine network of a larger width, a
# Kronecker construction; (ii) its NTK spectrum changes with the trainable parameterization; (iii) an
# initialization makes the post-activations exactly standard normal, with no central-limit argument;
# and STAF is competitive with SIREN in PSNR. The seed text gives only the abstract; the derivations
# below are ours, and the public code (AlirezaMorsali/STAF) fixes the details.
#
# **Why exactly normal.** Fix a pre-activation $z$. Then $\theta_t = \omega_t z + \varphi_t$ is
# uniform on the circle (a uniform phase plus anything is uniform modulo $2\pi$) and independent
# across $t$. If $a_t \sim \mathrm{Rayleigh}(s)$ independently, $(a_t \cos\theta_t, a_t \sin\theta_t)$
# is a pair of independent $\mathcal N(0, s^2)$ (the Box-Muller construction), so
#
# ```{math}
# :label: staf-normal
# \sigma(z) = \sum_t a_t \sin\theta_t \sim \mathcal N(0, \tau s^2) = \mathcal N(0, 1) \quad \text{for } s = 1/\sqrt{\tau},
# ```
#
# for every $z$: `inrlib`'s initialization. The public code draws $a_t = \operatorname{sign}(X)
# \sqrt{|X|}$ with $X \sim \mathrm{Laplace}(0, b)$, $b = 1/(2\tau)$. Then $a_t^2 = |X| \sim
# \mathrm{Exponential}$ with mean $b$, so $|a_t|$ is Rayleigh with $2 s^2 = b$ (the sign does not matter
# against a uniform phase), and
#
# ```{math}
# :label: staf-laplace
# \sigma(z) \sim \mathcal N\!\left(0, \tau \frac{b}{2}\right) = \mathcal N\!\left(0, \tfrac14\right)
# \quad \text{whatever } \tau .
# ```
#
# **The Kronecker equivalence.** On $z = W x + b$ ($n$ neurons), $h_i = \sum_t a_{it}
# \sin(\omega_{it}(W_i \cdot x + b_i) + \varphi_{it})$: a sine layer of width $n\tau$ with weights
# $\omega_{it} W_i$ and biases $\omega_{it} b_i + \varphi_{it}$, then the fixed $n \times n\tau$ matrix
# $A_{i,(i,t)} = a_{it}$. With one set per layer, $W' = \omega \otimes W$ and $A = a^\top \otimes I_n$.
# The next layer's weights absorb $A$, so the whole network is a sine network of width $n\tau$.

# %% tags=["parameters"]
profile = "quick"       # smoke, quick (2 CPU cores) or paper
device = "auto"         # auto, cpu, cuda, ...
seed = 0
tau = 5                 # sinusoids per activation (the public code: 5)
w0 = 30.0               # frequency scale (the public code: 30 hidden)
width = None            # hidden width of the initialization study (None: by profile)
depth = None            # hidden layers of the initialization study
draws = None            # initializations of one unit for the fixed-z test
image = "camera"        # the photo whose pixels are the inputs
side = None             # its side in pixels
ntk_width = None        # width of the NTK and training comparison
ntk_depth = 3           # its hidden layers (the public code: 3)
epochs = None           # Adam epochs of the comparison

# %% tags=["hide-input"]
# Each parameter's type, range and value by profile (a None above: this profile's value), checked before anything runs.
from inrlib.book.params import COMMON, Param, resolve

schema = {**COMMON,
          "tau": Param(int, min=1),
          "w0": Param(float, min=0, exclusive=True),
          "width": Param(int, min=1, smoke=32, quick=256, paper=256),
          "depth": Param(int, min=1, smoke=2, quick=5, paper=5),
          "draws": Param(int, min=1, smoke=5_000, quick=200_000, paper=1_000_000),
          "image": Param(str),
          "side": Param(int, min=2, smoke=8, quick=24, paper=64),
          "ntk_width": Param(int, min=1, smoke=16, quick=64, paper=256),
          "ntk_depth": Param(int, min=1),
          "epochs": Param(int, min=1, smoke=3, quick=300, paper=500)}
globals().update(resolve(schema, profile, globals()))

# %% tags=["hide-input"]
import numpy as np
import torch
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from scipy import stats

from inrlib.book import ChapterResults, claims_markdown, markdown_table, resolve_device, runs_dir
from inrlib.book.plotting import clip_below_floor, figure_png, image_grid, plot_spectrum, show_figure
from inrlib.book.studies import staf as S
from inrlib.book.studies.bandwidth import layer_activations
from inrlib.book.widgets import explorer
from inrlib.data import load_image
from inrlib.models import CoordinateMLP
from inrlib.ntk import compare_at
from inrlib.research.claims import claim, verdict_counts
from inrlib.research.sweep import sweep

dev = resolve_device(device)
run = ChapterResults("staf_init", profile=profile, device=device, seed=seed, tau=tau, w0=w0, width=width, depth=depth,
                     draws=draws, image=image, side=side, ntk_width=ntk_width, ntk_depth=ntk_depth, epochs=epochs)
claims = []

# %% [markdown]
# ## One unit, many initializations
#
# $\sigma(z)$ at a fixed $z$ over `draws` independent initializations of one STAF unit, with each
# amplitude rule, against the predicted normal laws.

# %% tags=["hide-input"]
fixed = {}
for init, var in (("normal", 1.0), ("laplace", S.laplace_variance(tau))):
    for z in (0.0, 0.7, -2.5):
        v = S.post_activation_draws(init, tau, z, draws, seed)
        fixed[(init, z)] = {"values": v, "var": float(v.var()), "predicted": var,
                            **S.ks_against_normal(v / np.sqrt(var), seed=seed)}
fig = Figure(figsize=(9, 3.2), layout="constrained")
axes = fig.subplots(1, 2)
grid = np.linspace(-4, 4, 300)
for ax, init in zip(axes, ("normal", "laplace")):
    v = fixed[(init, 0.7)]["values"]
    var = fixed[(init, 0.7)]["predicted"]
    ax.hist(v, bins=120, range=(-4, 4), density=True, color="C0", alpha=0.6, label="sigma(z = 0.7)")
    ax.plot(grid, stats.norm(0, np.sqrt(var)).pdf(grid), "k", lw=1, label=f"N(0, {var:g})")
    ax.set_title(f"amplitudes: {'Rayleigh (inrlib)' if init == 'normal' else 'Laplace (public code)'}", fontsize=9)
    ax.legend(fontsize=7)
show_figure(fig)
display(Markdown(markdown_table([{"init": i, "z": z, **{k: r[k] for k in ("var", "predicted", "ks", "critical")}}
                                 for (i, z), r in fixed.items()],
                                {"amplitudes": "init", "z": "z", "sample variance": "var", "predicted": "predicted",
                                 "KS vs the predicted normal": "ks", "5 % critical value": "critical"},
                                {"z": "g", "sample variance": ".4f", "predicted": ".4f",
                                 "KS vs the predicted normal": ".4f", "5 % critical value": ".4f"})))

# %% [markdown]
# ## Layer by layer, on a photo's pixels
#
# Networks of `depth` hidden layers of `width`, at initialization, on the pixel coordinates of a
# photo: every hidden layer's post-activations (over its neurons and the pixels) against
# $\mathcal N(0, 1)$, as QQ plots and Kolmogorov-Smirnov statistics. STAF's exactness is over the
# initialization for each fixed input; across the neurons of one network (each its own draw,
# per-neuron parameters) the same law appears. SIREN's and the simple network's sines are bounded
# and follow the arcsine law instead: their KS distance to $\mathcal N(0, 1)$ does not shrink.

# %% tags=["hide-input"]
coords, _, _ = load_image(image, side, grayscale=True)
layer_nets = {"STAF": "STAF", "STAF (Laplace init)": "STAF (Laplace init)", "SIREN": "SIREN", "simple sine": "simple sine"}
layer_acts = {lab: layer_activations(CoordinateMLP.from_config(S.network_config(lab, width, depth, tau=tau, w0=w0),
                                                               dim=2, seed=seed).to(dev), coords.to(dev))
              for lab in layer_nets}
ks_rows = []
for lab, acts in layer_acts.items():
    row = {"network": lab}
    for l, a in enumerate(acts):
        row[f"L{l + 1}"] = S.ks_against_normal(a["post"], seed=seed)["ks"]
    ks_rows.append(row)
crit = S.ks_against_normal(layer_acts["STAF"][0]["post"], seed=seed)["critical"]
display(Markdown(markdown_table(ks_rows, {"network": "network", **{f"layer {l + 1}": f"L{l + 1}" for l in range(depth)}},
                                {f"layer {l + 1}": ".3f" for l in range(depth)})
                 + f"\n\nKS statistic against N(0, 1), 20,000 values per layer. Within one network the independent "
                   f"draws are its {width} neurons per layer (a neuron's values over the pixels are one function of its "
                   f"own parameters), so the 5 % critical value is 1.358 / sqrt({width}) = {1.358 / np.sqrt(width):.3f}, "
                   f"not the {crit:.4f} of 20,000 independent values."))
q = np.linspace(0.001, 0.999, 200)
theo = stats.norm.ppf(q)
fig = Figure(figsize=(10, 3.0), layout="constrained")
axes = fig.subplots(1, len(layer_acts), sharey=True)
for ax, (lab, acts) in zip(axes, layer_acts.items()):
    for l, a in enumerate(acts):
        ax.plot(theo, np.quantile(a["post"], q), lw=1, color=__import__("matplotlib").colormaps["viridis"](l / max(1, depth - 1)),
                label=f"layer {l + 1}")
    ax.plot(theo, theo, "k:", lw=0.8)
    ax.set_title(lab, fontsize=9)
    ax.set_xlabel("N(0, 1) quantile")
    ax.grid(True, alpha=0.3)
axes[0].set_ylabel("post-activation quantile")
axes[0].legend(fontsize=6)
show_figure(fig)
staf_ks = max(ks_rows[0][f"L{l + 1}"] for l in range(depth))
fixed_ok = all(r["ks"] < r["critical"] for (i, _), r in fixed.items() if i == "normal")
# within one network the independent draws are the neurons (a neuron's values over the pixels are one
# function of its own parameters), so the network test's effective sample size is the width
crit_net = 1.358 / np.sqrt(width)
claims.append(claim("002.init_standard_normal", staf_ks,
                    "holds" if fixed_ok and staf_ks < crit_net else "approximately" if fixed_ok else "fails",
                    f"one unit over {draws:,} initializations: KS against N(0, 1) below the 5 % critical value at every z "
                    f"tested: {fixed_ok}; in a {depth} x {width} STAF network on {side}x{side} pixels the largest KS over its "
                    f"layers is {staf_ks:.4f} (SIREN: {max(ks_rows[2][f'L{l + 1}'] for l in range(depth)):.3f}). The public "
                    f"code's Laplace amplitudes give N(0, 1/4) instead, as derived. Holds when the fixed-z tests pass and every "
                    f"network layer is below the critical value {crit_net:.3f} of its {width} independent neurons.",
                    unit="KS statistic"))


def explorer_picture(idx):
    lab, l = list(layer_acts)[idx[0]], idx[1]
    v = layer_acts[lab][l]["post"]
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.hist(v, bins=100, range=(-4, 4), density=True, color="C0", alpha=0.7)
    a.plot(grid, stats.norm.pdf(grid), "k", lw=1)
    a.set_title(f"{lab}, layer {l + 1}: KS {ks_rows[idx[0]][f'L{l + 1}']:.3f}", fontsize=8)
    b.plot(theo, np.quantile(v, q), "C0")
    b.plot(theo, theo, "k:")
    b.set_title("QQ against N(0, 1)", fontsize=8)
    return figure_png(fig, 72)


explorer([("network", list(layer_acts)), ("layer", [str(l + 1) for l in range(depth)])], explorer_picture,
         sliders=("layer",), caption=f"{depth} x {width}, tau = {tau}, w0 = {w0:g}; black: N(0, 1).")

# %% [markdown]
# ## A STAF network is a sine network of width $n\tau$
#
# The construction above, built from the parameters of STAF networks (per-neuron and layer-wise
# shared) and evaluated in float64 on the photo's pixels, against the networks themselves.

# %% tags=["hide-input"]
kron_rows = []
for shared in (False, True):
    m = CoordinateMLP.from_config(S.network_config("STAF", width, 3, tau=tau, w0=w0, shared=shared), dim=2,
                                  seed=seed).double()
    layers = S.sine_equivalent(m)
    with torch.no_grad():
        err = float((S.run_equivalent(layers, coords.double()) - m(coords.double())).abs().max())
        scale = float(m(coords.double()).abs().max())
    n_staf = sum(p.numel() for p in m.parameters())
    n_dense = sum(W.numel() + b.numel() for W, b in layers)
    kron_rows.append({"variant": "layer-wise shared" if shared else "per neuron", "staf_width": width,
                      "sine_width": layers[0][0].shape[0], "err": err, "rel": err / scale, "staf_params": n_staf,
                      "sine_params": n_dense})
display(Markdown(markdown_table(kron_rows, {
    "STAF parameters": "variant", "STAF width": "staf_width", "sine width": "sine_width",
    "max abs difference": "err", "relative": "rel", "STAF parameter count": "staf_params",
    "as a free sine network": "sine_params"}, {"max abs difference": ".1e", "relative": ".1e"})))
worst = max(r["rel"] for r in kron_rows)
claims.append(claim("002.kronecker_equivalence", worst, "holds" if worst < 1e-12 else "fails",
                    f"a 3 x {width} STAF network (tau = {tau}) equals the sine network of width {width * tau} built from its "
                    f"parameters to {worst:.1e} relative (float64), per-neuron and shared; as free parameters that sine "
                    f"network would have {kron_rows[1]['sine_params']:,} against STAF's {kron_rows[1]['staf_params']:,} "
                    "(shared). Holds below 1e-12.", unit="relative difference"))

# %% [markdown]
# ## NTK spectra and PSNR beside SIREN, the simple network and ReLU networks
#
# Each network (`ntk_depth` x `ntk_width`, STAF with $\tau$ sinusoids per neuron) on the photo's
# `side` x `side` grayscale pixels: the float64 NTK on all of them at initialization and after
# `epochs` epochs of Adam (full batch) at each network's customary rate
# (`inrlib.book.studies.staf.TRAIN_LR`), the PSNR then, and the parameter counts. One sweep task each
# (saved, resumed).

# %% tags=["hide-input"]
labels = ["STAF", "SIREN", "simple sine", "ReLU + FFE", "ReLU + MPE"]
tasks = [dict(label=lab, model=S.network_config(lab, ntk_width, ntk_depth, tau=tau).to_dict(), image=image, side=side,
              epochs=epochs, seed=seed, device=str(dev), name=lab.replace(" ", "_").replace("+", "")) for lab in labels]
records = sweep(S.train_and_kernels, tasks, runs_dir("staf_init", profile))
res = {r["result"]["label"]: r["result"] for r in records}
colors = {"STAF": "C2", "SIREN": "C0", "simple sine": "C1", "ReLU + FFE": "#08519c", "ReLU + MPE": "#006d2c"}
fig = Figure(figsize=(10, 3.8), layout="constrained")
ax_s, ax_c = fig.subplots(1, 2)
floors = []
for lab in labels:
    r = res[lab]
    plot_spectrum(ax_s, r["spectrum_init"], color=colors[lab], ls="--")
    if "spectrum_end" in r:
        plot_spectrum(ax_s, r["spectrum_end"], floor=r["floor_end"], color=colors[lab], label=lab)
        floors.append(r["floor_end"])
    ax_c.plot(range(1, len(r["curve"]) + 1), r["curve"], color=colors[lab], label=lab)
clip_below_floor(ax_s, floors)
ax_s.set_title(f"NTK spectra on {side * side} pixels: init (dashed), after {epochs} epochs (solid)", fontsize=9)
ax_s.set_xlabel("index $i$")
ax_s.legend(fontsize=7)
ax_c.set_title("training PSNR", fontsize=9)
ax_c.set_xlabel("epoch")
ax_c.legend(fontsize=7)
for a in (ax_s, ax_c):
    a.grid(True, alpha=0.3)
show_figure(fig)
_, truth, _ = load_image(image, side, grayscale=True)
fig = Figure(figsize=(10, 2.4), layout="constrained")
image_grid(fig, [[{"image": truth.reshape(side, side).numpy(), "title": "truth"}]
                 + [{"image": res[lab]["prediction"], "title": f"{lab}: {res[lab]['psnr']:.1f} dB"} for lab in labels]])
show_figure(fig)
display(Markdown(markdown_table([{**res[lab], "median_init": float(np.median(res[lab]["spectrum_init"])),
                                  "median_end": float(np.median(res[lab]["spectrum_end"])) if "spectrum_end" in res[lab] else float("nan")}
                                 for lab in labels], {
    "network": "label", "parameters": "params", "Adam lr": "lr", "PSNR (dB)": "psnr", "held-out PSNR": "psnr_heldout",
    "median eigenvalue, init": "median_init", "median eigenvalue, end": "median_end"},
    {"Adam lr": "g", "PSNR (dB)": ".1f", "held-out PSNR": ".1f", "median eigenvalue, init": ".3g",
     "median eigenvalue, end": ".3g"})))
c_init = compare_at(res["STAF"]["spectrum_init"], res["STAF"]["floor_init"], res["SIREN"]["spectrum_init"],
                    res["SIREN"]["floor_init"], 50)
c_end = (compare_at(res["STAF"]["spectrum_end"], res["STAF"]["floor_end"], res["SIREN"]["spectrum_end"],
                    res["SIREN"]["floor_end"], 50) if "spectrum_end" in res["STAF"] and "spectrum_end" in res["SIREN"] else None)
moved = abs(c_init["value"]) >= 0.5 if c_init["value"] == c_init["value"] else False
claims.append(claim("002.ntk_spectrum_changes", c_init["value"], "holds" if moved else "fails",
                    f"log10 of STAF's median NTK eigenvalue over SIREN's, same width and depth, same pixels: "
                    f"{c_init['value']:+.2f} at initialization" + (f", {c_end['value']:+.2f} after training" if c_end else "")
                    + ". Holds when the trainable parameterization moves the median by at least half an order.",
                    unit="orders of magnitude"))
gap = res["STAF"]["psnr"] - res["SIREN"]["psnr"]
claims.append(claim("002.psnr_vs_siren", gap, "holds" if gap >= -1.0 else "approximately" if gap >= -3.0 else "fails",
                    f"after {epochs} Adam epochs, {ntk_depth} x {ntk_width}: STAF {res['STAF']['psnr']:.1f} dB "
                    f"({res['STAF']['params']:,} parameters), SIREN {res['SIREN']['psnr']:.1f} dB ({res['SIREN']['params']:,}); "
                    f"held-out: {res['STAF']['psnr_heldout']:.1f} vs {res['SIREN']['psnr_heldout']:.1f} dB. Holds when STAF is "
                    "at most 1 dB below SIREN (competitive).", unit="dB"))

# %% [markdown]
# ## Findings

# %% tags=["hide-input"]
counts = verdict_counts(claims)
display(Markdown(claims_markdown(claims, f"{profile} profile.")))

# %% tags=["hide-input"]
path = run.save({"claims": claims, "verdict_counts": counts,
                 "fixed_z": [{"init": i, "z": z, **{k: r[k] for k in ("var", "predicted", "ks", "critical")}}
                             for (i, z), r in fixed.items()],
                 "ks_layers": ks_rows, "kronecker": kron_rows,
                 "comparison": [{k: v for k, v in res[lab].items() if k in ("label", "params", "lr", "psnr", "psnr_heldout",
                                                                            "diverged")} for lab in labels]}, device=dev)
print(f"results written to {path} ({run.elapsed_s:.0f} s)")
