"""The milestone file behind Part 1's figures: well-formed, sourced, plausible; and its helpers."""

import csv
import math

import pytest

from impl.essay import milestones as m


@pytest.fixture(scope="module")
def rows():
    return m.load()


def test_file_loads_with_every_column(rows):
    assert len(rows) >= 25
    with m.PATH.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == m.COLUMNS


def test_types(rows):
    for row in rows:
        assert isinstance(row.system, str) and row.system
        assert isinstance(row.year, int)
        for column in (
            "parameters",
            "active_parameters",
            "training_compute_flop",
            "training_data_size",
        ):
            value = getattr(row, column)
            assert value is None or (isinstance(value, float) and math.isfinite(value)), (
                row.system,
                column,
            )


def test_values_in_plausible_ranges(rows):
    for row in rows:
        assert 1986 <= row.year <= 2026, row.system
        if row.parameters is not None:
            assert 1e2 <= row.parameters <= 1e13, row.system
        if row.training_compute_flop is not None:
            assert 1e9 <= row.training_compute_flop <= 1e27, row.system
        if row.active_parameters is not None:
            assert row.parameters is not None and row.active_parameters <= row.parameters, (
                row.system
            )


def test_units_come_from_the_allowed_set(rows):
    for row in rows:
        if row.training_data_size is not None:
            assert row.training_data_unit in m.UNITS, row.system
        else:
            assert row.training_data_unit == "", row.system


def test_every_figure_has_a_source(rows):
    for row in rows:
        for column, source in m.SOURCE_OF.items():
            if getattr(row, column) not in (None, ""):
                assert getattr(row, source).strip(), (row.system, source)
    assert m.sourced_figures(rows) >= 50


def test_no_duplicate_systems(rows):
    names = [row.system.lower() for row in rows]
    assert len(names) == len(set(names))


def test_years_are_in_order_of_publication(rows):
    years = [row.year for row in rows]
    assert years == sorted(years)


def test_reported_compute_agrees_with_6nd_where_both_exist(rows):
    # GPT-3 and Llama 3 report compute, parameters and tokens: the rule of thumb is within 5%.
    both = [r for r in rows if r.training_compute_flop is not None and m.compute_6nd(r) is not None]
    assert len(both) >= 2
    for row in both:
        assert abs(m.compute_6nd(row) / row.training_compute_flop - 1) < 0.05, row.system


def test_compute_6nd_needs_tokens(rows):
    by_name = {r.system: r for r in rows}
    assert m.compute_6nd(by_name["AlexNet"]) is None  # images, not tokens
    gpt3 = by_name["GPT-3"]
    assert m.compute_6nd(gpt3) == pytest.approx(6 * 175e9 * 300e9)
    deepseek = by_name["DeepSeek-V3"]  # a mixture of experts: the active parameters count
    assert m.compute_6nd(deepseek) == pytest.approx(6 * 37e9 * 14.8e12)


def _write(tmp_path, rows):
    path = tmp_path / "milestones.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=m.COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in m.COLUMNS})
    return path


GOOD = {
    "system": "Toy",
    "year": "2000",
    "organization": "Lab",
    "parameters": "1000",
    "source_parameters": "A paper",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"year": "1950"}, "year"),
        ({"year": "twenty"}, "year"),
        ({"parameters": "1e20"}, "parameters"),
        ({"parameters": "many"}, "parameters"),
        ({"source_parameters": ""}, "source_parameters"),
        ({"training_data_size": "100"}, "training_data_unit"),
        (
            {"training_data_size": "100", "training_data_unit": "bananas", "source_data": "x"},
            "training_data_unit",
        ),
        ({"training_compute_flop": "1e20"}, "source_compute"),
        ({"hardware": "GPUs"}, "source_hardware"),
        ({"active_parameters": "2000"}, "active_parameters"),
        ({"organization": ""}, "organization"),
    ],
)
def test_bad_rows_are_rejected_naming_the_column(tmp_path, change, message):
    path = _write(tmp_path, [{**GOOD, **change}])
    with pytest.raises(ValueError, match=message):
        m.load(path)


def test_duplicates_are_rejected(tmp_path):
    path = _write(tmp_path, [GOOD, {**GOOD, "system": "toy"}])
    with pytest.raises(ValueError, match="duplicate"):
        m.load(path)


def test_a_good_row_loads(tmp_path):
    (row,) = m.load(_write(tmp_path, [GOOD]))
    assert row.parameters == 1000.0 and row.training_compute_flop is None


def test_doubling_time_of_an_exact_exponential():
    years = [2000, 2001, 2002, 2003]
    assert m.doubling_time_months(years, [1, 2, 4, 8]) == pytest.approx(12.0)
    assert m.doubling_time_months(years, [1, 4, 16, 64]) == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("years", "values"), [([2000], [1]), ([2000, 2000], [1, 2]), ([2000, 2001], [0, 1])]
)
def test_doubling_time_rejects_bad_input(years, values):
    with pytest.raises(ValueError):
        m.doubling_time_months(years, values)


def test_fit_eras_skips_sparse_eras_and_spans_the_data():
    points = [(1990, 1.0), (1992, 4.0), (2015, 1.0), (2016, 2.0), (2017, 4.0)]
    fits = m.fit_eras(points)
    assert [f.era for f in fits] == ["deep learning"]  # 1986-2011 has only two points
    (fit,) = fits
    assert (fit.first, fit.last, fit.points) == (2015, 2017, 3)
    assert fit.doubling_months == pytest.approx(12.0)


def test_figures_draw(rows):
    for draw in (m.parameters_figure, m.compute_figure, m.data_figure):
        fig = draw(rows)
        assert fig.axes and fig.axes[0].collections
