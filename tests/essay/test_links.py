import re

from impl.essay import links

TEXT = "the optimiser *Adam* (topic 2.8) and a *Mixture\nof experts* (topic 3.8)."


def test_relink_links_existing_pages_and_unlinks_missing_ones():
    on = links.relink(TEXT, "essays/02-constraints/01-data.md", exists=lambda page: True)
    assert "[Adam](../../papers/02-optimization-and-regularization/08-adam.md) (topic 2.8)" in on
    assert (
        "[Mixture of experts](../../papers/03-sequence-modeling/08-mixture-of-experts.md) (topic "
        "3.8)" in on
    )
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
            for target in re.findall(
                r"\]\(([^)#]*papers/[^)#]*\.md)\)", path.read_text(encoding="utf-8")
            ):
                page = posixpath.normpath(posixpath.join(posixpath.dirname(chapter.path), target))
                assert (ROOT / page).exists(), f"{chapter.path} links the missing page {page}"


# A topic's name written just before its own link reads twice on the page ("AlexNet — AlexNet
# (topic 1.3)"), since the link shows the title. Emphasis, years in brackets, dashes and commas
# between the two are ignored, and British and American spellings (-ise/-ize) count as the same.
_TOPIC_NAME = re.compile(
    r"(?:\*(?P<plain>[^*]+)\*|\[(?P<linked>[^\]]+)\]\([^)]*\))\s+\(topic \d+\.\d+\)"
)


def _normalised(text: str) -> str:
    text = re.sub(r"\(\d{4}\)", " ", re.sub(r"[*_]", "", text))  # emphasis, "(2012)"
    return re.sub(r"[\s—–,:;()-]+", " ", text).lower().replace("z", "s").strip()


def repeated_names(text: str) -> list[str]:
    """Titles of topic links that come right after the same name, e.g.
    ``AlexNet — *AlexNet* (topic 1.3)``."""
    found = []
    for m in _TOPIC_NAME.finditer(text):
        title = _normalised(m["plain"] or m["linked"])
        before = _normalised(text[max(0, m.start() - 80) : m.start()])
        if before == title or before.endswith(" " + title):
            found.append(m["plain"] or m["linked"])
    return found


def test_repeated_names_catches_a_name_before_its_own_link():
    assert repeated_names("In 2012, AlexNet — *AlexNet* (topic 1.3) — trained") == ["AlexNet"]
    assert repeated_names(
        "**layer normalisation** (2016) — [Layer normalization](x.md) (topic 2.6)"
    )
    assert repeated_names("OpenAI's **CLIP**\n(2021) — *CLIP* (topic 5.5) — learned") == ["CLIP"]
    assert repeated_names("In 2012, *AlexNet* (topic 1.3) trained") == []
    assert repeated_names("a convolutional network — *CNN* (topic 1.2)") == []
    assert repeated_names("the big Transformer — *Transformer* (topic 4.1)") == ["Transformer"]


def test_chapters_never_name_a_topic_twice_in_a_row():
    from impl.catalog import CHAPTERS, ROOT

    for chapter in CHAPTERS:
        path = ROOT / chapter.path
        if path.exists():
            repeats = repeated_names(path.read_text(encoding="utf-8"))
            assert not repeats, (
                f"{chapter.path}: name written twice before its topic link: {repeats}"
            )
