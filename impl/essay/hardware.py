"""The hardware data behind Part 1's chapters on compute, efficiency and energy.

``essays/hardware.csv`` holds one row per chip — GPUs, TPUs and server CPUs from 2006 to 2025 —
with the source of every figure beside it:

========================  ==================================================================
column                    meaning
========================  ==================================================================
``name``                  the chip (and form factor, where it changes the figures), unique
``vendor``                who makes it
``kind``                  one of :data:`KINDS`
``year``                  year of launch (or of first deployment, for Google's TPUs)
``fp32_tflops``           peak 32-bit floating-point throughput, TFLOP/s (vector units)
``fp16_tflops``           peak 16-bit (fp16 or bfloat16) throughput, TFLOP/s, **dense**
``fp8_tflops``            peak 8-bit floating-point throughput, TFLOP/s, dense
``int8_tops``             peak 8-bit integer throughput, tera-operations/s, dense
``memory_gb``             memory on the chip's package or board, GB (GiB where the notes say)
``memory_bandwidth_gbs``  peak memory bandwidth, GB/s
``power_w``               thermal design power or maximum power as the source states it, watts
``price_usd``             launch price in US dollars, only where it was public
``source_throughput``     where the four throughput figures come from
``source_memory``         where the memory figures come from
``source_power``          where the power figure comes from
``source_price``          where the price comes from
``notes``                 anything a reader needs to interpret the row
========================  ==================================================================

Nothing in the file is guessed: a figure that no datasheet, vendor page or paper states is left
empty. Some CPU and early-GPU peaks are *derived* — cores × clock × operations per cycle — and
their source says so, with the numbers used. Vendors quote their low-precision figures for
NVIDIA's 2:4 structured sparsity; the file holds the dense ones (half), and the notes say so.

:func:`load` parses the file and :func:`validate` enforces its rules (types, units, plausible
ranges, a source for every figure, no duplicate names), so the tests and the site build fail on
a bad row. The helpers compute what the chapters plot: FLOP/s per watt, FLOP/s per dollar, and
the *ridge point* of the roofline model — how many operations a program must do per byte it
moves before the chip's arithmetic, not its memory, becomes the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from impl import plotting
from impl.catalog import ROOT
from impl.essay.milestones import parse_fields, read_csv

__all__ = [
    "KINDS",
    "PATH",
    "PRECISIONS",
    "Chip",
    "by_name",
    "doubling_months",
    "flops_per_dollar",
    "flops_per_watt",
    "load",
    "ml_peak_tflops",
    "peak_tflops",
    "ridge_figure",
    "ridge_point",
    "sourced_figures",
    "throughput_figure",
    "validate",
]

PATH = ROOT / "essays" / "hardware.csv"
KINDS = ("gpu", "tpu", "cpu", "other")
YEARS = (2000, 2026)
PRECISIONS = {  # precision name -> column holding its peak
    "fp32": "fp32_tflops",
    "fp16": "fp16_tflops",
    "fp8": "fp8_tflops",
    "int8": "int8_tops",
}
RANGES = {  # plausible (low, high) for each numeric column, in the column's unit
    "fp32_tflops": (0.01, 500.0),
    "fp16_tflops": (0.01, 50_000.0),
    "fp8_tflops": (0.01, 100_000.0),
    "int8_tops": (0.01, 100_000.0),
    "memory_gb": (0.1, 2_000.0),
    "memory_bandwidth_gbs": (1.0, 100_000.0),
    "power_w": (1.0, 5_000.0),
    "price_usd": (10.0, 1_000_000.0),
}
SOURCE_OF = {  # figure column -> the column that must name its source
    "fp32_tflops": "source_throughput",
    "fp16_tflops": "source_throughput",
    "fp8_tflops": "source_throughput",
    "int8_tops": "source_throughput",
    "memory_gb": "source_memory",
    "memory_bandwidth_gbs": "source_memory",
    "power_w": "source_power",
    "price_usd": "source_price",
}


@dataclass(frozen=True)
class Chip:
    """One row of ``hardware.csv``; empty figures are ``None``."""

    name: str
    vendor: str
    kind: str
    year: int
    fp32_tflops: float | None
    fp16_tflops: float | None
    fp8_tflops: float | None
    int8_tops: float | None
    memory_gb: float | None
    memory_bandwidth_gbs: float | None
    power_w: float | None
    price_usd: float | None
    source_throughput: str
    source_memory: str
    source_power: str
    source_price: str
    notes: str


COLUMNS = tuple(f.name for f in fields(Chip))
_NUMERIC = tuple(RANGES)


def load(path: str | Path = PATH) -> list[Chip]:
    """Read and validate the hardware file; raises ``ValueError`` naming the row and column."""
    rows = [_parse(line, raw) for line, raw in read_csv(path, COLUMNS)]
    validate(rows)
    return rows


def _parse(line: int, raw: dict[str, str]) -> Chip:
    name = (raw.get("name") or "").strip() or "<unnamed>"
    return Chip(**parse_fields(raw, COLUMNS, _NUMERIC, f"line {line} ({name})"))


def validate(rows: list[Chip]) -> None:
    """Enforce the file's rules; raise ``ValueError`` naming the chip and the column."""
    seen: set[str] = set()
    for row in rows:
        name = row.name or "<unnamed>"
        if not row.name:
            raise ValueError("name: every row needs a name")
        if row.name.lower() in seen:
            raise ValueError(f"{name}: duplicate name")
        seen.add(row.name.lower())
        if not row.vendor:
            raise ValueError(f"{name}, vendor: expected a name")
        if row.kind not in KINDS:
            raise ValueError(f"{name}, kind: expected one of {', '.join(KINDS)}; got {row.kind!r}")
        if not YEARS[0] <= row.year <= YEARS[1]:
            raise ValueError(f"{name}, year: expected {YEARS[0]}-{YEARS[1]}, got {row.year}")
        for column, (low, high) in RANGES.items():
            value = getattr(row, column)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"{name}, {column}: expected a value in [{low:g}, {high:g}], got {value:g}"
                )
        # Lower precision is never slower on the same chip.
        if (
            row.fp32_tflops is not None
            and row.fp16_tflops is not None
            and row.fp16_tflops < row.fp32_tflops
        ):
            raise ValueError(
                f"{name}, fp16_tflops: expected at least fp32_tflops ({row.fp32_tflops:g})"
            )
        if (
            row.fp16_tflops is not None
            and row.fp8_tflops is not None
            and row.fp8_tflops < row.fp16_tflops
        ):
            raise ValueError(
                f"{name}, fp8_tflops: expected at least fp16_tflops ({row.fp16_tflops:g})"
            )
        for column, source in SOURCE_OF.items():
            if getattr(row, column) is not None and not getattr(row, source):
                raise ValueError(f"{name}, {source}: {column} is given, so its source must be too")


def sourced_figures(rows: list[Chip]) -> int:
    """How many numeric figures the file holds (each one has a source, by :func:`validate`)."""
    return sum(getattr(row, column) is not None for row in rows for column in _NUMERIC)


def by_name(rows: list[Chip]) -> dict[str, Chip]:
    """The rows keyed by chip name."""
    return {row.name: row for row in rows}


# --8<-- [start:helpers]
def peak_tflops(row: Chip, precision: str = "fp32") -> float | None:
    """The chip's peak at ``precision``, or ``None`` where the file has no figure.

    ``precision`` is ``fp32``, ``fp16``, ``fp8``, ``int8``, or ``ml`` for :func:`ml_peak_tflops`.
    """
    if precision == "ml":
        return ml_peak_tflops(row)
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision: expected one of {', '.join(PRECISIONS)} or ml; got {precision!r}"
        )
    return getattr(row, PRECISIONS[precision])


def ml_peak_tflops(row: Chip) -> float | None:
    """The peak a chip offers to training in its era: 16-bit where it has it, else 32-bit.

    8-bit formats are left out: they became usable for training only from 2022 on.
    """
    return row.fp16_tflops if row.fp16_tflops is not None else row.fp32_tflops


def flops_per_watt(row: Chip, precision: str = "fp32") -> float | None:
    """Peak GFLOP/s per watt of the stated power, or ``None`` when either is missing."""
    peak = peak_tflops(row, precision)
    if peak is None or row.power_w is None:
        return None
    return peak * 1e3 / row.power_w


def flops_per_dollar(row: Chip, precision: str = "fp32") -> float | None:
    """Peak GFLOP/s per US dollar of launch price, or ``None`` when either is missing."""
    peak = peak_tflops(row, precision)
    if peak is None or row.price_usd is None:
        return None
    return peak * 1e3 / row.price_usd


def ridge_point(row: Chip, precision: str = "fp32") -> float | None:
    """FLOP per byte of memory traffic at which the chip stops being memory-bound (roofline).

    A program doing fewer operations per byte it reads or writes is limited by bandwidth;
    one doing more, by arithmetic. ``peak FLOP/s / bandwidth in bytes/s``.
    """
    peak = peak_tflops(row, precision)
    if peak is None or row.memory_bandwidth_gbs is None:
        return None
    return peak * 1e12 / (row.memory_bandwidth_gbs * 1e9)


def doubling_months(points: list[tuple[int, float]]) -> float:
    """Months per doubling of an exponential fitted to ``(year, value)`` points (least squares on
    log2)."""
    if len(points) < 2 or len({y for y, _ in points}) < 2:
        raise ValueError("points: expected at least two points in different years")
    years, values = np.array(points, float).T
    if (values <= 0).any():
        raise ValueError("points: a doubling time needs positive values")
    slope, _ = np.polyfit(years, np.log2(values), 1)  # doublings per year
    return float(12.0 / slope)


# --8<-- [end:helpers]


# ---------------------------------------------------------------------------------------
# Figures (drawn at build time on Part 1's pages).
# ---------------------------------------------------------------------------------------
_MARKERS = {"gpu": "o", "tpu": "s", "cpu": "^", "other": "D"}
_LABELLED = {
    "GeForce 8800 GTX", "GeForce GTX 580", "Tesla K80", "Tesla P100 (SXM2)", "Tesla V100 (SXM2)",
    "A100 (SXM4, 40 GB)", "H100 (SXM5)", "B200 (HGX)", "TPU v2", "Instinct MI300X", "EPYC 9654",
    "Xeon X5570",
}  # fmt: skip


def throughput_figure(rows: list[Chip]):
    """Peak throughput by year: 32-bit and the 16-bit figure training uses, per kind of chip."""
    fig, ax = plotting.figure(1, 1, height=5.4)
    for i, (precision, title) in enumerate(
        (("fp32", "32-bit"), ("fp16", "16-bit (fp16/bfloat16), dense"))
    ):
        for kind in KINDS:
            pts = [(r.year, peak_tflops(r, precision), r.name) for r in rows if r.kind == kind]
            pts = [(y, v, n) for y, v, n in pts if v is not None]
            if not pts:
                continue
            ax.scatter(
                [y for y, _, _ in pts],
                [v for _, v, _ in pts],
                s=26,
                marker=_MARKERS[kind],
                zorder=3,
                color=plotting.PALETTE[i],
                facecolors="none" if kind == "cpu" else plotting.PALETTE[i],
                label=f"{kind.upper()}, {title}",
            )
    accel = [
        (r.year, ml_peak_tflops(r))
        for r in rows
        if r.kind != "cpu" and ml_peak_tflops(r) is not None
    ]
    months = doubling_months(accel)
    years = np.array([y for y, _ in accel], float)
    slope, intercept = np.polyfit(years, np.log2([v for _, v in accel]), 1)
    xs = np.linspace(years.min(), years.max(), 20)
    ax.plot(
        xs,
        2.0 ** (slope * xs + intercept),
        "--",
        color=plotting.PALETTE[3],
        lw=1.3,
        label=f"accelerators, best training precision: doubling every {months:.0f} months",
    )
    ax.set(
        yscale="log",
        xlabel="year",
        ylabel="peak TFLOP/s (one chip)",
        title="Peak throughput of one chip",
        xlim=(2005, 2027),
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    plotting.legend_below(ax, ncols=2)
    named = [
        (r.year, ml_peak_tflops(r), r.name)
        for r in rows
        if r.name in _LABELLED and ml_peak_tflops(r)
    ]
    plotting.label_points(ax, named)
    return fig


def ridge_figure(rows: list[Chip]):
    """Peak arithmetic and memory bandwidth over time, and the ratio between them (the ridge
    point)."""
    fig, (ax_growth, ax_ridge) = plotting.figure(2, 1, height=3.6)
    accel = [r for r in rows if r.kind in ("gpu", "tpu") and r.memory_bandwidth_gbs is not None]
    accel = [r for r in accel if ml_peak_tflops(r) is not None]
    years = np.array([r.year for r in accel], float)
    flops = np.array([ml_peak_tflops(r) * 1e12 for r in accel])
    bandwidth = np.array([r.memory_bandwidth_gbs * 1e9 for r in accel])
    first = years == years.min()
    ax_growth.scatter(
        years, flops / flops[first].mean(), s=20, color=plotting.PALETTE[0], label="peak FLOP/s"
    )
    ax_growth.scatter(
        years,
        bandwidth / bandwidth[first].mean(),
        s=20,
        marker="s",
        color=plotting.PALETTE[1],
        label="memory bandwidth",
    )
    ax_growth.set(
        yscale="log",
        xlabel="year",
        ylabel=f"relative to {int(years.min())}",
        title="Arithmetic vs memory",
    )
    ax_growth.legend(fontsize=8)
    ridge = flops / bandwidth
    ax_ridge.scatter(years, ridge, s=20, color=plotting.PALETTE[2])
    for ax in (ax_growth, ax_ridge):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_ridge.set(
        yscale="log",
        xlabel="year",
        ylabel="FLOP per byte",
        title="Ridge point (best training precision)",
    )
    named = [
        (y, v, r.name)
        for r, y, v in zip(accel, years, ridge)
        if r.name in _LABELLED - {"B200 (HGX)", "Instinct MI300X"}
    ]
    # B200 and MI300X left out: their points crowd the H100's
    plotting.label_points(ax_ridge, named)
    return fig
