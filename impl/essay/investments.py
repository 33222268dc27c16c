"""The money behind the stories: publicly reported investments and compute commitments.

``essays/investments.csv`` holds one row per reported event — an acquisition, an investment
round, a pledge, a government programme, a commitment to buy or build computing capacity, the
reported cost of one training run — with its source beside it. Chapter 3, *Narratives*, draws it.

======================  ==============================================================
column                  meaning
======================  ==============================================================
``date``                when it was announced or reported: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``
``who``                 who put the money (or the compute) in
``what``                what it went to, in a few words
``kind``                one of :data:`KINDS`
``amount_usd``          the amount in US dollars, **only where it was reported in dollars**
``amount_as_reported``  the amount as the report states it ("up to $4 billion", "€1.5 billion")
``source``              who reported it, where and when
``label``               a short name for the figure, or nothing to leave the point unlabelled
``notes``               anything a reader needs to interpret the row
======================  ==============================================================

Nothing in the file is estimated or converted. An amount that was not disclosed is left empty;
an amount reported in another currency is kept, in words, in ``amount_as_reported`` and left out
of ``amount_usd`` rather than converted at some chosen exchange rate. Amounts are headline
figures: "up to", pledges spread over years and targets are not money spent, and the notes say
which is which.

:func:`load` parses the file and :func:`validate` enforces its rules (a real date, a kind from
the fixed set, a positive amount, a source for every row, no duplicates), raising ``ValueError``
that names the line, the row and the column.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from impl import plotting
from impl.catalog import ROOT
from impl.essay.milestones import read_csv

__all__ = [
    "COLUMNS",
    "ERAS",
    "KINDS",
    "PATH",
    "Investment",
    "era_summary",
    "figure",
    "load",
    "sourced_figures",
    "validate",
]

PATH = ROOT / "essays" / "investments.csv"
KINDS = (
    "acquisition",
    "investment",
    "pledge",
    "lab founding",
    "government programme",
    "compute commitment",
    "training cost",
)
YEARS = (1950, 2026)
AMOUNT_RANGE = (1e3, 1e13)  # plausible US-dollar amounts: a thousand dollars to ten trillion
ERAS = (  # (narrative, first year, last year): the stories of chapter 3, by the year they took hold
    ("neural networks don't work", 1950, 2011),
    ("deep learning works", 2012, 2017),
    ("pre-training on the internet", 2018, 2019),
    ("scaling laws", 2020, 2022),
    ("AGI", 2023, 2026),
)
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


@dataclass(frozen=True)
class Investment:
    """One row of ``investments.csv``; an undisclosed or non-dollar amount is ``None``."""

    date: str
    who: str
    what: str
    kind: str
    amount_usd: float | None
    amount_as_reported: str
    source: str
    label: str
    notes: str

    @property
    def when(self) -> dt.date:
        """The date; a date without a day counts as the first of its month (or of January)."""
        year, month, day = _DATE.match(self.date).groups()
        return dt.date(int(year), int(month or 1), int(day or 1))

    @property
    def year(self) -> float:
        """The date as a fractional year, for plotting: a month-only date sits mid-month, a year
        mid-year."""
        when = self.when
        offset = {10: 0, 7: 14, 4: 182}[len(self.date)]
        return (
            when.year + (when.toordinal() - dt.date(when.year, 1, 1).toordinal() + offset) / 365.25
        )


COLUMNS = tuple(f.name for f in fields(Investment))


def load(path: str | Path = PATH) -> list[Investment]:
    """Read and validate the file; raises ``ValueError`` naming the line, the row and the column."""
    rows = [_parse(line, raw) for line, raw in read_csv(path, COLUMNS)]
    validate(rows, first_line=2)
    return rows


def _name(line: int, who: str, date: str) -> str:
    return f"line {line} ({who or '<nobody>'}, {date or '<no date>'})"


def _parse(line: int, raw: dict[str, str]) -> Investment:
    values: dict[str, object] = {}
    name = _name(line, (raw.get("who") or "").strip(), (raw.get("date") or "").strip())
    for column in COLUMNS:
        text = (raw.get(column) or "").strip()
        if column == "amount_usd":
            try:
                values[column] = float(text.replace(",", "")) if text else None
            except ValueError:
                raise ValueError(
                    f"{name}, amount_usd: expected a number of dollars or nothing, got {text!r}"
                ) from None
        else:
            values[column] = text
    return Investment(**values)


def validate(rows: list[Investment], first_line: int = 2) -> None:
    """Enforce the file's rules; raise ``ValueError`` naming the line, the row and the column.

    ``first_line`` is the file line of ``rows[0]`` (the header is line 1), used in messages only.
    """
    seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(rows):
        name = _name(first_line + i, row.who, row.date)
        match = _DATE.match(row.date)
        if match is None:
            raise ValueError(
                f"{name}, date: expected YYYY-MM-DD, YYYY-MM or YYYY, got {row.date!r}"
            )
        year, month, day = (int(g) if g else None for g in match.groups())
        try:
            dt.date(year, month or 1, day or 1)
        except ValueError:
            raise ValueError(f"{name}, date: {row.date!r} is not a calendar date") from None
        if not YEARS[0] <= year <= YEARS[1]:
            raise ValueError(f"{name}, date: expected a year in {YEARS[0]}-{YEARS[1]}, got {year}")
        for column in ("who", "what"):
            if not getattr(row, column):
                raise ValueError(f"{name}, {column}: expected some text")
        if row.kind not in KINDS:
            raise ValueError(f"{name}, kind: expected one of {', '.join(KINDS)}; got {row.kind!r}")
        if row.amount_usd is not None:
            low, high = AMOUNT_RANGE
            if not (math.isfinite(row.amount_usd) and row.amount_usd > 0):
                raise ValueError(
                    f"{name}, amount_usd: expected a positive amount, got {row.amount_usd:g}"
                )
            if not low <= row.amount_usd <= high:
                raise ValueError(
                    f"{name}, amount_usd: expected {low:g} to "
                    f"{high:g} dollars, got {row.amount_usd:g}"
                )
            if not row.amount_as_reported:
                raise ValueError(
                    f"{name}, amount_as_reported: amount_usd is given, so say how it was reported"
                )
        if not row.source:
            raise ValueError(f"{name}, source: every row needs a source")
        key = (row.date, row.who.lower(), row.what.lower())
        if key in seen:
            raise ValueError(f"{name}: duplicate of line {seen[key]} (same date, who and what)")
        seen[key] = first_line + i


def sourced_figures(rows: list[Investment]) -> int:
    """How many rows state an amount (in dollars or otherwise); each has a source, by
    :func:`validate`."""
    return sum(row.amount_usd is not None or bool(row.amount_as_reported) for row in rows)


@dataclass(frozen=True)
class EraSummary:
    narrative: str
    first: int
    last: int
    events: int
    with_dollars: int
    largest: Investment | None


def era_summary(rows: list[Investment], eras=ERAS) -> list[EraSummary]:
    """Per narrative era: how many events the file holds, how many state dollars, and the
    largest."""
    out = []
    for narrative, first, last in eras:
        inside = [r for r in rows if first <= r.when.year <= last]
        dollars = [r for r in inside if r.amount_usd is not None]
        largest = max(dollars, key=lambda r: r.amount_usd) if dollars else None
        out.append(EraSummary(narrative, first, last, len(inside), len(dollars), largest))
    return out


# ---------------------------------------------------------------------------------------
# The figure (drawn at build time on chapter 3).
# ---------------------------------------------------------------------------------------
MARKS = (  # (fractional year, label): the moments each new story took hold
    (2012.75, "AlexNet wins ImageNet"),
    (2018.8, "BERT"),
    (2020.05, "scaling laws"),
    (2022.92, "ChatGPT"),
)
_MARKERS = dict(zip(KINDS, "oDPs^vX"))


def _short(amount: float) -> str:
    for scale, unit in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if amount >= scale:
            return f"${amount / scale:.3g}{unit}"
    return f"${amount:.0f}"


def figure(rows: list[Investment], *, since: float = 2012.5):
    """Reported amounts in US dollars over time (log scale), by kind; below, the events without one.

    Only events from ``since`` on are drawn (the chapter's text covers the earlier ones).
    """
    from matplotlib.lines import Line2D

    fig, (ax, strip) = plotting.figure(
        1, 2, height=5.8, sharex=True, gridspec_kw={"height_ratios": (4, 1.2)}
    )
    shown = [r for r in rows if r.year >= since]
    handles = []
    for i, kind in enumerate(KINDS):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        dollars = [r for r in shown if r.kind == kind and r.amount_usd is not None]
        other = [r for r in shown if r.kind == kind and r.amount_usd is None]
        ax.scatter(
            [r.year for r in dollars],
            [r.amount_usd for r in dollars],
            s=34,
            marker=_MARKERS[kind],
            color=colour,
            zorder=3,
        )
        strip.scatter(
            [r.year for r in other],
            [len(KINDS) - i] * len(other),
            s=30,
            marker=_MARKERS[kind],
            facecolors="none",
            edgecolors=colour,
            zorder=3,
        )
        handles.append(Line2D([], [], ls="", marker=_MARKERS[kind], color=colour, label=kind))
    for r in shown:
        if r.amount_usd is not None and r.label:
            ax.annotate(f"{r.label} {_short(r.amount_usd)}", (r.year, r.amount_usd), xytext=(5, -2),
                        textcoords="offset points", fontsize=8)  # fmt: skip
    for axis in (ax, strip):
        for x, _ in MARKS:
            axis.axvline(x, color=plotting.PALETTE[7], lw=0.9, ls=":", zorder=1)
    for x, label in MARKS:
        ax.annotate(
            label,
            (x, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3, 4),
            textcoords="offset points",
            rotation=90,
            ha="right",
            va="bottom",
            fontsize=8,
            color=plotting.PALETTE[7],
        )
    ax.set(
        yscale="log",
        ylabel="reported amount (US$)",
        title="Reported investments and commitments",
        xlim=(since, 2027.2),
    )
    ax.legend(handles=handles, fontsize=8, loc="upper left", title="kind", title_fontsize=8)
    strip.set(yticks=[], xlabel="date of the announcement or report", ylim=(0, len(KINDS) + 1))
    strip.set_ylabel("no US$\nfigure", fontsize=8)
    strip.grid(False, axis="y")
    return fig
