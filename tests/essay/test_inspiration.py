"""The inspiration file behind chapter 4: one row per catalog topic, fixed categories, sourced; its
figure."""

import csv

import pytest

from impl.catalog import TOPICS
from impl.essay import inspiration as insp


@pytest.fixture(scope="module")
def rows():
    return insp.load()


def test_every_catalog_topic_exactly_once_in_catalog_order(rows):
    assert [r.topic for r in rows] == [t.number for t in TOPICS]
    with insp.PATH.open(newline="", encoding="utf-8") as handle:
        assert tuple(next(csv.reader(handle))) == insp.COLUMNS


def test_categories_from_the_fixed_set_and_sources_present(rows):
    for row in rows:
        assert row.category in insp.CATEGORIES, row.topic
        assert row.also == "" or (row.also in insp.CATEGORIES and row.also != row.category), (
            row.topic
        )
        assert row.paper and row.statement and row.where, row.topic


def test_quotations_are_marked_and_balanced(rows):
    for row in rows:
        for text in (row.statement, row.notes):
            assert text.count('"') % 2 == 0, row.topic


def test_year_and_title_come_from_the_catalog(rows):
    by_topic = {r.topic: r for r in rows}
    assert by_topic["5.3"].year == 2020 and by_topic["5.3"].title == "Diffusion"
    assert by_topic["1.1"].year == 1986


def test_counts_add_up(rows):
    primary = insp.counts(rows)
    assert list(primary) == list(insp.CATEGORIES)
    assert sum(primary.values()) == len(TOPICS)
    second = insp.counts(rows, "also")
    assert sum(second.values()) == sum(1 for r in rows if r.also)
    by_era = insp.counts_by_era(rows)
    assert sum(sum(c.values()) for c in by_era.values()) == len(TOPICS)


def test_what_the_chapter_says_of_the_file(rows):
    # Chapter 4 states these: keep it honest if the file changes.
    by_topic = {r.topic: r for r in rows}
    assert by_topic["5.3"].category == "physics"
    assert by_topic["2.4"].category == "other biology"
    assert by_topic["4.2"].category == "psychology & linguistics"
    assert by_topic["2.2"].also == "neuroscience"
    assert insp.counts(rows)["earlier ML work"] > len(TOPICS) / 2


def _write(tmp_path, rows):
    path = tmp_path / "inspiration.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=insp.COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def _raw(rows):
    return [{c: getattr(r, c) for c in insp.COLUMNS} for r in rows]


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"topic": "9.9"}, "topic"),
        ({"topic": ""}, "topic"),
        ({"category": "astrology"}, "category"),
        ({"category": ""}, "category"),
        ({"also": "astrology"}, "also"),
        ({"also": "earlier ML work"}, "also"),  # the same as the category
        ({"also": "none stated"}, "also"),
        ({"paper": ""}, "paper"),
        ({"statement": ""}, "statement"),
        ({"where": ""}, "where"),
    ],
)
def test_bad_rows_are_rejected_naming_the_row_and_column(tmp_path, rows, change, column):
    raw = _raw(rows)
    raw[3] = {**raw[3], **change}  # topic 1.4, an "earlier ML work" row, is line 5 of the file
    with pytest.raises(ValueError, match=rf"line 5 \(topic .*\), {column}"):
        insp.load(_write(tmp_path, raw))


def test_a_duplicate_topic_is_rejected(tmp_path, rows):
    raw = _raw(rows)
    raw[5] = {**raw[5], "topic": raw[4]["topic"]}
    with pytest.raises(ValueError, match=r"line 7 \(topic 2.1\), topic: duplicate of line 6"):
        insp.load(_write(tmp_path, raw))


def test_a_missing_topic_is_rejected(tmp_path, rows):
    raw = _raw(rows)
    del raw[10]
    with pytest.raises(ValueError, match=r"missing 2\.7"):
        insp.load(_write(tmp_path, raw))


def test_none_stated_is_allowed(tmp_path, rows):
    raw = _raw(rows)
    raw[0] = {
        **raw[0],
        "category": "none stated",
        "also": "",
        "statement": "no source of inspiration stated",
    }
    loaded = insp.load(_write(tmp_path, raw))
    assert insp.counts(loaded)["none stated"] == 1


def test_figure_draws(rows):
    fig = insp.figure(rows)
    dots, bars = fig.axes[:2]
    assert len(dots.collections) >= len(TOPICS) and bars.patches
