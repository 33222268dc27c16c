"""Figures that read in the site's light and dark themes, and on paper.

Pages print figures as inline SVG. Text, axes and ticks are drawn in a sentinel colour that
`to_svg` rewrites to ``currentColor``, so the figure takes the page's text colour in
either theme; the background is transparent. Data colours come from `PALETTE`, chosen
to keep their contrast on white and on Material's dark slate.

For files (the command line), `save` writes PNG, SVG or PDF on white: the sentinel ink is
near-black (``#010203``), so it reads as black there.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["PALETTE", "figure", "save", "show", "to_svg"]

_INK = "#010203"  # sentinel "foreground" colour, replaced by currentColor in SVG output
PALETTE = ["#3b82f6", "#f97316", "#10b981", "#ef4444", "#a855f7", "#eab308", "#06b6d4", "#ec4899"]

_STYLE = {
    "text.color": _INK,
    "axes.edgecolor": _INK,
    "axes.labelcolor": _INK,
    "xtick.color": _INK,
    "ytick.color": _INK,
    "grid.color": _INK,
    "grid.alpha": 0.15,
    "axes.grid": True,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.facecolor": "none",
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "font.size": 10,
    "svg.fonttype": "none",  # real <text>, so it takes the page's font and colour
    "svg.hashsalt": "deep-learning",  # stable ids: same figure, same bytes
    "lines.linewidth": 1.8,
    "figure.max_open_warning": 0,  # experiments run back to back in one test process
}


# Applied on import so that everything drawn after `figure()` (legends, annotations, colour
# bars) is in the house style too, not only what exists when the axes are created.
plt.rcParams.update(_STYLE)


@contextmanager
def _style() -> Iterator[None]:
    with plt.rc_context(_STYLE):
        yield


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.4, height: float = 3.2, **kwargs):
    """``plt.subplots`` in the house style. Returns ``(fig, axes)``."""
    with _style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)
    return fig, axes


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element whose ink follows the page's text colour."""
    buffer = io.StringIO()
    with _style():
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: this goes inside HTML
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    return svg.replace(_INK, "currentColor").replace(
        "<svg ", '<svg class="figure" role="img" style="max-width:100%;height:auto" ', 1
    )


def show(fig: Figure, alt: str = "", *, name: str = "figure") -> None:
    """Show a page's figure: inline SVG in a site build, a PNG file anywhere else.

    In a site build (``IMPL_SITE_BUILD=1``, set by the site's hook) the SVG is printed for a
    block with ``html="on"``, with ``alt`` as its accessible label. When a reader pastes the
    page's code into a Python prompt, the figure is saved as ``<name>.png`` instead.
    """
    if os.environ.get("IMPL_SITE_BUILD") != "1":
        print(f"figure saved to {save(fig, f'{name}.png')}")
        return
    svg = to_svg(fig)
    if alt:
        svg = svg.replace("<svg ", f'<svg aria-label="{_escape(alt)}" ', 1)
    print(f'<div class="dl-figure">{svg}</div>')


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure to ``path`` (``.png``, ``.svg`` or ``.pdf``) on a white background.

    The sentinel ink ``#010203`` is indistinguishable from black on paper, so nothing needs
    recolouring for files.
    """
    path = Path(path)
    with _style(), plt.rc_context({"savefig.facecolor": "white"}):
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
