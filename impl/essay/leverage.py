"""Chapter 2.8, *Constraints & leverage* — how much of the growth in compute came from the chips.

Training compute of the milestone systems grew by some number of doublings a year; so did the
arithmetic a dollar buys, and the arithmetic a watt buys. If a run's compute is
``spending × (FLOP per dollar)``, then on logarithmic axes the growth rates add:

    doublings of compute = doublings of FLOP per dollar + doublings of spending

so the part of the growth the chips paid for is the ratio of the two rates, and the rest was
bought with more money — more chips, for longer. The same split with FLOP per watt says how fast
the energy of a frontier run grew.

Everything is fitted to this project's own sourced tables: training compute from
``essays/milestones.csv`` (reported, or ``6 · N · D`` from reported parameters and tokens;
:mod:`impl.essay.milestones`), the number of chips a run used from the same file's ``hardware``
text, and price-performance and energy efficiency from ``essays/hardware.csv``
(:mod:`impl.essay.hardware`). Launch prices are public only for consumer graphics cards and
server processors, so FLOP per dollar is the consumer GPUs' 32-bit figure: a proxy, stated as one.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import numpy as np

from impl import checks, plotting
from impl.essay import hardware, milestones
from impl.report import Report

__all__ = ["Trend", "analysis", "chip_counts", "compute_points", "decompose", "trends"]


class Trend(NamedTuple):
    """An exponential fitted to ``(year, value)`` points:
    ``value = 2 ** (per_year * year + intercept)``."""

    name: str
    per_year: float  # doublings per year
    intercept: float
    points: list[tuple[int, float]]

    @property
    def doubling_months(self) -> float:
        return 12.0 / self.per_year


def _fit(name: str, points: list[tuple[int, float]]) -> Trend:
    if len(points) < 2 or len({y for y, _ in points}) < 2:
        raise ValueError(f"points: {name} needs at least two points in different years")
    years, values = np.array(points, float).T
    slope, intercept = np.polyfit(years, np.log2(values), 1)
    return Trend(name, float(slope), float(intercept), points)


def compute_points(first_year: int = 2019) -> list[tuple[int, float]]:
    """``(year, training FLOP)`` of the milestones from ``first_year`` on (reported, else 6·N·D)."""
    checks.positive_int("first_year", first_year)
    checks.in_range("first_year", first_year, 1987, 2025)
    points = []
    for row in milestones.load():
        flop = row.training_compute_flop or milestones.compute_6nd(row)
        if flop is not None and row.year >= first_year:
            points.append((row.year, flop))
    return points


def chip_counts() -> list[tuple[int, int, str]]:
    """``(year, chips, system)`` for every milestone whose hardware text starts with a count of
    chips.

    Counts of servers (which hold several chips each) are left out.
    """
    counts = []
    for row in milestones.load():
        match = re.match(r"\s*(\d[\d,]*)\s+(.*)", row.hardware)
        if match and "server" not in match.group(2).lower():
            counts.append((row.year, int(match.group(1).replace(",", "")), row.system))
    return counts


def trends(first_year: int = 2019) -> dict[str, Trend]:
    """The growth rates the chapter compares, each fitted to its own points."""
    chips = hardware.load()
    per_dollar = [(c.year, hardware.flops_per_dollar(c)) for c in chips if c.kind == "gpu"]
    per_watt = [
        (c.year, hardware.flops_per_watt(c, "ml")) for c in chips if c.kind in ("gpu", "tpu")
    ]
    peak = [(c.year, hardware.ml_peak_tflops(c)) for c in chips if c.kind in ("gpu", "tpu")]
    return {
        "compute": _fit(
            f"training compute of the milestones, {first_year} on", compute_points(first_year)
        ),
        "chips_per_run": _fit(
            "chips used by one training run", [(y, n) for y, n, _ in chip_counts()]
        ),
        "flop_per_dollar": _fit(
            "GPU FLOP/s per dollar (32-bit, launch price)", [p for p in per_dollar if p[1]]
        ),
        "flop_per_watt": _fit(
            "accelerator FLOP/s per watt (training precision)", [p for p in per_watt if p[1]]
        ),
        "peak_per_chip": _fit("accelerator peak FLOP/s per chip", [p for p in peak if p[1]]),
    }


# --8<-- [start:core]
def decompose(compute_per_year: float, chip_per_year: float) -> dict[str, float]:
    """Split growth in compute (doublings a year) into what the chips gave and what spending gave.

    ``compute = spending × FLOP per unit``, so in doublings a year
    ``spending_per_year = compute_per_year - chip_per_year``; ``chip_share`` is the chips' part.
    """
    checks.in_range("compute_per_year", compute_per_year, 0.0, 100.0, low_inclusive=False)
    checks.in_range("chip_per_year", chip_per_year, -100.0, 100.0)
    spending = compute_per_year - chip_per_year
    return {
        "chip_share": chip_per_year / compute_per_year,
        "spending_per_year": spending,
        "spending_factor_per_year": 2.0**spending,
        "compute_factor_per_year": 2.0**compute_per_year,
        "chip_factor_per_year": 2.0**chip_per_year,
    }


# --8<-- [end:core]


def analysis(first_year: int = 2019) -> Report:
    """Fit every trend, split the growth of compute between chips and spending, draw the figure.

    Metrics: ``<trend>_doubling_months`` for each of :func:`trends`; ``chip_share_dollar`` and
    ``chip_share_watt`` (the share of compute's growth, in doublings, that price-performance or
    energy efficiency alone would explain); ``spending_factor_per_year`` (from price-performance);
    ``energy_doubling_months`` (a frontier run's energy, from compute and FLOP per watt).
    """
    checks.positive_int("first_year", first_year)
    checks.in_range("first_year", first_year, 2010, 2023)
    start = time.perf_counter()
    fits = trends(first_year)
    compute = fits["compute"].per_year
    by_dollar = decompose(compute, fits["flop_per_dollar"].per_year)
    by_watt = decompose(compute, fits["flop_per_watt"].per_year)
    energy_per_year = compute - fits["flop_per_watt"].per_year
    metrics = {f"{key}_doubling_months": fit.doubling_months for key, fit in fits.items()}
    metrics.update(
        chip_share_dollar=by_dollar["chip_share"],
        chip_share_watt=by_watt["chip_share"],
        spending_factor_per_year=by_dollar["spending_factor_per_year"],
        compute_factor_per_year=by_dollar["compute_factor_per_year"],
        energy_doubling_months=12.0 / energy_per_year if energy_per_year > 0 else float("inf"),
    )
    lines = [f"{'trend':<52} {'points':>6} {'doubling':>10} {'× a year':>9}"]
    for fit in fits.values():
        lines.append(
            f"{fit.name:<52} {len(fit.points):>6} {fit.doubling_months:>7.0f} mo "
            f"{2**fit.per_year:>9.2f}"
        )
    lines += [
        "",
        f"compute grew {by_dollar['compute_factor_per_year']:.2f}× a year; FLOP "
        f"per dollar {by_dollar['chip_factor_per_year']:.2f}× — the chips "
        f"explain {by_dollar['chip_share']:.0%} of the growth (in doublings), "
        f"spending the rest ({by_dollar['spending_factor_per_year']:.2f}× a year)",
        f"measured by FLOP per watt instead, the chips explain {by_watt['chip_share']:.0%}; a "
        f"frontier run's energy doubled about every {metrics['energy_doubling_months']:.0f} months",
    ]
    fig = _figure(fits)
    return Report(
        "2.8 Leverage — compute growth: chips or spending?",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _figure(fits: dict[str, Trend]):
    fig, (ax, ax_bar) = plotting.figure(2, 1, height=4.2, gridspec_kw={"width_ratios": [1.3, 1]})
    compute = fits["compute"]
    years = np.array([y for y, _ in compute.points], float)
    ax.scatter(years, [v for _, v in compute.points], s=26, color=plotting.PALETTE[0], zorder=3,
               label="milestones: training compute")  # fmt: skip
    xs = np.linspace(years.min(), years.max(), 30)
    start = 2.0 ** (compute.per_year * xs[0] + compute.intercept)
    fitted = 2.0 ** (compute.per_year * xs + compute.intercept)
    ax.plot(
        xs, fitted, "-", color=plotting.PALETTE[0], label=f"fit: ×{2**compute.per_year:.1f} a year"
    )
    for key, color, text in (
        ("flop_per_watt", 2, "per watt"),
        ("flop_per_dollar", 1, "per dollar"),
    ):
        rate = fits[key].per_year
        ax.plot(
            xs,
            start * 2.0 ** (rate * (xs - xs[0])),
            "--",
            color=plotting.PALETTE[color],
            label=f"constant spending, chips improving as FLOP {text} (×{2**rate:.2f} a year)",
        )
    chips_only = start * 2.0 ** (fits["flop_per_dollar"].per_year * (xs - xs[0]))
    ax.fill_between(
        xs,
        chips_only,
        fitted,
        color=plotting.PALETTE[1],
        alpha=0.12,
        label="the gap: more spending",
    )
    ax.set(
        yscale="log",
        xlabel="year",
        ylabel="training compute (FLOP)",
        title="Where the growth in compute came from",
    )
    ax.legend(fontsize=8, loc="upper left")

    order = ("compute", "chips_per_run", "peak_per_chip", "flop_per_watt", "flop_per_dollar")
    labels = (
        "training compute",
        "chips per run",
        "peak per chip",
        "FLOP/s per watt",
        "FLOP/s per dollar",
    )
    rates = [fits[k].per_year for k in order]
    ax_bar.barh(range(len(order)), rates, color=[plotting.PALETTE[i] for i in (0, 3, 4, 2, 1)])
    for i, (key, rate) in enumerate(zip(order, rates)):
        ax_bar.annotate(
            f"{fits[key].doubling_months:.0f} mo",
            (rate, i),
            xytext=(3, -3),
            textcoords="offset points",
            fontsize=8,
        )
    ax_bar.set_yticks(range(len(order)), labels)
    ax_bar.invert_yaxis()
    ax_bar.set(
        xlabel="doublings a year",
        title="Growth rates (months per doubling)",
        xlim=(0, max(rates) * 1.3),
    )
    return fig
