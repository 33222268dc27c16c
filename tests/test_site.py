"""The built site: strict build, math rendered to MathML, and nothing fetched from another host."""

import re
from pathlib import Path

import pytest

import site_build

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = re.compile(
    r"""(?:<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\b"""
    r"""src\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:<link\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*["']?[^>]*>)"""
    r"""|(?:@import\s+(?:url\()?["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)""",
    re.IGNORECASE,
)


def external_assets(site: Path) -> list[str]:
    """Every reference to an asset on another host in the built HTML and CSS."""
    found = []
    for path in site.rglob("*"):
        if path.suffix not in {".html", ".css"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".html":  # code shown on a page (the source view) is text, not an asset
            text = re.sub(r"<pre\b.*?</pre>", "", text, flags=re.DOTALL | re.IGNORECASE)
        for match in EXTERNAL.finditer(text):
            snippet = match.group(0)
            if snippet.lower().startswith("<link") and not re.search(
                r"rel=[\"']?(stylesheet|preload|icon|modulepreload|manifest)", snippet
            ):
                continue  # a plain hyperlink-like <link rel="canonical"> is not an asset
            found.append(f"{path.relative_to(site)}: {snippet[:120]}")
    return found


def test_detector_catches_external_assets(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example.com/x.js"></script><a href="https://arxiv.org">ok</a>'
    )
    (tmp_path / "b.css").write_text("@font-face { src: url(https://fonts.example.com/f.woff2) }")
    (tmp_path / "c.html").write_text('<link rel="stylesheet" href="//fonts.example.com/css">')
    (tmp_path / "d.html").write_text(
        '<pre><code>"url(https://fonts.example.com/f.woff2)"</code></pre>'
    )
    assert len(external_assets(tmp_path)) == 3


@pytest.fixture(scope="module")
def built_site() -> Path:
    return site_build.built_site()


@pytest.mark.site
def test_site_references_no_external_asset(built_site):
    assert external_assets(built_site) == []


@pytest.mark.site
def test_site_renders_math_as_mathml_and_has_every_page(built_site):
    page = (built_site / "papers/01-deep-neural-networks/01-dnn/index.html").read_text()
    assert page.count("<math") >= 5 and "arithmatex" not in page
    assert "8&lt;" not in page and "--8<--" not in page  # every snippet was included
    assert "ACTIVATIONS" in page and "NnxMLP" in page and "LinenMLP" in page
    home = (built_site / "index.html").read_text()
    assert "papers/01-deep-neural-networks/01-dnn/" in home  # the map links the topic
    for md in list((ROOT / "essays").rglob("*.md")) + list((ROOT / "papers").rglob("*.md")):
        rel = md.relative_to(ROOT).with_suffix("")
        target = built_site / (rel.parent if rel.name == "index" else rel) / "index.html"
        assert target.exists(), target


@pytest.mark.site
def test_site_serves_its_source_with_line_anchors_out_of_search(built_site):
    sources = [
        p
        for d in ("impl", "tests")
        for p in (ROOT / d).rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    for path in sources:
        page = built_site / "source" / path.relative_to(ROOT).as_posix() / "index.html"
        assert page.exists(), page
    dnn = (built_site / "source/impl/deep_networks/dnn.py/index.html").read_text()
    assert (
        'id="L1"' in dnn and 'href="#L1"' in dnn and "papers/01-deep-neural-networks/01-dnn/" in dnn
    )
    index = (built_site / "search/search_index.json").read_text()
    assert '"location":"source/' not in index.replace(" ", "")


@pytest.mark.site
def test_site_links_snippets_paths_and_topics_to_their_pages(built_site):
    page = (built_site / "papers/01-deep-neural-networks/01-dnn/index.html").read_text()
    links = re.findall(r'<p class="source-link"><a href="([^"]+)"', page)
    assert links and all(
        link.startswith("../../../source/impl/") and "#L" in link for link in links
    )
    assert "Builds on, built upon by" in page and "Computed from the code" in page
    cnn = (built_site / "papers/01-deep-neural-networks/02-cnn/index.html").read_text()
    assert re.search(r'<a class="topic-link" href="../01-dnn/">topic 1\.1</a>', cnn)
    home = (built_site / "index.html").read_text()
    assert re.search(r'<div class="history-graph"><svg [^>]*class="history-svg"', home)
    assert 'data-md-component="source"' not in home  # no repository-statistics widget


@pytest.mark.site
def test_site_numbers_footnotes_in_reading_order_and_links_their_sources(built_site):
    size = (built_site / "essays/02-constraints/02-size/index.html").read_text()
    numbers = [
        int(n)
        for n in re.findall(
            r'<sup id="fnref:[^"]+"><a class="footnote-ref" href="#fn:[^"]+">(\d+)</a>', size
        )
    ]
    assert numbers == list(range(1, len(numbers) + 1))  # 1, 2, 3, … as the reader meets them
    assert '<sup class="footnote-sep" aria-hidden="true">,</sup>' in size
    assert 'href="https://arxiv.org/abs/' in size.split('class="footnote"')[-1]
