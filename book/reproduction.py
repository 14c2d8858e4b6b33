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
# # Reproduction: every claim, the papers' values beside ours
#
# **Question.** Which claims of the three papers does this book reproduce, which does it not, and why?
#
# Every chapter tests some of the papers' claims and records each as data in its results file: the
# claim's id, the paper's value (a number, or the paper's sentence for a qualitative claim, both kept
# in one place, `inrlib.research.claims.PAPER_VALUES`, with their table, figure or section), our value, a
# verdict and a note that says how it was judged. This page types in nothing: it reads the results
# files of one profile, checks them, and sets them side by side. A verdict is one of
#
# - **holds**: our number or ordering agrees with the paper's within the chapter's stated tolerance;
# - **approximately**: it agrees within a looser tolerance, or in most but not all cases;
# - **differs**: a number is off beyond that, though the direction may agree;
# - **fails**: the ordering or statement does not hold here;
# - **not tested**: the chapter could not judge it at this profile (the note says why).
#
# Results of two profiles are never mixed: a results file of another profile, a chapter of the
# table of contents that recorded no claims, a claim without one of its fields, a results file
# older than its chapter's source, and a paper value no chapter recorded all stop the build (with
# `strict = True`, the default) or are listed at the top of the page (`strict = False`).

# %% tags=["parameters"]
profile = "quick"      # the profile whose results are gathered: smoke, quick or paper
device = "auto"        # unused (this page computes nothing on a device)
seed = 0               # unused
strict = True          # stop on a missing, partial or stale results file (False: list the problems)

# %% tags=["hide-input"]
# Each parameter's type, checked before anything runs.
from inrlib.book.params import COMMON, Param, resolve

schema = {**COMMON, "strict": Param(bool)}
globals().update(resolve(schema, profile, globals()))

# %% tags=["hide-input"]

from IPython.display import HTML, Markdown, display
from matplotlib.figure import Figure

from inrlib.book import ChapterResults, markdown_table
from inrlib.book.plotting import plot_verdict_counts, show_figure
from inrlib.book.studies import reproduction as R
from inrlib.research.claims import PAPER_VALUES, VERDICTS

book_dir = R.sources_dir()
run = ChapterResults("reproduction", profile=profile, device=device, seed=seed, strict=strict)
chapters = R.toc_chapters(R.book_toc())
gathered = R.gather(chapters, profile, sources=book_dir)
if strict:
    R.require_complete(gathered)
rows = gathered["rows"]
titles = {c: R.chapter_title(c, book_dir).split(":")[0] for c in chapters}   # short: "Scaling"
counts = R.counts_by_paper(rows)
if gathered["problems"] or gathered["missing"]:
    display(Markdown("```{warning}\nThis table is **incomplete** (built with `strict = False`):\n\n"
                     + "\n".join(f"- {p}" for p in gathered["problems"])
                     + (f"\n- paper values no chapter recorded: {', '.join(gathered['missing'])}"
                        if gathered["missing"] else "") + "\n```"))
display(Markdown(f"This page shows the **{profile}** profile: {len(rows)} claims from {len(chapters)} chapters."))

# %% [markdown]
# ## Where the numbers come from
#
# One results file per chapter, each written when the chapter ran, with the parameters it ran with.
# The data column names the photos or meshes (a chapter without one generates its inputs).

# %% tags=["hide-input"]
display(Markdown(markdown_table(gathered["chapters"], {
    "chapter": lambda c: titles[c["chapter"]],
    "profile": lambda c: c.get("profile") or "-",
    "data": lambda c: c.get("data", "-"),
    "device": lambda c: c.get("device") or "-",
    "ran at (UTC)": lambda c: (c.get("timestamp") or "-").replace("T", " ").split("+")[0],
    "wall time (s)": lambda c: "-" if c.get("wall_time_s") is None else f"{c['wall_time_s']:.0f}",
    "claims": "n_claims"})))

# %% [markdown]
# ## The verdicts
#
# Counts of each verdict per paper; the tables below give every claim.

# %% tags=["hide-input"]
display(Markdown(markdown_table(
    [{"paper": f"{p}: {R.PAPERS.get(p, p)}" if p != "all" else "**all**", **counts[p],
      "claims": sum(counts[p].values())} for p in counts],
    {"paper": "paper", **{v: v for v in VERDICTS}, "claims": "claims"})))
fig = Figure(figsize=(8.5, 2.4), layout="constrained")
plot_verdict_counts(fig.subplots(), counts)
show_figure(fig)

# %% [markdown]
# ## Every claim, by paper
#
# For each claim: its id, what it says and where in the paper; the paper's value (its sentence for a
# qualitative claim); ours; the verdict with the chapter's note on how it was judged; and the chapter
# it came from (the link goes to that chapter's findings, where the claim is computed and discussed).

# %% tags=["hide-input"]
for p in R.PAPERS:
    mine = [r for r in rows if r["paper"] == p]
    if not mine:
        continue
    display(Markdown(f"### Paper {p}: {R.PAPERS[p]}\n\n"
                     + ", ".join(f"{counts[p][v]} {v}" for v in VERDICTS if counts[p][v]) + "."))
    display(HTML(R.claims_html(mine, titles)))

# %% [markdown]
# ## Claims no chapter recorded

# %% tags=["hide-input"]
if gathered["missing"]:
    display(Markdown(markdown_table([{"id": f"`{m}`", **PAPER_VALUES[m]} for m in gathered["missing"]],
                                    {"claim": "id", "statement": "statement", "source": "source"})))
else:
    display(Markdown(f"None: every one of the {len(PAPER_VALUES)} "
                     "paper values in `inrlib.research.claims.PAPER_VALUES` is covered by a recorded claim."))

# %% [markdown]
# ## Reading the table
#
# What the verdicts say, in groups (the lists are computed from the table above; the reasons are
# the chapters' notes, shortened).

# %% tags=["hide-input"]
def ids(selection, verdicts):
    return ", ".join(f"`{r['id']}`" for r in selection if r["verdict"] in verdicts) or "none"


exact = [r for r in rows if r["unit"] == "relative error" or r["id"] in ("001.lemma1", "002.kronecker_equivalence")]
numbers = [r for r in rows if r["paper"] == "000" and isinstance(r["paper_value"], (int, float)) and r not in exact]
qualitative = [r for r in rows if isinstance(r["paper_value"], str) and r not in exact]


def share(selection):
    return sum(r["verdict"] in ("holds", "approximately") for r in selection)


display(Markdown(f"""
- **Identities and constructions** (Eq. 2, 9, 11, 13 and 14 of paper 000, Lemma 1 of paper 001, the Kronecker
  construction of paper 002; checked to float64 rounding): {sum(r['verdict'] == 'holds' for r in exact)} of
  {len(exact)} hold. They do not depend on the profile.
- **Paper 000's numbers** (PSNR, MS-SSIM, orders of magnitude, epochs): {share(numbers)} of {len(numbers)} hold or
  hold approximately; differ or fail: {ids(numbers, ('differs', 'fails'))}. Absolute PSNR and MS-SSIM depend on
  the image and its size (paper 000 does not give its scaling image), on the learning rate (Table 2's is
  ambiguous, see ImageNet) and on training length; the {profile} profile trains smaller images for fewer
  epochs than the paper, so the orderings, not the values, are what should carry over.
- **Qualitative claims** (orderings of spectra, trends, the theorem, the papers' sentences): {share(qualitative)}
  of {len(qualitative)} hold or hold approximately; differ or fail: {ids(qualitative, ('differs', 'fails'))}.
- **Not tested at this profile**: {ids(rows, ('not tested',))}; each note says why.
"""))

# %%
path = run.save({"counts": counts, "n_claims": len(rows), "chapters": [
    {k: c.get(k) for k in ("chapter", "profile", "data", "timestamp", "n_claims")} for c in gathered["chapters"]],
    "missing": gathered["missing"], "problems": gathered["problems"],
    "verdicts": {r["id"]: r["verdict"] for r in rows}})
print(f"results written to {path}")
