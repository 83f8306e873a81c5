"""Figure style: one (colour, marker, line style) per method, pyplot-free figures, and text that
stays readable when a figure is shown at page width.

A figure ``W`` inches wide is shown at most :data:`PAGE_WIDTH_IN` wide (an A4/Letter page less its
margins; the report's HTML column is wider), so a font of ``s`` points reads as
``s * min(1, PAGE_WIDTH_IN / W)`` points on the page. :func:`readable` raises every text of a
figure to :data:`MIN_PT` at page width; :func:`smallest_text_pt` measures what a reader sees.
"""
from __future__ import annotations

import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.text import Text

__all__ = ["PAGE_WIDTH_IN", "MIN_PT", "method_style", "subplots", "readable", "smallest_text_pt",
           "legend_below", "texts_outside"]

PAGE_WIDTH_IN = 7.5  # inches a figure is shown at, at most (page width less margins)
MIN_PT = 9.0  # the smallest font (points) a reader should meet at that width
_COLORS = sns.color_palette("colorblind", 10)
_MARKERS = "osD^v<>ph*"
_LINES = ("-", "--", ":", "-.")


def method_style(method: str) -> dict:
    """Colour, line style and marker of a method, the same in every figure. Registered names
    (``fewshot.protocol.method.list_record_names()``) get pairwise distinct (colour, marker) pairs: the
    i-th takes colour i mod 10 and marker (i + 3·(i div 10)) mod 10, so names sharing a colour
    differ in marker (and line style); unregistered names follow, alphabetically."""
    from fewshot.methods import list_record_names

    known = list_record_names()
    names = known + sorted({method} - set(known))
    i = names.index(method)
    return {"color": _COLORS[i % 10], "ls": _LINES[(i // 10) % 4],
            "marker": _MARKERS[(i + 3 * (i // 10)) % 10]}


def subplots(nrows=1, ncols=1, figsize=None, squeeze=True, layout=None):
    """A pyplot-free ``Figure`` and its axes (``layout="constrained"`` places outside legends)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _scale(fig) -> float:
    """How much smaller the figure is drawn at page width than its own size (<= 1)."""
    return min(1.0, PAGE_WIDTH_IN / fig.get_figwidth())


def _texts(fig):
    fig.draw_without_rendering()  # tick labels exist only once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def texts_outside(fig, slack_px: float = 2.0) -> list[str]:
    """The visible texts of ``fig`` (titles, labels, legends, annotations; tick labels aside) that
    reach past its edges, so the saved image cuts them off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
    out = []
    for t in (t for t in _texts(fig) if id(t) not in ticks):  # the layout places drawn ticks
        box = t.get_window_extent(renderer)
        if box.x0 < -slack_px or box.y0 < -slack_px or box.x1 > w + slack_px or box.y1 > h + slack_px:
            out.append(t.get_text())
    return out


def readable(fig, min_pt: float = MIN_PT):
    """Raise every text of ``fig`` (titles, labels, ticks, legends, annotations) to at least
    ``min_pt`` points at page width, then lay it out again; returns ``fig``."""
    target = min_pt / _scale(fig) + 1e-9
    for ax in fig.axes:
        ax.tick_params(labelsize=max(target, _tick_size(ax)))
    for t in _texts(fig):
        if t.get_fontsize() < target:
            t.set_fontsize(target)
    if not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.tight_layout()
    return fig


def _tick_size(ax) -> float:
    labels = ax.get_xticklabels() + ax.get_yticklabels()
    return max((t.get_fontsize() for t in labels), default=0.0)


def smallest_text_pt(fig) -> float:
    """The smallest font (points) of any visible text of ``fig`` when shown at page width."""
    return min(t.get_fontsize() for t in _texts(fig)) * _scale(fig)


def legend_below(fig, axes, ncol: int | None = None):
    """One legend for all ``axes`` (their labelled artists, each label once), outside the data,
    under the panels; ``fig`` must use the constrained layout."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if not labels:
        return None
    ncol = ncol or min(len(labels), max(1, int(fig.get_figwidth() // 1.9)))
    return fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center", ncol=ncol,
                      frameon=False)
