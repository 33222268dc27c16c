import importlib.util

import pytest

from impl import catalog


def test_catalog_has_36_unique_topics_in_order():
    assert len(catalog.TOPICS) == 36
    assert len({t.number for t in catalog.TOPICS}) == 36
    assert len({t.name for t in catalog.TOPICS}) == 36
    assert all(t.name.isidentifier() for t in catalog.TOPICS)
    per_section = [sum(t.section is s for t in catalog.TOPICS) for s in catalog.SECTIONS]
    assert per_section == [4, 8, 8, 10, 6]


def test_implemented_topics_have_page_module_and_tests():
    implemented = [t for t in catalog.TOPICS if t.implemented]
    assert implemented, "at least topic 1.1 exists"
    for t in implemented:
        assert (catalog.ROOT / t.test_file).exists(), t.test_file
        assert callable(getattr(t.load_experiment(), "experiment", None)), (
            f"{t.experiment_module_name}.experiment"
        )
        assert not hasattr(t.load(), "experiment"), (
            f"{t.module_name}: the experiment belongs in {t.experiment_module_name}"
        )


def test_every_page_and_module_on_disk_is_in_the_catalog():
    pages = {
        p.relative_to(catalog.ROOT).as_posix() for p in (catalog.ROOT / "papers").rglob("*.md")
    }
    known = {t.page for t in catalog.TOPICS} | {"papers/index.md"}
    assert pages <= known, sorted(pages - known)
    for t in catalog.TOPICS:
        if (catalog.ROOT / t.page).exists():
            assert importlib.util.find_spec(t.module_name), (
                f"page {t.page} has no module {t.module_name}"
            )
            assert importlib.util.find_spec(t.experiment_module_name), (
                f"page {t.page} has no {t.experiment_module_name}"
            )


def test_topic_years_are_plausible_and_follow_the_papers():
    for t in catalog.TOPICS:
        assert 1980 <= t.year <= 2026, t
        assert str(t.year) in t.papers, (
            f"{t.number}: year {t.year} is not among its papers ({t.papers})"
        )


@pytest.mark.parametrize("query", ["1.1", "dnn", "DNN", " dnn "])
def test_find_topic(query):
    assert catalog.find_topic(query).number == "1.1"


def test_find_topic_rejects_unknown_names():
    with pytest.raises(ValueError, match="topic: expected a topic number or name"):
        catalog.find_topic("perceptron")


def test_site_map_links_existing_pages_relative_to_the_page():
    text = catalog.site_map("index.md")
    assert "[DNN](papers/01-deep-neural-networks/01-dnn.md)" in text
    assert "CNN *(coming)*" in text or "[CNN](" in text
    nested = catalog.site_map("papers/index.md")
    assert "[DNN](01-deep-neural-networks/01-dnn.md)" in nested
