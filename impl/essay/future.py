"""Chapter 6, *Future* — the milestone trends extrapolated, against the limits earlier chapters
measured.

Three series are fitted from ``essays/milestones.csv`` (:mod:`impl.essay.milestones`), language
models from 2019 on: **training compute** (reported, else ``6 · N · D``), **parameters** (all
of them, for a mixture of experts) and **training tokens**. Each fit is an ordinary least-squares
line through ``log10(value)`` against the year, so the trend is exponential, and comes with

* a confidence interval for its growth rate, hence for its doubling time, from the slope's
  standard error and Student's *t* (:class:`Trend`), and a confidence band for the fitted line,
  which widens the further it is carried past the data;
* the range of doubling times over several fit windows (:func:`window_doubling_months`): how much
  the answer depends on where the fit starts.

The extrapolations are then set against limits published elsewhere, each with its source
(:data:`LIMITS`): the stock of public human-written text (Villalobos et al. 2024) for tokens, and
the training runs that Epoch AI judged feasible by 2030 given power and chip supply (Sevilla et al.
2024) for compute. A fourth panel turns the compute trend into the electrical power one training
run would draw, under assumptions stated in :func:`run_power_watts`, against site sizes companies
have announced.

Nothing here is a prediction of what *will* happen: every number is what the fitted line says
*if the trend continued*, and the chapter says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from impl import checks, plotting
from impl.essay import leverage, milestones
from impl.report import Report

__all__ = [
    "FIRST_YEAR",
    "HORIZON",
    "LIMITS",
    "SERIES",
    "Limit",
    "Trend",
    "analysis",
    "crossing_year",
    "fit_trend",
    "frontier_compute",
    "run_power_watts",
    "series",
    "window_doubling_months",
]

SERIES = ("compute", "parameters", "tokens")
FIRST_YEAR = 2019
HORIZON = 2035
LEVEL = 0.9  # confidence level of every interval and band
WINDOW_STARTS = (2018, 2019, 2020, 2021)

# The power assumptions (see `run_power_watts`): Llama 3
# 405B's energy per FLOP, from its model card.
LLAMA3_FLOP = 3.8e25  # Llama Team 2024, arXiv:2407.21783
LLAMA3_GPU_HOURS = 30.84e6  # Meta, Llama 3.1 model card (2024): 405B pre-training
LLAMA3_GPU_WATTS = 700.0  # same card: the H100's power, as the card counts it
RUN_DAYS = (
    90.0  # assumed length of a frontier training run (Llama 3's card implies at least 78 days)
)
FRONTIER_RATE = (
    4.0  # ×/year: Epoch AI's rate for frontier training compute since 2018 (Sevilla & Roldán 2024)
)
FRONTIER_START = (2024, LLAMA3_FLOP)  # the largest reported run in the milestone file


@dataclass(frozen=True)
class Limit:
    """A published limit: ``central`` with a ``(low, high)`` range, in the unit of ``series``."""

    name: str
    series: str
    low: float
    central: float
    high: float
    year: float | None  # the year the limit refers to, if it is a limit *by* a date
    source: str


LIMITS = (
    Limit(
        "stock of public human-written text", "tokens", 1e14, 3e14, 1e15, None,
        "Villalobos et al. 2024, ICML (arXiv:2211.04325): "
        "about 300 trillion tokens, 90% interval 100T-1,000T",
    ),
    Limit(
        "largest run judged feasible by 2030", "compute", 1e28, 2e29, 3e29, 2030.0,
        "Sevilla et al. 2024, Epoch AI, 'Can AI scaling continue through 2030?': "
        "2e29 FLOP likely feasible; one 1-5 GW campus supports 1e28-3e29 FLOP",
    ),
    Limit(
        "announced single sites", "power", 1e9, 1e9, 5e9, None,
        "Meta (M. Zuckerberg, July 2025): a first 1 GW+ supercluster, Prometheus, online in 2026 "
        "(size per SemiAnalysis, as he cited it); Hyperion, up to 5 GW over several years",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Trend:
    """``log10(value) = slope · year + intercept``, fitted by least squares, with its uncertainty.

    ``slope_se`` is the slope's standard error, ``resid_sd`` the residual standard deviation,
    ``x_mean`` and ``sxx`` the mean and the sum of squared deviations of the years; ``t`` is
    Student's quantile for ``level`` with ``n - 2`` degrees of freedom.
    """

    name: str
    points: tuple[tuple[int, float], ...]
    slope: float
    intercept: float
    slope_se: float
    resid_sd: float
    x_mean: float
    sxx: float
    t: float
    level: float

    @property
    def n(self) -> int:
        return len(self.points)

    @property
    def first(self) -> int:
        return min(y for y, _ in self.points)

    @property
    def last(self) -> int:
        return max(y for y, _ in self.points)

    @property
    def factor_per_year(self) -> float:
        return 10.0**self.slope

    @property
    def doubling_months(self) -> float:
        return _months(self.slope)

    @property
    def doubling_interval(self) -> tuple[float, float]:
        """``(shortest, longest)`` doubling time in months at ``level``; ``inf`` if growth is not
        excluded from zero."""
        fast, slow = self.slope + self.t * self.slope_se, self.slope - self.t * self.slope_se
        return _months(fast), _months(slow)

    def predict(self, years) -> np.ndarray:
        """The fitted line at ``years``."""
        return 10.0 ** (self.intercept + self.slope * np.asarray(years, float))

    def band(self, years) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``: the confidence band of the fitted line at ``years`` (not of single
        points)."""
        x = np.asarray(years, float)
        half = self.t * self.resid_sd * np.sqrt(1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        centre = self.intercept + self.slope * x
        return 10.0 ** (centre - half), 10.0 ** (centre + half)


def _months(slope: float) -> float:
    """Months per doubling for a slope in decades per year; ``inf`` if the slope is not positive."""
    return 12.0 * math.log10(2.0) / slope if slope > 0 else math.inf


def series(name: str, rows: list[milestones.Milestone] | None = None, first_year: int = FIRST_YEAR):
    """``[(year, value)]`` of the language models in the milestone file from ``first_year`` on.

    ``compute``: training FLOP, reported or ``6 · N · D``; ``parameters``: all parameters;
    ``tokens``: training tokens, where the data is counted in tokens.
    """
    checks.one_of("name", name, SERIES)
    checks.positive_int("first_year", first_year)
    rows = milestones.load() if rows is None else rows
    points = []
    for r in rows:
        if r.year < first_year or not r.domain.startswith("language"):
            continue
        value = {
            "compute": r.training_compute_flop or milestones.compute_6nd(r),
            "parameters": r.parameters,
            "tokens": r.training_data_size if r.training_data_unit == "tokens" else None,
        }[name]
        if value is not None:
            points.append((r.year, float(value)))
    return points


def fit_trend(points: Sequence[tuple[int, float]], name: str = "", level: float = LEVEL) -> Trend:
    """Least-squares exponential through ``(year, value)`` points, with a ``level`` confidence
    interval."""
    checks.in_range("level", level, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    points = tuple((int(y), float(v)) for y, v in points)
    if len(points) < 3 or len({y for y, _ in points}) < 2:
        raise ValueError(
            f"points: expected at least three points in two or more years, got {len(points)}"
        )
    if any(not (math.isfinite(v) and v > 0) for _, v in points):
        raise ValueError("points: every value must be positive and finite")
    x, y = np.array(points, float).T
    y = np.log10(y)
    x_mean, sxx = float(x.mean()), float(((x - x.mean()) ** 2).sum())
    slope = float(((x - x_mean) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x_mean)
    resid = y - (intercept + slope * x)
    dof = len(points) - 2
    resid_sd = float(math.sqrt((resid**2).sum() / dof)) if dof > 0 else 0.0
    t = float(stats.t.ppf(0.5 + level / 2.0, dof))
    return Trend(
        name, points, slope, intercept, resid_sd / math.sqrt(sxx), resid_sd, x_mean, sxx, t, level
    )


def window_doubling_months(points, starts: Sequence[int] = WINDOW_STARTS) -> dict[int, float]:
    """Doubling time, in months, fitted from each start year in ``starts`` to the last point."""
    out = {}
    for start in starts:
        inside = [(y, v) for y, v in points if y >= start]
        if len(inside) >= 3 and len({y for y, _ in inside}) >= 2:
            out[start] = fit_trend(inside).doubling_months
    if not out:
        raise ValueError(f"starts: no start year in {list(starts)} leaves three points to fit")
    return out


def crossing_year(
    trend: Trend, value: float, *, curve: str = "central", horizon: float = 2100.0
) -> float | None:
    """First year after the last data point at which ``curve`` reaches ``value``; ``None`` before
    ``horizon``.

    ``curve`` is ``"central"`` (the fitted line), ``"early"`` (the top of the confidence band) or
    ``"late"`` (its bottom).
    """
    checks.one_of("curve", curve, ("central", "early", "late"))
    checks.in_range("value", value, 0.0, math.inf, low_inclusive=False)
    years = np.arange(trend.last, horizon, 1.0 / 48)  # weekly grid
    low, high = trend.band(years)
    values = {"central": trend.predict(years), "early": high, "late": low}[curve]
    hit = np.nonzero(values >= value)[0]
    return float(years[hit[0]]) if hit.size else None


def run_power_watts(
    flop, years, *, flop_per_watt_doubling_months: float, run_days: float = RUN_DAYS
):
    """Average electrical power of one training run of ``flop`` FLOP finished in ``run_days``.

    Assumptions, all stated on the page: energy per FLOP starts at Llama 3 405B's (its model
    card: 30.84 million H100-hours at 700 W for 3.8e25 FLOP — about 2 pJ per FLOP, counting the
    accelerators only, not servers, network or cooling) in 2024, and falls as accelerators'
    FLOP per watt rose in this project's hardware table (a doubling every
    ``flop_per_watt_doubling_months``); the run lasts ``run_days``.
    """
    checks.in_range(
        "flop_per_watt_doubling_months",
        flop_per_watt_doubling_months,
        0.0,
        math.inf,
        low_inclusive=False,
    )
    checks.in_range("run_days", run_days, 0.0, math.inf, low_inclusive=False)
    joules_per_flop_2024 = LLAMA3_GPU_HOURS * 3600.0 * LLAMA3_GPU_WATTS / LLAMA3_FLOP
    years = np.asarray(years, float)
    joules_per_flop = joules_per_flop_2024 * 2.0 ** (
        -(years - 2024.0) * 12.0 / flop_per_watt_doubling_months
    )
    return np.asarray(flop, float) * joules_per_flop / (run_days * 86_400.0)


def frontier_compute(years) -> np.ndarray:
    """Training FLOP if the largest run in the file (Llama 3, 2024) grew at Epoch's frontier rate,
    ×4 a year."""
    year0, flop0 = FRONTIER_START
    return flop0 * FRONTIER_RATE ** (np.asarray(years, float) - year0)


def _limit(series_name: str) -> Limit:
    return next(limit for limit in LIMITS if limit.series == series_name)


def analysis(
    first_year: int = FIRST_YEAR, *, horizon: int = HORIZON, level: float = LEVEL
) -> Report:
    """Fit the three trends, extrapolate them to ``horizon``, and find where they meet the limits.

    Metrics, for each series ``s`` in :data:`SERIES`: ``{s}_doubling_months`` and its interval
    ``{s}_doubling_low`` / ``{s}_doubling_high``, ``{s}_window_min`` / ``{s}_window_max`` (over the
    fit windows), ``{s}_points``; for tokens, ``tokens_cross_{early,central,late}`` (the years the
    band's top, the line and the band's bottom reach the central stock of text) and
    ``tokens_cross_stock_{low,high}`` (the line reaching the stock's low and high estimates);
    ``compute_2030`` (the line's value in 2030) with ``compute_2030_low`` / ``_high``; and
    ``power_gw_2030`` with ``power_cross_1gw`` and ``power_cross_5gw`` (years the line's implied
    power of one run reaches 1 and 5 GW, under :func:`run_power_watts`'s assumptions);
    ``flop_per_watt_doubling_months`` (from the hardware table, via chapter 2.8).
    """
    checks.positive_int("first_year", first_year)
    checks.in_range("first_year", first_year, 1987, 2024)
    checks.positive_int("horizon", horizon)
    if horizon <= 2025:
        raise ValueError(f"horizon: expected a year after 2025, got {horizon}")
    start = time.perf_counter()
    rows = milestones.load()
    trends = {s: fit_trend(series(s, rows, first_year), s, level) for s in SERIES}
    metrics: dict[str, float] = {}
    for s, trend in trends.items():
        low, high = trend.doubling_interval
        windows = window_doubling_months(series(s, rows, min(WINDOW_STARTS)))
        metrics |= {
            f"{s}_doubling_months": trend.doubling_months,
            f"{s}_doubling_low": low,
            f"{s}_doubling_high": high,
            f"{s}_window_min": min(windows.values()),
            f"{s}_window_max": max(windows.values()),
            f"{s}_points": float(trend.n),
        }
    nan = float("nan")
    stock = _limit("tokens")
    for curve in ("early", "central", "late"):
        metrics[f"tokens_cross_{curve}"] = (
            crossing_year(trends["tokens"], stock.central, curve=curve) or nan
        )
    metrics["tokens_cross_stock_low"] = crossing_year(trends["tokens"], stock.low) or nan
    metrics["tokens_cross_stock_high"] = crossing_year(trends["tokens"], stock.high) or nan
    compute = trends["compute"]
    metrics["compute_2030"] = float(compute.predict(2030.0))
    c_low, c_high = compute.band(2030.0)
    metrics["compute_2030_low"], metrics["compute_2030_high"] = float(c_low), float(c_high)
    metrics["compute_cross_epoch_2030"] = crossing_year(compute, _limit("compute").central) or nan
    per_watt = leverage.trends()["flop_per_watt"].doubling_months
    metrics["flop_per_watt_doubling_months"] = per_watt
    grid = np.arange(compute.last, horizon + 1e-9, 1.0 / 12)
    power = run_power_watts(compute.predict(grid), grid, flop_per_watt_doubling_months=per_watt)
    metrics["power_gw_2030"] = (
        float(
            run_power_watts(compute.predict(2030.0), 2030.0, flop_per_watt_doubling_months=per_watt)
        )
        / 1e9
    )
    frontier = frontier_compute(grid)
    frontier_power = run_power_watts(frontier, grid, flop_per_watt_doubling_months=per_watt)
    metrics["frontier_2030"] = float(frontier_compute(2030.0))
    metrics["frontier_power_gw_2030"] = (
        float(frontier_power[np.argmin(np.abs(grid - 2030.0))]) / 1e9
    )
    hit = np.nonzero(frontier >= _limit("compute").central)[0]
    metrics["frontier_cross_epoch_2030"] = float(grid[hit[0]]) if hit.size else nan
    for gw in (1, 5):
        for prefix, watts in (("", power), ("frontier_", frontier_power)):
            hit = np.nonzero(watts >= gw * 1e9)[0]
            metrics[f"{prefix}power_cross_{gw}gw"] = float(grid[hit[0]]) if hit.size else nan
    lines = _table(trends, metrics, level, first_year)
    fig = _figure(trends, metrics, horizon, per_watt)
    return Report(
        "6 Future — the trends extrapolated, against the limits",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _fmt_interval(low: float, high: float) -> str:
    return f"{low:.0f}–{high:.0f}" if math.isfinite(high) else f"{low:.0f}–∞"


def _year(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "not before the horizon"


def _table(
    trends: dict[str, Trend], m: dict[str, float], level: float, first_year: int
) -> list[str]:
    pct = f"{level:.0%}"
    labels = {
        "compute": "training compute",
        "parameters": "parameters",
        "tokens": "training tokens",
    }
    lines = [
        f"language models in the milestone file, {first_year} "
        "on; least-squares fits of log(value) on the year",
        f"{'series':<18} {'systems':>7} {'×/year':>7} "
        f"{'doubling':>9} {pct + ' interval':>15} {'fit windows':>12}",
    ]
    for s, trend in trends.items():
        lines.append(
            f"{labels[s]:<18} {trend.n:>7} {trend.factor_per_year:>7.2f} "
            f"{trend.doubling_months:>6.0f} mo "
            f"{_fmt_interval(m[f'{s}_doubling_low'], m[f'{s}_doubling_high']):>12} mo "
            f"{_fmt_interval(m[f'{s}_window_min'], m[f'{s}_window_max']):>9} mo"
        )
    lines.append(
        f"(fit windows: starting in {', '.join(map(str, WINDOW_STARTS))}, each to 2025; "
        "∞: that window's fit shows no growth)"
    )
    lines.append(
        "tokens reach the ~300T-token stock of public text in "
        f"{_year(m['tokens_cross_central'])} on the fitted line ({pct} band: "
        f"{_year(m['tokens_cross_early'])}–{_year(m['tokens_cross_late'])}); the "
        "stock's 100T–1,000T range: "
        f"{_year(m['tokens_cross_stock_low'])}–{_year(m['tokens_cross_stock_high'])}"
    )
    lines.append(
        f"compute on the fitted line in 2030: {m['compute_2030']:.1e} FLOP ({pct} band "
        f"{m['compute_2030_low']:.1e}–"
        f"{m['compute_2030_high']:.1e}); Epoch's 2e29 FLOP is reached in "
        f"{_year(m['compute_cross_epoch_2030'])}"
    )
    lines.append(
        f"power of one such run (assumptions on the page; FLOP per watt doubling every "
        f"{m['flop_per_watt_doubling_months']:.0f} months): {m['power_gw_2030']:.3f} GW in 2030; "
        f"1 GW: {_year(m['power_cross_1gw'])}"
    )
    lines.append(
        f"at ×{FRONTIER_RATE:.0f}/year from Llama 3 instead: {m['frontier_2030']:.1e} FLOP in "
        f"2030 (2e29 reached in {_year(m['frontier_cross_epoch_2030'])}), "
        f"{m['frontier_power_gw_2030']:.1f} GW for one run in 2030; 1 GW in "
        f"{_year(m['frontier_power_cross_1gw'])}, 5 GW in {_year(m['frontier_power_cross_5gw'])}"
    )
    return lines


def _draw_trend(ax, trend: Trend, horizon: int, color: str, label: str) -> None:
    years = np.array([y for y, _ in trend.points], float)
    values = np.array([v for _, v in trend.points])
    ax.scatter(years, values, s=20, color=color, zorder=3, label=f"{label} ({trend.n} systems)")
    fit_years = np.linspace(trend.first, trend.last, 20)
    ahead = np.linspace(trend.last, horizon, 60)
    ax.plot(fit_years, trend.predict(fit_years), color=color, lw=1.6)
    ax.plot(ahead, trend.predict(ahead), color=color, lw=1.6, ls="--",
            label=f"fit: ×{trend.factor_per_year:.1f}/year, extrapolated")  # fmt: skip
    low, high = trend.band(np.concatenate([fit_years, ahead]))
    ax.fill_between(np.concatenate([fit_years, ahead]), low, high, color=color, alpha=0.15, lw=0,
                    label=f"{trend.level:.0%} confidence band of the line")  # fmt: skip


def _limit_band(ax, limit: Limit, color: str, label: str) -> None:
    ax.axhspan(limit.low, limit.high, color=color, alpha=0.12, lw=0)
    ax.axhline(limit.central, color=color, lw=1.2, ls=":", label=label)


def _figure(trends: dict[str, Trend], m: dict[str, float], horizon: int, per_watt: float):
    fig, axes = plotting.figure(2, 2, height=7.6)
    (ax_tok, ax_cmp), (ax_par, ax_pow) = axes
    p = plotting.PALETTE

    _draw_trend(ax_tok, trends["tokens"], horizon, p[0], "training tokens")
    _limit_band(ax_tok, _limit("tokens"), p[3], "stock of public human text (Villalobos et al.)")
    if math.isfinite(m["tokens_cross_central"]):
        ax_tok.axvline(m["tokens_cross_central"], color=p[3], lw=0.8, ls="--")
    ax_tok.set(yscale="log", title="Data: training tokens", ylabel="tokens", ylim=(1e11, 1e17))

    _draw_trend(ax_cmp, trends["compute"], horizon, p[1], "training compute")
    epoch = _limit("compute")
    ax_cmp.errorbar(
        [epoch.year],
        [epoch.central],
        yerr=[[epoch.central - epoch.low], [epoch.high - epoch.central]],
        fmt="*",
        ms=11,
        color=p[3],
        capsize=3,
        label="feasible by 2030 (Epoch AI)",
    )
    frontier = np.linspace(FRONTIER_START[0], horizon, 30)
    ax_cmp.plot(frontier, frontier_compute(frontier), color=p[4], lw=1.2, ls="-.",
                label="×4/year from Llama 3 (Epoch's frontier rate)")  # fmt: skip
    ax_cmp.set(yscale="log", title="Compute: training FLOP", ylabel="FLOP", ylim=(1e22, 1e32))

    _draw_trend(ax_par, trends["parameters"], horizon, p[2], "parameters")
    ax_par.set(
        yscale="log", title="Size: parameters (all experts)", ylabel="parameters", ylim=(1e9, 1e15)
    )

    compute = trends["compute"]
    years = np.linspace(compute.last, horizon, 60)
    low, high = compute.band(years)

    def watts(c):
        return run_power_watts(c, years, flop_per_watt_doubling_months=per_watt)

    ax_pow.plot(
        years,
        watts(compute.predict(years)),
        color=p[1],
        ls="--",
        label="one run on the fitted compute line",
    )
    ax_pow.fill_between(years, watts(low), watts(high), color=p[1], alpha=0.15, lw=0)
    frontier_watts = run_power_watts(
        frontier_compute(frontier), frontier, flop_per_watt_doubling_months=per_watt
    )
    ax_pow.plot(frontier, frontier_watts, color=p[4], lw=1.2, ls="-.", label="one run at ×4/year")
    sites = _limit("power")
    for gw, text in (
        (sites.low, "1 GW site (announced for 2026)"),
        (sites.high, "5 GW site (announced, 'several years')"),
    ):
        ax_pow.axhline(gw, color=p[3], lw=1.0, ls=":")
        ax_pow.annotate(
            text, (2025.2, gw), xytext=(0, 3), textcoords="offset points", fontsize=8, color=p[3]
        )
    ax_pow.set(
        yscale="log",
        title=f"Energy: power of one {RUN_DAYS:.0f}-day run",
        ylabel="watts",
        ylim=(1e6, 1e11),
    )

    for ax in (ax_tok, ax_cmp, ax_par, ax_pow):
        ax.set(xlabel="year", xlim=(FIRST_YEAR - 0.5, horizon + 0.5))
        ax.legend(fontsize=8, loc="upper left")
    return fig
