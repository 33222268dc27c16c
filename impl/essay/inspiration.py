"""Where Part 2's ideas say they came from: each topic's stated source of inspiration.

``essays/inspiration.csv`` holds one row per Part 2 topic (by its number in :mod:`impl.catalog`),
recording what the topic's paper itself says about where its idea came from:

=============  ====================================================================
column         meaning
=============  ====================================================================
``topic``      the catalog number, e.g. ``2.2``; every topic exactly once
``paper``      the paper the statement is taken from (normally the first one the
               catalog lists for the topic; the notes say when it is another)
``category``   the stated source, one of :data:`CATEGORIES`
``also``       a second stated source, from the same set, or nothing
``statement``  a short paraphrase of what the paper says, with any exact words in
               double quotes
``where``      where in the paper: abstract, section, page
``notes``      what a reader needs: a second paper's different story, a statement
               made only later, or "not checked" where the text was not re-read
=============  ====================================================================

The rule for ``category`` is deliberately narrow: it records what the paper *states* motivated
or inspired the idea, not where a historian might say the idea came from. A paper that presents
its idea as a fix to an earlier method counts as "earlier ML work" even if that method was once
brain-inspired. "none stated" is a legitimate answer.

:func:`load` parses the file and :func:`validate` enforces its rules (every catalog topic exactly
once, categories from the fixed set, a paper, a statement and a place in the paper for every row),
raising ``ValueError`` that names the line, the topic and the column.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

from impl import plotting
from impl.catalog import ROOT, TOPICS, find_topic
from impl.essay.milestones import read_csv

__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "PATH",
    "Inspiration",
    "counts",
    "counts_by_era",
    "figure",
    "load",
    "validate",
]

PATH = ROOT / "essays" / "inspiration.csv"
CATEGORIES = (
    "neuroscience",
    "other biology",
    "psychology & linguistics",
    "mathematics",
    "physics",
    "statistics & information theory",
    "engineering",
    "earlier ML work",
    "none stated",
)
ERAS = (("1986-2011", 1986, 2011), ("2012-2017", 2012, 2017), ("2018-2023", 2018, 2023))


@dataclass(frozen=True)
class Inspiration:
    """One row of ``inspiration.csv``."""

    topic: str
    paper: str
    category: str
    also: str
    statement: str
    where: str
    notes: str

    @property
    def title(self) -> str:
        return find_topic(self.topic).title

    @property
    def year(self) -> int:
        """The topic's year, from the catalog."""
        return find_topic(self.topic).year


COLUMNS = tuple(f.name for f in fields(Inspiration))
_REQUIRED = ("paper", "statement", "where")


def load(path: str | Path = PATH) -> list[Inspiration]:
    """Read and validate the file; raises ``ValueError`` naming the line, the topic and the
    column."""
    rows = [
        Inspiration(**{c: (raw.get(c) or "").strip() for c in COLUMNS})
        for _, raw in read_csv(path, COLUMNS)
    ]
    validate(rows, first_line=2)
    return rows


def validate(rows: list[Inspiration], first_line: int = 2) -> None:
    """Enforce the file's rules; raise ``ValueError`` naming the line, the topic and the column."""
    numbers = {t.number for t in TOPICS}
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        line = first_line + i
        name = f"line {line} (topic {row.topic or '<none>'})"
        if row.topic not in numbers:
            raise ValueError(
                f"{name}, topic: expected a catalog topic number such as 1.1; got {row.topic!r}"
            )
        if row.topic in seen:
            raise ValueError(f"{name}, topic: duplicate of line {seen[row.topic]}")
        seen[row.topic] = line
        if row.category not in CATEGORIES:
            raise ValueError(
                f"{name}, category: expected one of {', '.join(CATEGORIES)}; got {row.category!r}"
            )
        if row.also and (row.also not in CATEGORIES or row.also in (row.category, "none stated")):
            raise ValueError(
                f"{name}, also: expected nothing or a category other than "
                f"{row.category!r} and 'none stated'; got {row.also!r}"
            )
        if row.category == "none stated" and row.also:
            raise ValueError(
                f"{name}, also: a paper that states no source cannot state a second one"
            )
        for column in _REQUIRED:
            if not getattr(row, column):
                raise ValueError(
                    f"{name}, {column}: every row needs one (the source of the statement)"
                )
    absent = [t.number for t in TOPICS if t.number not in seen]
    if absent:
        raise ValueError(f"topic: every catalog topic needs a row; missing {', '.join(absent)}")


def counts(rows: list[Inspiration], column: str = "category") -> dict[str, int]:
    """How many topics state each category (``column="also"`` counts the second sources)."""
    tally = Counter(getattr(row, column) for row in rows if getattr(row, column))
    return {category: tally.get(category, 0) for category in CATEGORIES}


def counts_by_era(rows: list[Inspiration], eras=ERAS) -> dict[str, dict[str, int]]:
    """``{era: {category: count}}`` by the topic's year."""
    return {
        label: counts([r for r in rows if first <= r.year <= last]) for label, first, last in eras
    }


# ---------------------------------------------------------------------------------------
# The figure (drawn at build time on chapter 4).
# ---------------------------------------------------------------------------------------
def figure(rows: list[Inspiration]):
    """Left: every topic at (year, stated source), second sources hollow. Right: the count per
    source."""
    fig, (ax, bars) = plotting.figure(
        2, 1, height=4.6, sharey=True, gridspec_kw={"width_ratios": (3, 1)}
    )
    y = {c: len(CATEGORIES) - 1 - i for i, c in enumerate(CATEGORIES)}
    colour = {c: plotting.PALETTE[i % len(plotting.PALETTE)] for i, c in enumerate(CATEGORIES)}
    colour["none stated"] = "#9ca3af"
    # Topics of one year and category are spread sideways so that they do not hide one another.
    placed: Counter = Counter()
    for row in sorted(rows, key=lambda r: (r.year, [int(p) for p in r.topic.split(".")])):
        for column, filled in (("category", True), ("also", False)):
            category = getattr(row, column)
            if not category:
                continue
            k = placed[(row.year, category)]
            placed[(row.year, category)] += 1
            x = row.year + 0.32 * k
            ax.scatter(
                [x],
                [y[category]],
                s=70 if filled else 46,
                color=colour[category],
                zorder=3,
                facecolors=colour[category] if filled else "none",
                edgecolors=colour[category],
            )
            if filled and category != "earlier ML work":  # that row is too crowded to label
                ax.annotate(
                    row.topic,
                    (x, y[category]),
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    ax.set(
        yticks=list(y.values()),
        yticklabels=list(y),
        xlabel="year of the topic's paper",
        title="Stated source of each Part 2 topic",
        ylim=(-0.7, len(CATEGORIES) - 0.3),
    )
    ax.scatter([], [], s=70, color="grey", label="the paper's stated source")
    ax.scatter([], [], s=46, facecolors="none", edgecolors="grey", label="a second stated source")
    ax.legend(fontsize=8, loc="lower left")
    primary, second = counts(rows), counts(rows, "also")
    ys = [y[c] for c in CATEGORIES]
    bars.barh(
        ys, [primary[c] for c in CATEGORIES], color=[colour[c] for c in CATEGORIES], height=0.6
    )
    bars.barh(
        ys,
        [second[c] for c in CATEGORIES],
        left=[primary[c] for c in CATEGORIES],
        height=0.6,
        color="none",
        edgecolor=[colour[c] for c in CATEGORIES],
        hatch="///",
        lw=0.8,
    )
    for c in CATEGORIES:
        total = primary[c] + second[c]
        bars.annotate(
            f"{primary[c]}" + (f" + {second[c]}" if second[c] else ""),
            (total, y[c]),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    bars.set(
        xlabel="topics",
        title="Count",
        xlim=(0, max(primary[c] + second[c] for c in CATEGORIES) * 1.3),
    )
    bars.tick_params(axis="y", left=False)
    return fig
