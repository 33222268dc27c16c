"""The milestone data behind Part 1's figures: notable systems, their size, compute and data.

``essays/milestones.csv`` holds one row per system, with every figure's source beside it:

=========================  ============================================================
column                     meaning
=========================  ============================================================
``system``                 name, unique
``year``                   year of the paper or report (1986-2026)
``organization``           who built it
``domain``                 language, vision, speech, ...
``parameters``             trainable parameters (all experts, for a mixture of experts)
``active_parameters``      parameters used per token, for a mixture of experts
``training_compute_flop``  total training compute, in floating-point operations
``training_data_size``     size of the training data, in ``training_data_unit``
``training_data_unit``     one of :data:`UNITS`
``hardware``               what it was trained on, where reported
``source_parameters``      where the parameter counts come from
``source_compute``         where the compute figure comes from
``source_data``            where the data figure comes from
``source_hardware``        where the hardware comes from
``notes``                  anything a reader needs to interpret the row
=========================  ============================================================

Nothing in the file is guessed: a figure that no paper or well-known public estimate reports
is left empty. :func:`load` parses the file and :func:`validate` enforces these rules (types,
units, plausible ranges, a source for every figure, no duplicates), so the tests and the site
build both fail on a bad row.

Two things are *computed here*, never stored: doubling times fitted per era
(:func:`fit_eras`), and the rough ``6 · N · D`` compute of a language model from its reported
parameters ``N`` and training tokens ``D`` (:func:`compute_6nd`; Kaplan et al. 2020), which the
compute figure draws as hollow markers, distinct from reported figures.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from impl import plotting
from impl.catalog import ROOT

__all__ = [
    "ERAS",
    "PATH",
    "UNITS",
    "EraFit",
    "Milestone",
    "compute_6nd",
    "compute_figure",
    "data_figure",
    "doubling_time_months",
    "fit_eras",
    "load",
    "parameters_figure",
    "sourced_figures",
    "validate",
]

PATH = ROOT / "essays" / "milestones.csv"
UNITS = (
    "images",
    "words",
    "tokens",
    "sentence pairs",
    "image-text pairs",
    "examples",
    "documents",
    "gigabytes",
)
YEARS = (1986, 2026)
RANGES = {  # plausible (low, high) for each numeric column
    "parameters": (1e2, 1e13),
    "active_parameters": (1e2, 1e13),
    "training_compute_flop": (1e9, 1e27),
    "training_data_size": (1.0, 1e15),
}
SOURCE_OF = {  # figure column -> the column that must name its source
    "parameters": "source_parameters",
    "active_parameters": "source_parameters",
    "training_compute_flop": "source_compute",
    "training_data_size": "source_data",
    "hardware": "source_hardware",
}
# (name, first year, last year): before and after the deep-learning turn, then large models
ERAS = (
    ("before deep learning", 1986, 2011),
    ("deep learning", 2012, 2019),
    ("large models", 2020, 2026),
)


@dataclass(frozen=True)
class Milestone:
    """One row of ``milestones.csv``; empty figures are ``None``."""

    system: str
    year: int
    organization: str
    domain: str
    parameters: float | None
    active_parameters: float | None
    training_compute_flop: float | None
    training_data_size: float | None
    training_data_unit: str
    hardware: str
    source_parameters: str
    source_compute: str
    source_data: str
    source_hardware: str
    notes: str


COLUMNS = tuple(f.name for f in fields(Milestone))
_NUMERIC = ("parameters", "active_parameters", "training_compute_flop", "training_data_size")


def read_csv(path: str | Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of one of the essay's sourced tables as ``(line number, {column: text})``.

    Shared by every table under ``essays/`` (milestones, hardware, investments, inspiration);
    raises ``ValueError`` naming the file when a column is missing. Line 1 is the header.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: missing columns {missing}")
        return [(i + 2, raw) for i, raw in enumerate(reader)]


def load(path: str | Path = PATH) -> list[Milestone]:
    """Read and validate the milestone file; raises ``ValueError`` naming the row and column."""
    rows = [_parse(line, raw) for line, raw in read_csv(path, COLUMNS)]
    validate(rows)
    return rows


def _parse(line: int, raw: dict[str, str]) -> Milestone:
    return Milestone(**parse_fields(raw, COLUMNS, _NUMERIC, f"line {line}"))


def parse_fields(
    raw: dict[str, str], columns: tuple[str, ...], numeric: tuple[str, ...], where: str
) -> dict:
    """One CSV row's text as values: ``year`` an integer, the ``numeric`` columns floats or ``None``
    when empty, the rest stripped text. Errors start with ``where`` (e.g. ``"line 7"``) and name
    the column. Shared by the milestone and hardware tables."""
    values: dict[str, object] = {}
    for column in columns:
        text = (raw.get(column) or "").strip()
        if column == "year":
            try:
                values[column] = int(text)
            except ValueError:
                raise ValueError(f"{where}, year: expected an integer year, got {text!r}") from None
        elif column in numeric:
            try:
                values[column] = float(text) if text else None
            except ValueError:
                raise ValueError(
                    f"{where}, {column}: expected a number or nothing, got {text!r}"
                ) from None
        else:
            values[column] = text
    return values


def validate(rows: list[Milestone]) -> None:
    """Enforce the file's rules; raise ``ValueError`` naming the system and the column."""
    seen: set[str] = set()
    for row in rows:
        name = row.system or "<unnamed>"
        if not row.system:
            raise ValueError("system: every row needs a name")
        if row.system.lower() in seen:
            raise ValueError(f"{name}: duplicate system")
        seen.add(row.system.lower())
        if not YEARS[0] <= row.year <= YEARS[1]:
            raise ValueError(f"{name}, year: expected {YEARS[0]}-{YEARS[1]}, got {row.year}")
        if not row.organization:
            raise ValueError(f"{name}, organization: expected a name")
        for column, (low, high) in RANGES.items():
            value = getattr(row, column)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"{name}, {column}: expected a value in [{low:g}, {high:g}], got {value:g}"
                )
        if row.active_parameters is not None and (
            row.parameters is None or row.active_parameters > row.parameters
        ):
            raise ValueError(f"{name}, active_parameters: expected at most the total parameters")
        if (row.training_data_size is None) != (row.training_data_unit == ""):
            raise ValueError(
                f"{name}, training_data_unit: a data size needs a unit, and a unit needs a size"
            )
        if row.training_data_unit and row.training_data_unit not in UNITS:
            raise ValueError(
                f"{name}, training_data_unit: expected one of {', '.join(UNITS)}; got "
                f"{row.training_data_unit!r}"
            )
        for column, source in SOURCE_OF.items():
            value = getattr(row, column)
            if value not in (None, "") and not getattr(row, source):
                raise ValueError(f"{name}, {source}: {column} is given, so its source must be too")


def sourced_figures(rows: list[Milestone]) -> int:
    """How many numeric figures the file holds (each one has a source, by :func:`validate`)."""
    return sum(getattr(row, column) is not None for row in rows for column in _NUMERIC)


def compute_6nd(row: Milestone) -> float | None:
    """Rough training compute of a language model, ``6 · N · D`` FLOP (Kaplan et al. 2020).

    ``N`` is the parameters used per token (the active ones, for a mixture of experts) and
    ``D`` the training tokens; each token costs about 2 FLOP per parameter forward and 4
    backward. ``None`` unless the row reports both, in tokens.
    """
    n = row.active_parameters if row.active_parameters is not None else row.parameters
    if n is None or row.training_data_unit != "tokens" or row.training_data_size is None:
        return None
    return 6.0 * n * row.training_data_size


def doubling_time_months(years, values) -> float:
    """Months per doubling of an exponential fitted to ``values`` over ``years`` (least squares on
    log2)."""
    years, values = np.asarray(years, float), np.asarray(values, float)
    if years.shape != values.shape or years.size < 2 or np.ptp(years) == 0:
        raise ValueError(
            "years, values: expected two vectors of equal length, at least two distinct years"
        )
    if (values <= 0).any():
        raise ValueError("values: a doubling time needs positive values")
    slope, _ = np.polyfit(years, np.log2(values), 1)  # doublings per year
    return float(12.0 / slope)


@dataclass(frozen=True)
class EraFit:
    """An exponential fitted to one era's points: ``value = 2 ** (slope * year + intercept)``.

    ``first`` and ``last`` are the years of the era's first and last data points.
    """

    era: str
    first: int
    last: int
    points: int
    doubling_months: float
    slope: float
    intercept: float


def fit_eras(points: list[tuple[int, float]], eras=ERAS, min_points: int = 3) -> list[EraFit]:
    """Fit a doubling time to the ``(year, value)`` points of each era that has ``min_points``."""
    fits = []
    for era, first, last in eras:
        inside = [(y, v) for y, v in points if first <= y <= last]
        if len(inside) < min_points or len({y for y, _ in inside}) < 2:
            continue
        years, values = np.array(inside, float).T
        slope, intercept = np.polyfit(years, np.log2(values), 1)
        span = (int(years.min()), int(years.max()))  # draw the fit only where it has data
        fits.append(
            EraFit(era, *span, len(inside), float(12.0 / slope), float(slope), float(intercept))
        )
    return fits


# ---------------------------------------------------------------------------------------
# Figures (drawn at build time on Part 1's pages).
# ---------------------------------------------------------------------------------------
_LABELLED = {  # systems named on the figures; the rest are plain markers
    "NETtalk", "LeNet (zip codes)", "LeNet-5", "Deep belief net on GPUs", "AlexNet", "VGG-16",
    "Transformer (big)", "BERT-Large", "GPT-2", "T5-11B", "GPT-3", "Switch-C", "PaLM", "Chinchilla",
    "Llama 3 405B", "DeepSeek-V3", "Kimi K2", "Qwen3-235B-A22B", "Transformer (base)", "ViT-H/14",
}  # fmt: skip


def _draw_fits(ax, fits: list[EraFit], color_offset: int = 3) -> None:
    for i, fit in enumerate(fits):
        xs = np.linspace(fit.first, fit.last, 20)
        ax.plot(
            xs,
            2.0 ** (fit.slope * xs + fit.intercept),
            "--",
            lw=1.4,
            color=plotting.PALETTE[color_offset + i],
            label=f"{fit.era}, {fit.first}–{fit.last} ({fit.points} systems): doubling every "
            f"{fit.doubling_months:.0f} months",
        )


def parameters_figure(rows: list[Milestone]):
    """Parameters over time, log scale, with a doubling time fitted to each era.

    Two panels share the parameter axis: 1985-2011, where systems are few, and 2011-2025 with
    twice the room per year, so that the crowd of recent systems can be named.
    """
    fig, axes = plotting.figure(
        2, 1, height=5.6, sharey=True, gridspec_kw={"width_ratios": (1, 2.2)}
    )
    dense = [(r.year, r.parameters) for r in rows if r.parameters is not None]
    moe = [r for r in rows if r.active_parameters is not None]
    fits = fit_eras(dense)
    for ax in axes:
        ax.scatter(
            *zip(*dense),
            s=22,
            color=plotting.PALETTE[0],
            zorder=3,
            label="parameters (all of them)",
        )
        for r in moe:
            ax.plot(
                [r.year, r.year],
                [r.active_parameters, r.parameters],
                color=plotting.PALETTE[1],
                lw=1,
            )
        ax.scatter(
            [r.year for r in moe],
            [r.active_parameters for r in moe],
            s=22,
            facecolors="none",
            edgecolors=plotting.PALETTE[1],
            zorder=3,
            label="mixture of experts: parameters used per token",
        )
        _draw_fits(ax, fits)
    early, late = axes
    early.set(
        yscale="log",
        xlabel="year",
        ylabel="parameters",
        xlim=(1985, 2011),
        xticks=[1990, 2000, 2010],
    )
    late.set(xlabel="year", xlim=(2011, 2028), xticks=range(2012, 2027, 2))
    late.tick_params(axis="y", left=False)
    fig.suptitle("Model size, 1987–2025")
    plotting.legend_below(late)
    named = [
        (r.year, r.parameters, r.system)
        for r in rows
        if r.parameters is not None and r.system in _LABELLED
    ]
    for ax in axes:
        lo, hi = ax.get_xlim()
        plotting.label_points(ax, [p for p in named if lo <= p[0] <= hi])
    return fig


def compute_figure(rows: list[Milestone]):
    """Training compute over time: reported figures, and 6·N·D estimates where only N and D are
    reported."""
    fig, ax = plotting.figure(1, 1, height=5.0)
    reported = [
        (r.year, r.training_compute_flop, r.system)
        for r in rows
        if r.training_compute_flop is not None
    ]
    derived = [
        (r.year, compute_6nd(r), r.system)
        for r in rows
        if r.training_compute_flop is None and compute_6nd(r)
    ]
    ax.scatter(
        [y for y, _, _ in reported],
        [c for _, c, _ in reported],
        s=26,
        color=plotting.PALETTE[0],
        zorder=3,
        label="reported in the paper",
    )
    ax.scatter(
        [y for y, _, _ in derived],
        [c for _, c, _ in derived],
        s=26,
        facecolors="none",
        zorder=3,
        edgecolors=plotting.PALETTE[1],
        label="6·N·D from the reported parameters and tokens",
    )
    # Fit only the language models from 2019 on: the 2017 points are translation models,
    # a different lineage whose compute is not comparable.
    points = [(y, c) for y, c, _ in reported + derived if y >= 2019]
    _draw_fits(ax, fit_eras(points, eras=(("language models", 2019, 2026),)))
    ax.set(
        yscale="log",
        xlabel="year",
        ylabel="training compute (FLOP)",
        title="Training compute",
        xlim=(2016, 2026.5),
    )
    plotting.legend_below(ax)
    everything = reported + derived
    plotting.label_points(ax, [p for p in everything if p[2] in _LABELLED])
    return fig


_DATA_LABELS = {
    "LeNet (zip codes)", "LeNet-5", "AlexNet", "ResNet-152", "Seq2seq (deep LSTM)",
    "Transformer (big)", "BERT-Large", "ViT-H/14", "CLIP", "T5-11B", "GPT-3", "Chinchilla",
    "Llama 3 405B", "Qwen3-235B-A22B",
}  # fmt: skip


def data_figure(rows: list[Milestone]):
    """Training-data size over time, one colour per counted unit (units are not converted).

    Sizes given in gigabytes of text are not counts of anything and are left off the plot.
    """
    fig, ax = plotting.figure(1, 1, height=5.0)
    units = [u for u in UNITS if u != "gigabytes" and any(r.training_data_unit == u for r in rows)]
    everything = []
    for i, unit in enumerate(units):
        pts = [
            (r.year, r.training_data_size, r.system) for r in rows if r.training_data_unit == unit
        ]
        ax.scatter(
            [y for y, _, _ in pts],
            [s for _, s, _ in pts],
            s=26,
            color=plotting.PALETTE[i],
            zorder=3,
            label=unit,
        )
        everything += pts
    ax.set(
        yscale="log",
        xlabel="year",
        ylabel="training data (in its own unit)",
        title="Training data",
        xlim=(1987, 2028),
    )
    plotting.legend_below(ax, ncols=len(units), title="unit")
    plotting.label_points(ax, [p for p in everything if p[2] in _DATA_LABELS])
    return fig
