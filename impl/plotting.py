"""Figures that read in the site's light and dark themes, and on paper.

Pages print figures as inline SVG. Text, axes and ticks are drawn in a sentinel colour that
`to_svg` rewrites to ``currentColor``, so the figure takes the page's text colour in
either theme; the background is transparent. Data colours come from `PALETTE`, chosen
to keep their contrast on white and on Material's dark slate.

For files (the command line), `save` writes PNG, SVG or PDF on white: the sentinel ink is
near-black (``#010203``), so it reads as black there.

**Size on screen.** An SVG figure ``WIDTH`` inches wide is ``72 * WIDTH`` points, drawn 1:1 at
``4/3`` CSS px per point: 672 px, which fits the ~690 px text column of a 1400 px window, so a
font of ``f`` points reads as ``4/3 * f`` CSS px there. The house fonts are 9-10 pt and nothing
may be drawn under ``MIN_FONT_PT`` (8 pt, 10.7 px); `to_svg` refuses a figure wider than
``WIDTH`` or with more than three panels in a row. On a narrower screen the figure shrinks only
down to the width at which its smallest text is ``MIN_TEXT_PX`` (10 CSS px), then scrolls
sideways (``docs/assets/extra.css``). ``hooks/figures.py`` writes every figure of a page also as
a standalone SVG file beside the page and links it ("open full size").
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

__all__ = [
    "MAX_COLUMNS",
    "MIN_FONT_PT",
    "MIN_TEXT_PX",
    "PALETTE",
    "WIDTH",
    "check",
    "figure",
    "label_points",
    "legend_below",
    "save",
    "show",
    "smallest_font",
    "to_svg",
]

WIDTH = 7.0  # inches: the widest figure, shown 1:1 (672 CSS px) in the text column at 1400 px
MAX_COLUMNS = 3  # panels side by side, at most
MIN_FONT_PT = 8.0  # the smallest text a figure may draw, in points (10.7 CSS px when shown 1:1)
MIN_TEXT_PX = (
    10.0  # on a narrow screen a figure shrinks no further than this text size, then scrolls
)
_PX_PER_PT = 4 / 3  # CSS px per point: an SVG `width="504pt"` is 672 px wide

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
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 11,
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


def figure(ncols: int = 1, nrows: int = 1, *, width: float = WIDTH, height: float = 3.2, **kwargs):
    """``plt.subplots`` in the house style. Returns ``(fig, axes)``.

    At most ``MAX_COLUMNS`` panels side by side and at most ``WIDTH`` inches wide, so that the
    figure is shown 1:1 in the page's column: more panels take more rows (``nrows``).
    """
    if not 1 <= ncols <= MAX_COLUMNS:
        raise ValueError(
            f"ncols must be 1 to {MAX_COLUMNS} (more panels go on more rows), got {ncols}"
        )
    if not 0 < width <= WIDTH:
        raise ValueError(
            f"width must be in (0, {WIDTH}] inches so that the figure is shown 1:1, got {width}"
        )
    with _style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width, height), layout="constrained", **kwargs
        )
    return fig, axes


def legend_below(ax, **kwargs):
    """The legend of ``ax`` under the figure, outside every panel's data (the layout makes room)."""
    handles, labels = ax.get_legend_handles_labels()
    kwargs.setdefault("ncols", 1)
    return ax.figure.legend(handles, labels, loc="outside lower center", **kwargs)


# Where a label may go, in points from its point, nearest first: beside, above or below, then
# further out in the same directions (with a thin leader line from about 10 points on).
_OFFSETS = [
    (dx * r, dy * r)
    for r in (1.0, 2.0, 3.0, 4.5, 6.5, 9.0)
    for dx, dy in ((4, 3), (4, -3), (-4, 3), (-4, -3), (0, 6), (0, -6), (6, 0), (-6, 0))
]


def label_points(ax, points, *, fontsize: float = MIN_FONT_PT) -> list:
    """Name points of ``ax`` (``(x, y, text)`` in data coordinates) with labels that do not collide.

    Each label takes the offset (`_OFFSETS`) that covers least of the labels placed before it (the
    worst), the legends, the markers and the lines already drawn in ``ax``, and of the space outside
    the axes; offsets far enough to need a thin leader line back to the point cost extra, growing
    with the distance, so a label moves away only to uncover something. Call it last, once limits,
    scales and legends are set. Returns the annotations.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pad = 4 * fig.dpi / 72  # half the side of the square kept clear around a marker, in pixels
    obstacles = [(_box(xy, pad), 3.0) for xy in _markers(ax)]
    obstacles += [(_box(xy, pad / 4), 0.5) for xy in _line_samples(ax, step=pad)]
    obstacles += [
        (leg.get_window_extent(renderer), 100.0) for leg in [ax.get_legend(), *fig.legends] if leg
    ]
    placed = []
    for x, y, text in points:
        origin = ax.transData.transform((x, y))
        scored = []
        for dx, dy in _OFFSETS:
            note = _note(ax, x, y, text, dx, dy, fontsize)
            box = note.get_window_extent(renderer)
            note.remove()
            score = sum(w * _area(box, o) for o, w in obstacles) + 10 * (
                box.width * box.height - _area(box, frame)
            )
            leader = abs(dx) + abs(dy) > 10
            if leader:  # the line must not cross another label either
                end = origin + np.array([dx, dy]) * fig.dpi / 72
                line = [
                    _box(xy, pad / 4)
                    for xy in origin + (end - origin) * np.linspace(0.15, 1, 12)[:, None]
                ]
                score += sum(min(w, 10) * _area(b, o) for b in line for o, w in obstacles if w >= 3)
            if leader:  # set apart, a label is harder to read: worth it only to uncover something
                score += 100 + 3 * np.hypot(dx, dy)
            scored.append((score, box, dx, dy, leader))
            if score == 0:
                break
        _, box, dx, dy, leader = min(scored, key=lambda s: s[0])
        note = _note(ax, x, y, text, dx, dy, fontsize, leader=leader)
        note.set_in_layout(False)
        obstacles.append((box, 100.0))  # labels must not cover labels
        if leader:
            end = origin + np.array([dx, dy]) * fig.dpi / 72
            obstacles += [
                (_box(xy, pad / 4), 3.0)
                for xy in origin + (end - origin) * np.linspace(0, 1, 12)[:, None]
            ]
        placed.append(note)
    return placed


def _box(xy, half: float) -> Bbox:
    return Bbox.from_extents(xy[0] - half, xy[1] - half, xy[0] + half, xy[1] + half)


def _markers(ax) -> list:
    """Display coordinates of every scatter marker and line-plot marker of ``ax``."""
    found = []
    for collection in ax.collections:
        offsets = np.asarray(collection.get_offsets())
        if offsets.size:
            found += list(collection.get_offset_transform().transform(offsets))
    for line in ax.lines:
        if line.get_marker() not in (None, "None", "", " "):
            found += list(ax.transData.transform(line.get_xydata()))
    return [xy for xy in found if np.isfinite(xy).all()]


def _line_samples(ax, step: float) -> list:
    """Points every ``step`` pixels along each line of ``ax``, in display coordinates."""
    found = []
    for line in ax.lines:
        if line.get_linestyle() in ("None", "", " "):
            continue
        xy = line.get_transform().transform(line.get_xydata())
        for a, b in zip(xy[:-1], xy[1:]):
            if np.isfinite(a).all() and np.isfinite(b).all():
                n = max(1, int(np.hypot(*(b - a)) / step))
                found += list(a + (b - a) * np.linspace(0, 1, n + 1)[:, None])
    return found


def _note(ax, x, y, text, dx, dy, fontsize, leader=False):
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    line = (
        {"arrowstyle": "-", "lw": 0.8, "color": _INK, "alpha": 0.7, "shrinkA": 1, "shrinkB": 3}
        if leader
        else None
    )
    return ax.annotate(
        text,
        (x, y),
        xytext=(dx, dy),
        textcoords="offset points",
        ha=ha,
        va=va,
        fontsize=fontsize,
        annotation_clip=False,
        arrowprops=line,
    )


def _area(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def smallest_font(fig: Figure) -> float:
    """The size in points of the smallest text the figure shows."""
    sizes = [t.get_fontsize() for t in _texts(fig)]
    return min(sizes, default=float(plt.rcParams["font.size"]))


def _texts(fig: Figure) -> list[Text]:
    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())
    ]


def _columns(fig: Figure) -> int:
    """The most panels side by side: axes whose heights overlap and whose widths do not.

    Twin axes (same box), insets (inside another box) and colour bars are not panels.
    """
    boxes = [
        ax.get_position() for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"
    ]
    most = 0
    for box in boxes:
        beside = sorted(
            (o for o in boxes if o.y0 < box.y1 - 1e-6 and box.y0 < o.y1 - 1e-6), key=lambda o: o.x1
        )
        count, right = 0, -float("inf")
        for (
            other
        ) in beside:  # the most boxes in a row that do not overlap sideways (interval scheduling)
            if other.x0 >= right - 1e-6:
                count, right = count + 1, other.x1
        most = max(most, count)
    return most


def check(fig: Figure) -> None:
    """Refuse a figure that would not read 1:1 in the page's column.

    Raises ``ValueError`` if it is wider than ``WIDTH``, has more than ``MAX_COLUMNS`` panels side
    by side, or draws text smaller than ``MIN_FONT_PT``.
    """
    if fig.get_figwidth() > WIDTH + 1e-6:
        raise ValueError(f"figure is {fig.get_figwidth():g} in wide; at most WIDTH = {WIDTH} in")
    fig.canvas.draw()  # positions after the constrained layout
    if (columns := _columns(fig)) > MAX_COLUMNS:
        raise ValueError(
            f"figure has {columns} panels side by side; at most {MAX_COLUMNS} (use more rows)"
        )
    if (font := smallest_font(fig)) < MIN_FONT_PT:
        small = sorted({t.get_text()[:20] for t in _texts(fig) if t.get_fontsize() == font})
        raise ValueError(
            f"figure draws {font:g} pt text ({', '.join(small)}); "
            f"at least MIN_FONT_PT = {MIN_FONT_PT}"
        )


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element whose ink follows the page's text colour.

    Its inline style lets it shrink with the column (``max-width: 100%``) but not below the
    width at which its smallest text is ``MIN_TEXT_PX`` CSS px (``min-width``): narrower screens
    scroll it sideways instead. Raises ``ValueError`` for a figure that `check` refuses.
    """
    check(fig)
    width_pt = 72 * fig.get_figwidth()
    floor_px = min(width_pt * _PX_PER_PT, MIN_TEXT_PX * width_pt / smallest_font(fig))
    buffer = io.StringIO()
    with _style():
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: this goes inside HTML
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    style = f"max-width:100%;min-width:{floor_px:.0f}px;height:auto"
    return svg.replace(_INK, "currentColor").replace(
        "<svg ", f'<svg class="figure" role="img" style="{style}" ', 1
    )


def show(fig: Figure, alt: str = "", *, name: str = "figure") -> None:
    """Show a page's figure: inline SVG in a site build, a PNG file anywhere else.

    In a site build (``IMPL_SITE_BUILD=1``, set by the site's hook) the SVG is printed for a
    block with ``html="on"``, with ``alt`` as its accessible label, in a ``<div>`` that names
    it (``data-name``): ``hooks/figures.py`` writes it beside the page as ``<name>.svg`` and links
    it. When a reader pastes the page's code into a Python prompt, the figure is saved as
    ``<name>.png`` instead.
    """
    if os.environ.get("IMPL_SITE_BUILD") != "1":
        print(f"figure saved to {save(fig, f'{name}.png')}")
        return
    svg = to_svg(fig)
    if alt:
        svg = svg.replace("<svg ", f'<svg aria-label="{_escape(alt)}" ', 1)
    print(f'<div class="dl-figure" data-name="{_escape(name)}">{svg}</div>')


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
