import math

import numpy as np
import pytest

from impl.essay import future, milestones


def test_fit_recovers_an_exact_exponential_and_its_doubling_time():
    points = [(y, 1e20 * 2.0 ** (y - 2019)) for y in range(2019, 2026)]  # doubles every 12 months
    trend = future.fit_trend(points)
    assert trend.doubling_months == pytest.approx(12.0)
    assert trend.factor_per_year == pytest.approx(2.0)
    assert trend.predict(2030.0) == pytest.approx(1e20 * 2.0**11, rel=1e-9)
    low, high = trend.doubling_interval  # a perfect fit has no uncertainty
    assert low == pytest.approx(12.0) and high == pytest.approx(12.0)


def test_the_interval_contains_the_estimate_and_the_band_widens_away_from_the_data():
    rng = np.random.default_rng(0)
    points = [
        (y, 10 ** (0.3 * (y - 2019) + 22 + rng.normal(0, 0.3)))
        for y in range(2019, 2026)
        for _ in range(2)
    ]
    trend = future.fit_trend(points, level=0.9)
    low, high = trend.doubling_interval
    assert low < trend.doubling_months < high
    near_low, near_high = trend.band(2022.0)
    far_low, far_high = trend.band(2034.0)
    assert far_high / far_low > near_high / near_low > 1.0
    assert near_low < trend.predict(2022.0) < near_high


def test_crossing_year_solves_the_line_and_orders_the_band():
    trend = future.fit_trend([(y, 10.0 ** (y - 2019)) for y in range(2019, 2025)])  # ×10 a year
    assert future.crossing_year(trend, 1e8) == pytest.approx(2027.0, abs=1 / 24)
    assert future.crossing_year(trend, 1e300, horizon=2040) is None
    noisy = future.fit_trend(
        [(2019, 1.0), (2020, 20.0), (2021, 50.0), (2022, 2000.0), (2023, 3000.0)]
    )
    early, central, late = (
        future.crossing_year(noisy, 1e9, curve=c) for c in ("early", "central", "late")
    )
    assert early <= central <= late


def test_window_fits_and_series_use_the_milestone_file():
    rows = milestones.load()
    tokens = future.series("tokens", rows)
    assert tokens and all(y >= future.FIRST_YEAR for y, _ in tokens)
    assert all(v > 1e10 for _, v in tokens)  # counted in tokens, not gigabytes
    windows = future.window_doubling_months(future.series("compute", rows, 2018))
    assert set(windows) <= set(future.WINDOW_STARTS) and all(m > 0 for m in windows.values())


def test_run_power_is_llama3s_at_the_start_and_scales_with_compute():
    watts = future.run_power_watts(
        future.LLAMA3_FLOP, 2024.0, flop_per_watt_doubling_months=24.0, run_days=90.0
    )
    joules = future.LLAMA3_GPU_HOURS * 3600 * future.LLAMA3_GPU_WATTS
    assert float(watts) == pytest.approx(joules / (90 * 86_400))
    later = future.run_power_watts(future.LLAMA3_FLOP, 2026.0, flop_per_watt_doubling_months=24.0)
    # chips twice as efficient two years later
    assert float(later) == pytest.approx(float(watts) / 2)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: future.fit_trend([(2020, 1.0), (2021, 2.0)]), "points"),
        (lambda: future.fit_trend([(2020, 1.0), (2021, -2.0), (2022, 3.0)]), "points"),
        (lambda: future.fit_trend([(2020, 1.0), (2021, 2.0), (2022, 3.0)], level=1.0), "level"),
        (lambda: future.series("energy"), "name"),
        (lambda: future.window_doubling_months([(2019, 1.0)], starts=(2019,)), "starts"),
        (
            lambda: future.run_power_watts(1e25, 2025, flop_per_watt_doubling_months=0.0),
            "flop_per_watt",
        ),
        (lambda: future.analysis(horizon=2020), "horizon"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_analysis_reports_every_trend_with_its_interval_and_a_figure():
    report = future.analysis()
    m = report.metrics
    for s in future.SERIES:
        assert m[f"{s}_doubling_low"] <= m[f"{s}_doubling_months"] <= m[f"{s}_doubling_high"]
        assert m[f"{s}_points"] >= 3
    assert m["tokens_cross_early"] <= m["tokens_cross_central"] <= m["tokens_cross_late"]
    assert m["compute_2030_low"] < m["compute_2030"] < m["compute_2030_high"]
    assert m["frontier_2030"] == pytest.approx(future.LLAMA3_FLOP * 4.0**6)
    assert math.isfinite(m["frontier_power_cross_1gw"])
    assert report.figure is not None and len(report.figure.axes) == 4
