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
# # Coordinate networks and their neural tangent kernels
#
# This book is the executable companion of `inrlib`, a small PyTorch library for coordinate
# networks (multilayer perceptrons that map a point $x \in \mathbb{R}^d$, $d \le 3$, to a value)
# and for their **empirical neural tangent kernel**,
#
# $$
# K(x_i, x_j) \;=\; \sum_{\theta} \left\langle \frac{\partial f(x_i)}{\partial \theta},
# \frac{\partial f(x_j)}{\partial \theta} \right\rangle ,
# $$
#
# summed over every trainable tensor of the network, grid values included. Every figure and every
# number in it is produced by the code on the page, run when the book is built; nothing is pasted
# in. Each chapter states the settings it ran with and writes its numbers, and its verdict on each claim of the
# papers it tests, to a results file; the closing <a href="reproduction.html">reproduction table</a> gathers them all beside
# the papers' own values.

# %% [markdown]
# ## What reproduces
#
# The verdicts of this build, counted over every claim the chapters test (the profile is named
# below; the <a href="reproduction.html">reproduction table</a> lists each claim with the paper's value, ours and
# the chapter that computed it):

# %% tags=["parameters", "remove-cell"]
profile = "quick"      # the profile whose results the counts read: smoke, quick or paper
device = "auto"        # unused
seed = 0               # unused
strict = False         # True: stop on missing, partial or stale results (the reproduction page does; here: say so)

# %% tags=["remove-cell"]
from inrlib.book.params import COMMON, Param, resolve

schema = {**COMMON, "strict": Param(bool)}
globals().update(resolve(schema, profile, globals()))

# %% tags=["remove-input"]

from IPython.display import Markdown, display

from inrlib.book import markdown_table
from inrlib.book.studies import reproduction as R
from inrlib.research.claims import VERDICTS

book_dir = R.sources_dir()
gathered = R.gather(R.toc_chapters(R.book_toc()), profile, sources=book_dir)
if strict:
    R.require_complete(gathered)
counts = R.counts_by_paper(gathered["rows"])
note = "" if not (gathered["problems"] or gathered["missing"]) else (
    f" **Incomplete:** {len(gathered['problems'])} problems, {len(gathered['missing'])} claims not recorded "
    "(the reproduction page lists them).")
display(Markdown(f"*{profile} profile, {len(gathered['rows'])} claims from {len(gathered['chapters'])} chapters.*{note}\n\n"
                 + markdown_table([{"paper": p if p != "all" else "**all**", **counts[p]} for p in counts],
                                  {"paper": "paper", **{v: v for v in VERDICTS}})))

# %% [markdown]
# ## The three papers
#
# - **Multigrid parametric encodings versus Fourier features** {cite:p}`audia2025mpe`. A
#   learnable grid in front of an MLP (MPE, as in {cite:t}`hadadan2021radiosity` and
#   {cite:t}`mueller2022instant`) recovers fine detail that the plain MLP and the Fourier feature
#   encoding (FFE, {cite:t}`tancik2020fourier`) miss. The paper explains it with a lower bound on
#   the smallest eigenvalue of the NTK {cite:p}`jacot2018ntk`, which comes from the grid's
#   structure, not from its learnable embedding, and checks it on 2D images from ImageNet and 3D
#   occupancy of the Stanford scans.
# - **Simple sinusoidal networks** {cite:p}`belbuteperes2023sinusoidal`. A simplified sine network,
#   close to SIREN {cite:p}`sitzmann2020siren`, whose NTK behaves like a low-pass filter with an
#   adjustable bandwidth; the bandwidth then tells how to initialize the network for a task.
# - **Trainable sinusoidal activations (STAF)** {cite:p}`morsali2025staf`. Activations with learned
#   amplitudes, frequencies and phases; how they change the NTK spectrum, and an initialization that
#   gives standard normal post-activations.
#
# The chapters follow these papers: the kernel and its spectrum, the eigenvalue bound, how the
# spectrum scales with the encoding, image and occupancy regression, the sine networks' bandwidth,
# STAF's initialization, and the reproduction table.
#
# ## Running it yourself
#
# Each chapter is a plain Python file, `book/<chapter>.py`, in jupytext's `py:percent` format:
# `make lab` opens the chapters as notebooks in JupyterLab (with live, kernel-backed explorers), or
# run one as a script.
# Its first code cell holds the parameters:
#
# - `profile`: `"smoke"` (seconds; what the tests run), `"quick"` (the default: minutes on two CPU
#   cores; what this book shows) or `"paper"` (the papers' sizes; meant for a GPU);
# - `device`: `"auto"` (a GPU when there is one), `"cpu"`, `"cuda"`;
# - `seed`, and the chapter's own settings.
#
# From the repository root:
#
# ```bash
# make book      # execute every chapter (quick profile), build _build/html/
# make test      # the tests, with a smoke build of the book checked in a browser
# make chapter CHAPTER=theory PARAMS="-p profile paper -p device cuda"
# make lab       # JupyterLab on 127.0.0.1: the chapters as live notebooks
# ```
#
# `make book` re-executes only the chapters whose source, or the library under `inrlib/`, changed
# since their last run. `make chapter` re-executes one chapter with the parameters you give
# (papermill's `-p NAME VALUE`) and rebuilds the pages with it; the next `make book` shows the
# quick profile again. The executed notebooks land in `_build/executed/<profile>/`, the numbers in
# `_build/results/<profile>/<chapter>.json` (with the parameters, the versions, the device and the
# wall time), the pages in `_build/html/`. The pages work offline: their JavaScript (MathJax, and
# the widget manager that brings the interactive figures back from their saved state) is served
# from the book itself.
#
# ## References
#
# ```{bibliography}
# ```
