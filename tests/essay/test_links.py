from impl.essay import links

TEXT = "the optimiser *Adam* (topic 2.8) and a *Mixture\nof experts* (topic 3.8)."


def test_relink_links_existing_pages_and_unlinks_missing_ones():
    on = links.relink(TEXT, "essays/02-constraints/01-data.md", exists=lambda page: True)
    assert "[Adam](../../papers/02-optimization-and-regularization/08-adam.md) (topic 2.8)" in on
    assert "[Mixture of experts](../../papers/03-sequence-modeling/08-mixture-of-experts.md) (topic 3.8)" in on
    off = links.relink(on, "essays/02-constraints/01-data.md", exists=lambda page: False)
    assert "*Adam* (topic 2.8)" in off and "*Mixture of experts* (topic 3.8)" in off


def test_chapters_link_only_pages_that_exist():
    """Every Part 2 link in a chapter points at a page that exists.

    The other direction — a page written after the chapter — is fixed by running
    ``python -m impl.essay.links``.
    """
    import posixpath
    import re

    from impl.catalog import CHAPTERS, ROOT

    for chapter in CHAPTERS:
        path = ROOT / chapter.path
        if path.exists():
            for target in re.findall(r"\]\(([^)#]*papers/[^)#]*\.md)\)", path.read_text(encoding="utf-8")):
                page = posixpath.normpath(posixpath.join(posixpath.dirname(chapter.path), target))
                assert (ROOT / page).exists(), f"{chapter.path} links the missing page {page}"
