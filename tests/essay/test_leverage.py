import pytest

from impl.essay import leverage


def test_decompose_splits_doublings_between_chips_and_spending():
    d = leverage.decompose(1.0, 0.25)
    assert d["chip_share"] == pytest.approx(0.25)
    assert d["spending_per_year"] == pytest.approx(0.75)
    assert d["compute_factor_per_year"] == pytest.approx(
        d["chip_factor_per_year"] * d["spending_factor_per_year"]
    )


@pytest.mark.parametrize(
    ("name", "args"), [("compute_per_year", (0.0, 0.1)), ("chip_per_year", (1.0, 500.0))]
)
def test_decompose_rejects_bad_rates(name, args):
    with pytest.raises(ValueError, match=name):
        leverage.decompose(*args)


def test_chip_counts_parse_the_milestones():
    counts = {system: n for _, n, system in leverage.chip_counts()}
    assert counts["AlexNet"] == 2 and counts["Llama 3 405B"] == 16384
    assert "Megatron-Turing NLG" not in counts  # counted in servers, not chips


def test_compute_points_start_at_first_year():
    points = leverage.compute_points(2019)
    assert points and min(y for y, _ in points) >= 2019 and all(flop > 1e18 for _, flop in points)
    with pytest.raises(ValueError, match="first_year"):
        leverage.compute_points(1900)


def test_trends_grow_and_compute_outpaces_chips():
    fits = leverage.trends()
    assert set(fits) == {
        "compute",
        "chips_per_run",
        "flop_per_dollar",
        "flop_per_watt",
        "peak_per_chip",
    }
    assert all(fit.per_year > 0 for fit in fits.values())
    assert fits["compute"].per_year > fits["flop_per_dollar"].per_year


@pytest.mark.parametrize("first_year", [2000, 2024, 2019.5])
def test_analysis_rejects_bad_first_year(first_year):
    with pytest.raises((ValueError, TypeError), match="first_year"):
        leverage.analysis(first_year)


def test_analysis_reports_shares_and_doubling_times():
    report = leverage.analysis()
    m = report.metrics
    for key in ("compute", "chips_per_run", "flop_per_dollar", "flop_per_watt", "peak_per_chip"):
        assert 1 < m[f"{key}_doubling_months"] < 120, key
    assert 0 < m["chip_share_dollar"] < m["chip_share_watt"] < 1
    assert m["spending_factor_per_year"] > 1
    assert m["compute_factor_per_year"] > 1
    assert report.figure is not None and "spending" in str(report)
