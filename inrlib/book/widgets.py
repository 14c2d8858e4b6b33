"""Interactive explorers for the book's chapters (ipywidgets), and the plots they draw.

Everything an explorer shows is computed by plain functions (the Theory chapter's
:func:`inrlib.book.studies.theory.explorer_state`,
:func:`explorer_figure`, and :func:`inrlib.book.plotting.draw_explorer` for the drawing) that tests
and static pages can call without a widget. The widget (:func:`ntk_explorer`) only wires controls to them and shows the picture as
a PNG inside an ``ipywidgets.HTML``: its first picture is drawn when the widget is built, so a notebook executed
by papermill/nbclient stores it in the saved widget state and the static HTML page shows it
(with the controls, which need a live kernel to move).

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no pyplot state) and shown as
PNG images (:func:`inrlib.book.plotting.show_figure`, also importable from here), which works whatever
the matplotlib backend is.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .plotting import draw_explorer, figure_png, show_figure
from .studies.theory import ENCODINGS, TERMS, explorer_state

__all__ = [
    "draw_explorer",
    "explorer_figure",
    "figure_png",
    "show_figure",
    "ntk_explorer",
    "png_html",
    "static_explorer",
    "live_explorer",
    "explorer",
    "choice_stack",
    "theory_static_explorer",
    "STATIC_CLASS",
]

#: CSS class of every static explorer's root box (the page tests look for it).
STATIC_CLASS = "inrlib-static-explorer"
#: CSS class of every kernel-backed explorer's root box (the JupyterLab test looks for it).
LIVE_CLASS = "inrlib-live-explorer"

#: Slider ranges (inclusive).
RESOLUTION_RANGE = (2, 128)
LEVELS_RANGE = (1, 6)
FOURIER_RANGE = (1, 12)


def explorer_figure(settings: Sequence[Mapping[str, Any]], *, shared_ylim: bool = True, **common: Any):
    """A static grid: one row per setting (keyword arguments of :func:`explorer_state`, ``common``
    filled in), kernel left and spectrum right, spectra on one shared log scale. Returns
    ``(figure, states)``."""
    from matplotlib.figure import Figure
    states = [explorer_state(**{**common, **dict(s)}) for s in settings]
    ylim = None
    if shared_ylim:
        vals = np.concatenate([s["eigenvalues"][s["eigenvalues"] > 0] for s in states if not s["zero"]] or [[1.0]])
        floors = [s["floor"] for s in states if s["floor"] > 0] or [1e-16]
        lo = min(vals.min(), min(floors)) / 10
        ylim = (10 ** np.floor(np.log10(lo)), 10 ** np.ceil(np.log10(vals.max() * 3)))
    fig = Figure(figsize=(9.5, 2.9 * len(states)), layout="constrained")
    axes = fig.subplots(len(states), 2, gridspec_kw={"width_ratios": [1, 1.35]}, squeeze=False)
    for row, state in zip(axes, states):
        draw_explorer(state, row, ylim=ylim)
    return fig, states


def ntk_explorer(*, n_points: int = 128, width: int = 128, depth: int = 2, seed: int = 0, features: int = 2,
                 encoding: str = "multigrid", resolution: int = 16, levels: int = 2, fourier_levels: int = 4,
                 term: str = "total", dpi: int = 90):
    """An ipywidgets explorer of a 1D problem's NTK: encoding, finest grid resolution, number of grid
    levels, Fourier level ``L`` and kernel term; shows the kernel matrix and its spectrum with the
    rounding floor.

    The picture is a PNG in a data URI inside an ``ipywidgets.HTML``, replaced when a control moves;
    the first one is drawn at construction, so it is part of the saved widget state and a static
    HTML page shows it. Two choices are deliberate: no ``Output`` widget (executing one under
    nbclient/papermill makes the client send comm messages on the shell channel while it waits on
    that channel, which hung a chapter run here), and no ``ipywidgets.Image`` (the static page
    shows it through a ``blob:`` URL that offline page checks cannot follow).

    Returns the widget box; ``box.state`` is the last :func:`explorer_state` drawn, ``box.png``
    its PNG bytes, ``box.controls`` the controls by name (``encoding``, ``term``, ``resolution``,
    ``levels``, ``fourier_levels``), ``box.image`` the HTML widget holding the picture and
    ``box.message`` a line of text (errors are shown there, not raised, so a bad setting does not
    break the widget).
    """
    import ipywidgets as W

    style = {"description_width": "initial"}
    controls = {
        "encoding": W.Dropdown(options=list(ENCODINGS.items()), value=encoding, description="encoding",
                               style=style),
        "term": W.Dropdown(options=list(TERMS.items()), value=term, description="kernel", style=style),
        "resolution": W.IntSlider(value=resolution, min=RESOLUTION_RANGE[0], max=RESOLUTION_RANGE[1],
                                  description="finest grid (nodes)", continuous_update=False, style=style),
        "levels": W.IntSlider(value=levels, min=LEVELS_RANGE[0], max=LEVELS_RANGE[1], description="grid levels",
                              continuous_update=False, style=style),
        "fourier_levels": W.IntSlider(value=fourier_levels, min=FOURIER_RANGE[0], max=FOURIER_RANGE[1],
                                      description="Fourier L", continuous_update=False, style=style),
    }
    image = W.HTML(layout=W.Layout(width="100%"))
    message = W.HTML()
    box = W.VBox()

    def render(change=None):
        values = {name: c.value for name, c in controls.items()}
        try:
            state = explorer_state(values["encoding"], values["resolution"], values["levels"],
                                   values["fourier_levels"], values["term"], features=features, n_points=n_points,
                                   width=width, depth=depth, seed=seed)
        except Exception as err:  # noqa: BLE001 - shown in the widget, which stays usable
            message.value = f"<span style='color:#b00'>cannot compute this setting: {err}</span>"
            return
        box.state = state
        box.png = figure_png(draw_explorer(state), dpi)
        image.value = ('<img style="max-width: 100%; height: auto" alt="NTK explorer: kernel and spectrum" '
                       f'src="data:image/png;base64,{base64.b64encode(box.png).decode("ascii")}"/>')
        floor = "" if state["zero"] else f" ({state['floor']:.1e})"
        message.value = (f"<small>{state['label']}: lambda_max = {state['eigenvalues'][0]:.3g}, "
                         f"{state['n_below_floor']} of {n_points} eigenvalues at or below the rounding floor"
                         f"{floor}.</small>")

    for c in controls.values():
        c.observe(render, names="value")
    box.children = [
        W.HBox([controls["encoding"], controls["term"]]),
        W.HBox([controls["resolution"], controls["levels"], controls["fourier_levels"]]),
        W.HTML(f"<small>{n_points} evenly spaced points on [0, 1]; ReLU MLP {depth} x {width}, NTK "
               f"parameterization, seed {seed}. 'finest grid' and 'grid levels' act on the MPE (each level has "
               "about half the nodes of the next), 'Fourier L' on the FFE. Moving a control needs a live "
               "kernel; a static page shows the first setting.</small>"),
        image,
        message,
    ]
    box.controls, box.image, box.message = controls, image, message
    box.add_class(LIVE_CLASS)
    render()
    return box


# ----------------------------------------------------------------------------------------------
# explorers that work on the static page
# ----------------------------------------------------------------------------------------------

def png_html(png: bytes, alt: str = "explorer picture") -> str:
    """An ``<img>`` tag holding ``png`` as a data URI (what a static page can show without a kernel)."""
    return (f'<img style="max-width: 100%; height: auto" alt="{alt}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/>')


def static_explorer(axes: Sequence[tuple[str, Sequence[str]]], picture, *, caption: str = "",
                    sliders: Sequence[str] = ()):
    """A precomputed explorer whose controls work on a static HTML page.

    Args:
        axes: ``[(control name, [option labels]), ...]``; one control per axis.
        picture: ``picture(indices) -> PNG bytes`` (or an HTML string) for one choice of option
            index per axis; called once for every combination (``prod(len(options))`` pictures).
        caption: a line of HTML under the controls.
        sliders: names of the axes shown as a ``SelectionSlider`` (the others get a ``Dropdown``).

    The pictures sit in nested ``Stack`` widgets (one level per axis); each control's ``index`` is
    ``jslink``-ed to the ``selected_index`` of every stack of its level, so the browser switches
    pictures with no kernel. Returns the root ``VBox`` (CSS class :data:`STATIC_CLASS`) with
    ``.controls`` (by name), ``.links`` and ``.pictures`` (``{indices: HTML widget}``).
    """
    import itertools

    import ipywidgets as W

    axes, controls = _axis_controls(axes, sliders, continuous=True)   # switching a picture is free
    levels: list[list] = [[] for _ in axes]
    pictures: dict[tuple[int, ...], Any] = {}

    def build(depth: int, prefix: tuple[int, ...]):
        if depth == len(axes):
            pic = picture(prefix)
            html = pic if isinstance(pic, str) else png_html(pic, alt=" / ".join(
                f"{n}: {o[i]}" for (n, o), i in zip(axes, prefix)))
            widget = W.HTML(html, layout=W.Layout(width="100%"))
            widget.add_class("inrlib-explorer-picture")
            pictures[prefix] = widget
            return widget
        stack = W.Stack([build(depth + 1, prefix + (i,)) for i in range(len(axes[depth][1]))], selected_index=0)
        levels[depth].append(stack)
        return stack

    root_stack = build(0, ())
    links = [W.jslink((controls[name], "index"), (stack, "selected_index"))
             for (name, _), stacks in zip(axes, levels) for stack in stacks]
    n_states = int(np.prod([len(o) for _, o in axes]))
    assert len(pictures) == n_states and all(p in pictures for p in itertools.product(*[range(len(o)) for _, o in axes]))
    children = [W.HBox(list(controls.values()))]
    if caption:
        children.append(W.HTML(f"<small>{caption}</small>"))
    children.append(root_stack)
    box = W.VBox(children)
    box.add_class(STATIC_CLASS)
    box.controls, box.links, box.pictures = controls, links, pictures
    return box


def _axis_controls(axes: Sequence[tuple[str, Sequence[str]]], sliders: Sequence[str], continuous: bool):
    """One control per axis (``index`` = the chosen option): a ``SelectionSlider`` for the axes named
    in ``sliders`` (updating while dragged when ``continuous``), a ``Dropdown`` for the others.
    Returns ``(axes, {name: control})``."""
    import ipywidgets as W

    axes = [(str(name), [str(o) for o in options]) for name, options in axes]
    if not axes or any(not options for _, options in axes):
        raise ValueError("an explorer needs at least one axis, each with at least one option")
    if len({name for name, _ in axes}) != len(axes):
        raise ValueError(f"explorer axes need distinct names, got {[n for n, _ in axes]}")
    unknown = set(sliders) - {name for name, _ in axes}
    if unknown:
        raise ValueError(f"sliders {sorted(unknown)} are not axes; axes: {[n for n, _ in axes]}")
    style = {"description_width": "initial"}
    controls = {}
    for name, options in axes:
        if name in sliders:
            controls[name] = W.SelectionSlider(options=options, value=options[0], description=name, style=style,
                                               continuous_update=continuous, layout=W.Layout(width="420px"))
        else:
            controls[name] = W.Dropdown(options=list(zip(options, range(len(options)))), value=0, description=name,
                                        style=style)
    return axes, controls


def live_explorer(axes: Sequence[tuple[str, Sequence[str]]], picture, *, caption: str = "",
                  sliders: Sequence[str] = ()):
    """The kernel-backed twin of :func:`static_explorer`: the same controls, but each picture is
    computed by ``picture(indices)`` when a control moves (and cached), not all up front.

    Building it costs one picture instead of ``prod(len(options))``; moving a control needs a live
    kernel (JupyterLab). Errors from ``picture`` are shown in the widget's message line, not raised.
    Returns the root ``VBox`` (CSS class :data:`LIVE_CLASS`) with ``.controls`` (by name),
    ``.image`` (the HTML widget holding the picture), ``.message``, ``.indices`` (the setting
    shown) and ``.pictures`` (``{indices: HTML}`` computed so far).
    """
    import ipywidgets as W

    axes, controls = _axis_controls(axes, sliders, continuous=False)  # draw once the control settles
    image = W.HTML(layout=W.Layout(width="100%"))
    image.add_class("inrlib-explorer-picture")
    message = W.HTML()
    box = W.VBox()
    box.pictures = {}

    def render(change=None):
        indices = tuple(int(c.index) for c in controls.values())
        try:
            if indices not in box.pictures:
                pic = picture(indices)
                box.pictures[indices] = pic if isinstance(pic, str) else png_html(pic, alt=" / ".join(
                    f"{n}: {o[i]}" for (n, o), i in zip(axes, indices)))
        except Exception as err:  # noqa: BLE001 - shown in the widget, which stays usable
            message.value = f"<span style='color:#b00'>cannot draw this setting: {err}</span>"
            return
        message.value = ""
        box.indices = indices
        image.value = box.pictures[indices]

    for c in controls.values():
        c.observe(render, names="index")
    children = [W.HBox(list(controls.values()))]
    if caption:
        children.append(W.HTML(f"<small>{caption}</small>"))
    box.children = children + [image, message]
    box.add_class(LIVE_CLASS)
    box.controls, box.image, box.message = controls, image, message
    render()
    return box


def explorer(axes: Sequence[tuple[str, Sequence[str]]], picture, *, caption: str = "", sliders: Sequence[str] = (),
             live: bool | None = None):
    """A chapter's explorer: :func:`static_explorer` (every picture precomputed, the controls work on a
    static HTML page) when the chapter is built into the book, :func:`live_explorer` (pictures on
    demand from the kernel) in a live notebook. ``live=None`` decides by
    :func:`inrlib.book.static_page`; the arguments are those of :func:`static_explorer`."""
    if live is None:
        from .runtime import static_page
        live = not static_page()
    make = live_explorer if live else static_explorer
    return make(axes, picture, caption=caption, sliders=sliders)


def choice_stack(description: str, options: Mapping[str, Any]):
    """A dropdown over ``{label: widget}`` that shows one widget at a time, switched in the browser
    (``jslink`` to a ``Stack``), e.g. one :func:`static_explorer` per encoding, each with its own controls."""
    import ipywidgets as W

    labels = list(options)
    dropdown = W.Dropdown(options=list(zip(labels, range(len(labels)))), value=0, description=description,
                          style={"description_width": "initial"})
    stack = W.Stack(list(options.values()), selected_index=0)
    link = W.jslink((dropdown, "index"), (stack, "selected_index"))
    box = W.VBox([dropdown, stack])
    box.add_class(STATIC_CLASS)
    box.controls, box.links = {description: dropdown}, [link]
    return box


#: The static Theory explorer's grid of settings.
STATIC_FOURIER_LEVELS = (2, 4, 6, 8, 10)
STATIC_RESOLUTIONS = (8, 16, 32, 64, 128)
STATIC_LEVELS = (1, 2, 3)


def theory_static_explorer(*, n_points: int = 128, width: int = 128, depth: int = 2, seed: int = 0, features: int = 2,
                           dpi: int = 72):
    """The Theory chapter's 1D NTK explorer for a static page: an encoding dropdown, then that
    encoding's own controls (Fourier ``L``; finest grid and number of levels), and the kernel term,
    over the grid :data:`STATIC_FOURIER_LEVELS` x :data:`STATIC_RESOLUTIONS` x :data:`STATIC_LEVELS`.
    Every picture is :func:`draw_explorer` of :func:`explorer_state`, as in :func:`ntk_explorer`."""
    terms = list(TERMS.items())
    common = dict(features=features, n_points=n_points, width=width, depth=depth, seed=seed)

    def draw(**kw):
        return figure_png(draw_explorer(explorer_state(**kw, **common)), dpi)

    term_axis = ("kernel", [label for label, _ in terms])
    caption = (f"{n_points} evenly spaced points on [0, 1]; ReLU MLP {depth} x {width}, NTK parameterization, seed "
               f"{seed}. Precomputed settings: the controls work on this page without a kernel.")
    per_encoding = {
        "none (baseline MLP)": static_explorer(
            [term_axis], lambda i: draw(encoding="none", term=terms[i[0]][1]), caption=caption),
        "Fourier features (FFE)": static_explorer(
            [("Fourier L", [str(v) for v in STATIC_FOURIER_LEVELS]), term_axis],
            lambda i: draw(encoding="fourier", fourier_levels=STATIC_FOURIER_LEVELS[i[0]], term=terms[i[1]][1]),
            caption=caption, sliders=("Fourier L",)),
        "multigrid (MPE)": static_explorer(
            [("finest grid (nodes)", [str(v) for v in STATIC_RESOLUTIONS]),
             ("grid levels", [str(v) for v in STATIC_LEVELS]), term_axis],
            lambda i: draw(encoding="multigrid", resolution=STATIC_RESOLUTIONS[i[0]], levels=STATIC_LEVELS[i[1]],
                           term=terms[i[2]][1]),
            caption=caption, sliders=("finest grid (nodes)", "grid levels")),
    }
    return choice_stack("encoding", per_encoding)
