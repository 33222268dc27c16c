"""The investments file behind chapter 3: well-formed, sourced, no invented conversions; and its
figure."""

import csv
import math

import pytest

from impl.essay import investments as inv


@pytest.fixture(scope="module")
def rows():
    return inv.load()


def test_file_loads_with_every_column(rows):
    assert len(rows) >= 25
    with inv.PATH.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == inv.COLUMNS


def test_types_kinds_and_dates(rows):
    for row in rows:
        assert row.kind in inv.KINDS, row
        assert row.who and row.what, row
        assert 1950 <= row.when.year <= 2026
        assert row.amount_usd is None or (
            isinstance(row.amount_usd, float) and math.isfinite(row.amount_usd)
        )
        assert row.amount_usd is None or row.amount_usd > 0


def test_every_row_has_a_source_and_every_dollar_figure_its_wording(rows):
    for row in rows:
        assert row.source.strip(), row
        if row.amount_usd is not None:
            assert "$" in row.amount_as_reported, row  # a dollar figure was reported in dollars
    assert inv.sourced_figures(rows) >= 20


def test_no_duplicates_and_in_date_order(rows):
    keys = [(r.date, r.who.lower(), r.what.lower()) for r in rows]
    assert len(keys) == len(set(keys))
    dates = [r.when for r in rows]
    assert dates == sorted(dates)


def test_every_kind_is_used(rows):
    assert {r.kind for r in rows} == set(inv.KINDS)


def test_known_rows(rows):
    deepmind = next(r for r in rows if "DeepMind" in r.what)
    assert (deepmind.date, deepmind.kind, deepmind.amount_usd) == ("2014-01-26", "acquisition", 4e8)
    microsoft = [r.amount_usd for r in rows if r.who == "Microsoft" and r.kind == "investment"]
    assert microsoft == [1e9, 1e10]
    deepseek = next(r for r in rows if "DeepSeek-V3" in r.what)
    # GPU-hours x the report's $2 rental price
    assert deepseek.amount_usd == pytest.approx(2.788e6 * 2)


def test_non_dollar_amounts_are_not_converted(rows):
    for row in rows:
        if any(c in row.amount_as_reported for c in "€£¥") or "C$" in row.amount_as_reported:
            assert row.amount_usd is None, row
        if "yuan" in row.amount_as_reported:
            assert row.amount_usd is None, row


def test_dates_to_fractional_years():
    def row(date):
        return inv.Investment(date, "x", "y", "investment", None, "", "s", "", "")

    assert row("2014-01-01").year == pytest.approx(2014.0)
    assert 2014.03 < row("2014-01").year < 2014.05  # mid-month
    assert row("1983").year == pytest.approx(1983.5, abs=0.01)  # mid-year


def _write(tmp_path, rows):
    path = tmp_path / "investments.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=inv.COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in inv.COLUMNS})
    return path


GOOD = {
    "date": "2019-07-22",
    "who": "A company",
    "what": "a lab",
    "kind": "investment",
    "amount_usd": "1000000",
    "amount_as_reported": "$1 million",
    "source": "A press release",
}


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"date": "22/07/2019"}, "date"),
        ({"date": "2019-13"}, "date"),
        ({"date": "2019-02-30"}, "date"),
        ({"date": "1900-01-01"}, "date"),
        ({"who": ""}, "who"),
        ({"what": ""}, "what"),
        ({"kind": "gift"}, "kind"),
        ({"amount_usd": "lots"}, "amount_usd"),
        ({"amount_usd": "-5"}, "amount_usd"),
        ({"amount_usd": "0"}, "amount_usd"),
        ({"amount_usd": "1e20"}, "amount_usd"),
        ({"amount_as_reported": ""}, "amount_as_reported"),
        ({"source": ""}, "source"),
    ],
)
def test_bad_rows_are_rejected_naming_the_row_and_column(tmp_path, change, column):
    path = _write(tmp_path, [GOOD, {**GOOD, "date": "2020-01", "what": "another lab", **change}])
    with pytest.raises(ValueError, match=rf"line 3 \(.*\), {column}"):
        inv.load(path)


def test_duplicates_are_rejected(tmp_path):
    path = _write(tmp_path, [GOOD, {**GOOD, "who": "a COMPANY", "what": "A Lab"}])
    with pytest.raises(ValueError, match=r"line 3 .*duplicate of line 2"):
        inv.load(path)


def test_a_missing_column_is_rejected(tmp_path):
    path = tmp_path / "investments.csv"
    path.write_text("date,who\n2019,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        inv.load(path)


def test_good_rows_load_with_and_without_an_amount(tmp_path):
    undisclosed = {**GOOD, "what": "undisclosed", "amount_usd": "", "amount_as_reported": ""}
    first, second = inv.load(_write(tmp_path, [GOOD, undisclosed]))
    assert first.amount_usd == 1e6 and second.amount_usd is None
    assert inv.sourced_figures([first, second]) == 1


def test_era_summary_covers_every_row(rows):
    summary = inv.era_summary(rows)
    assert [s.narrative for s in summary] == [e[0] for e in inv.ERAS]
    assert sum(s.events for s in summary) == len(rows)
    last = summary[-1]
    assert last.largest is not None and last.largest.amount_usd == max(
        r.amount_usd or 0 for r in rows
    )


def test_figure_draws(rows):
    fig = inv.figure(rows)
    main, strip = fig.axes[:2]
    assert main.get_yscale() == "log" and main.collections and strip.collections
