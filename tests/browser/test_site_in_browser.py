"""The built site in a real browser (issue #19): every page at 1400 px (light) and 390 px (dark).

Fails on any request to a host other than 127.0.0.1, any console error or uncaught exception,
any link to a local page or anchor that does not exist, figure text rendered under 10 px at
1400 px, figures whose text does not follow the theme; checks that choosing "NNX" once switches
every Linen/NNX pair of a page and that the search finds each topic by its name. Code
lines wider than their block at 1400 px are measured and reported (an expected failure until
issue #19's item 1 reformats the code to a shorter line length).

Run after a build: ``mkdocs build && python -m pytest tests/browser -m browser`` (``IMPL_SITE_DIR``
points at another built folder). The per-page records come from one visit per page and width
(see ``conftest.py``); each check below reads them and names every page that fails, and
`test_checks_catch_a_broken_page` shows that each check does catch what it looks for.
"""

from __future__ import annotations

import html
import re
import time
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from impl.catalog import TOPICS

pytestmark = pytest.mark.browser
WIDTHS = (1400, 390)  # as in conftest.py: 1400 px in the light theme, 390 px in the dark
MIN_FIGURE_TEXT_PX = 10.0
MIN_CONTRAST = 3.0  # WCAG's minimum for large text and graphics: figure text must reach it
every_width = pytest.mark.parametrize("width", WIDTHS, ids=[f"{w}px" for w in WIDTHS])

Problems = dict[str, list[str]]  # page -> what is wrong there


def report(problems: Problems, what: str, limit: int = 60) -> str:
    lines = [f"{sum(map(len, problems.values()))} {what} on {len(problems)} page(s):"]
    for path, items in sorted(problems.items()):
        lines += [f"  {path}: {item}" for item in items[:8]]
        if len(items) > 8:
            lines.append(f"  {path}: ... and {len(items) - 8} more")
        if len(lines) > limit:
            lines.append("  ...")
            break
    return "\n".join(lines)


# ---- the checks: each takes the records of a crawl and returns the problems, page by page ----


def requests_to_other_hosts(visits) -> Problems:
    problems: Problems = {}
    for visit in visits:
        for url in visit.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
                continue
            problems.setdefault(visit.path, []).append(url)
    return problems


def console_errors(visits) -> Problems:
    return {v.path: v.console_errors for v in visits if v.console_errors}


@cache
def ids_in(file: Path) -> frozenset[str]:
    text = file.read_text(encoding="utf-8", errors="replace")
    return frozenset(
        html.unescape(i) for i in re.findall(r"""\b(?:id|name)=["']?([^"'\s>]+)""", text)
    )


def links_that_go_nowhere(crawler, visits) -> tuple[int, Problems]:
    """Links to a page of the site that reach no file of the built site, or no element of it."""
    problems: Problems = {}
    checked = 0
    here = urlsplit(crawler.base).netloc
    for visit in visits:
        for link in visit.data["links"]:
            target = urlsplit(link["href"])
            if target.scheme not in ("http", "https") or target.netloc != here:
                continue  # a link to another site is a reference for the reader, not a request
            checked += 1
            file = crawler.local_file(target.path)
            where = f"{link['raw']!r} ({link['text']!r})"
            if file is None:
                problems.setdefault(visit.path, []).append(f"{where}: no such page")
            elif not link["here"]:  # "#name" on this page: looked up in the page itself
                problems.setdefault(visit.path, []).append(
                    f"{where}: no element #{link['raw'][1:]}"
                )
            elif (
                target.fragment
                and not link["raw"].startswith("#")
                and unquote(target.fragment) not in ids_in(file)
            ):
                problems.setdefault(visit.path, []).append(
                    f"{where}: no element #{target.fragment}"
                )
    return checked, problems


def wide_code(visits, kind: str = "code") -> tuple[str, Problems]:
    """Code blocks of ``kind`` ("code": highlighted source; "output": printed results) that
    scroll sideways (measured at 1400 px, every tab shown)."""
    blocks = wide = lines = long_lines = 0
    problems: Problems = {}
    for visit in visits:
        for block in visit.data.get("code", []):
            if block["kind"] != kind:
                continue
            blocks += 1
            lines += block["lines"]
            long_lines += block["tooLong"]
            if block["overflow"]:
                wide += 1
                problems.setdefault(visit.path, []).append(
                    f"{block['tooLong']} of {block['lines']} lines wider than its "
                    f"{block['columns']} columns "
                    f"(block starting {block['first']!r})"
                )
    summary = (
        f"{wide} of {blocks} {kind} blocks on {len(problems)} of "
        f"{len(visits)} pages scroll sideways; {long_lines} of {lines} lines "
        f"({100 * long_lines / max(lines, 1):.1f}%) are wider than their block"
    )
    return summary, problems


def small_figure_text(visits) -> tuple[str, Problems]:
    problems: Problems = {}
    figures = texts = small_texts = 0
    for visit in visits:
        for figure in visit.data["figures"]:
            if not figure["texts"]:
                continue
            figures += 1
            texts += len(figure["texts"])
            small = [t for t in figure["texts"] if t["px"] < MIN_FIGURE_TEXT_PX - 0.05]
            small_texts += len(small)
            if small:
                smallest = min(small, key=lambda t: t["px"])
                problems.setdefault(visit.path, []).append(
                    f"figure {figure['index'] + 1} ({figure['width']:.0f} px wide): "
                    f"{len(small)} of {len(figure['texts'])} texts under {MIN_FIGURE_TEXT_PX:g} "
                    f"px, smallest {smallest['px']:.1f} px ({smallest['text']!r})"
                )
    summary = (
        f"{small_texts} of {texts} figure texts in {sum(map(len, problems.values()))} "
        f"of {figures} figures render under {MIN_FIGURE_TEXT_PX:g} px"
    )
    return summary, problems


def rgb(color: str) -> tuple[float, ...]:
    numbers = [float(x) for x in re.findall(r"[\d.]+", color)]
    if len(numbers) < 3:
        raise ValueError(f"not an rgb() colour: {color!r}")
    return (*numbers[:3], numbers[3] if len(numbers) > 3 else 1.0)


def luminance(r: float, g: float, b: float) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(color: str, background: str) -> float:
    """WCAG contrast ratio of ``color`` (its alpha blended) over an opaque ``background``."""
    *fg, alpha = rgb(color)
    bg = rgb(background)[:3]
    seen = [alpha * f + (1 - alpha) * b for f, b in zip(fg, bg, strict=True)]
    high, low = sorted((luminance(*seen), luminance(*bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def figures_off_theme(visits, scheme: str) -> tuple[int, Problems]:
    """Pages not in ``scheme``, figure ink not in the page's text colour, figure text too faint."""
    problems: Problems = {}
    figures = 0
    for visit in visits:
        data = visit.data
        if data["scheme"] != scheme:
            problems.setdefault(visit.path, []).append(
                f"colour scheme {data['scheme']!r}, expected {scheme!r}"
            )
        for figure in data["figures"]:
            if not figure["texts"]:
                continue
            figures += 1
            name = f"figure {figure['index'] + 1}"
            off = [t for t in figure["texts"] if t["ink"] and t["fill"] != data["textColor"]]
            if off:
                problems.setdefault(visit.path, []).append(
                    f"{name}: {len(off)} texts drawn in {off[0]['fill']} ({off[0]['text']!r}), "
                    f"not the page's text colour {data['textColor']}"
                )
            if rgb(data["background"])[3] == 0:
                continue  # a transparent body: no background colour to measure against
            faint = [
                t for t in figure["texts"] if contrast(t["fill"], data["background"]) < MIN_CONTRAST
            ]
            if faint:
                worst = min(faint, key=lambda t: contrast(t["fill"], data["background"]))
                problems.setdefault(visit.path, []).append(
                    f"{name}: {len(faint)} texts under {MIN_CONTRAST:g}:1 contrast on "
                    f"{data['background']}, "
                    f"e.g. {worst['text']!r} in {worst['fill']} "
                    f"({contrast(worst['fill'], data['background']):.2f}:1)"
                )
    return figures, problems


def tabs_that_did_not_follow(visits) -> tuple[int, list[str], Problems]:
    checked, skipped, problems = 0, [], {}
    for visit in visits:
        if not visit.tabs:
            continue
        if "skipped" in visit.tabs:
            skipped.append(visit.path)
            continue
        checked += 1
        for choice in ("Linen", "NNX"):
            chosen = visit.tabs[choice]
            wrong = [i for i, label in enumerate(chosen) if label is None or choice not in label]
            if wrong:
                problems.setdefault(visit.path, []).append(
                    f"after choosing {choice} once, tab sets {[i + 1 for i in wrong]} "
                    f"of {len(chosen)} show {[chosen[i] for i in wrong]}"
                )
    return checked, skipped, problems


# ---- the tests ----


def test_the_site_has_pages(crawler):
    assert len(crawler.pages) >= 3, crawler.pages
    assert "/" in crawler.pages, "the home page is missing from the pages visited"


@every_width
def test_no_request_to_another_host(crawler, width):
    visits = crawler.visits(width)
    problems = requests_to_other_hosts(visits)
    crawler.notes.append(
        f"requests at {width} px: {sum(len(v.requests) for v in visits)} recorded, "
        f"{sum(map(len, problems.values()))} to another host"
    )
    assert not problems, report(problems, "requests to another host")


@every_width
def test_no_console_error(crawler, width):
    problems = console_errors(crawler.visits(width))
    crawler.notes.append(
        f"console errors at {width} px: {sum(map(len, problems.values()))} on {len(problems)} pages"
    )
    assert not problems, report(problems, "console errors")


def test_every_local_link_goes_somewhere(crawler):
    checked, problems = links_that_go_nowhere(crawler, crawler.visits(1400))
    crawler.notes.append(
        f"local links: {checked} checked, {sum(map(len, problems.values()))} go nowhere"
    )
    assert checked > 0, "no link to a page of the site was found"
    assert not problems, report(problems, f"of {checked} local links go nowhere")


def test_code_lines_fit_their_block_at_1400px(crawler):
    summary, problems = wide_code(crawler.visits(1400))
    crawler.notes.append(f"code at 1400 px: {summary}")
    crawler.notes.append(
        "printed output at 1400 px (reported, not asserted): "
        f"{wide_code(crawler.visits(1400), 'output')[0]}"
    )
    assert " of 0 code blocks" not in summary, "no code block was found"
    assert not problems, summary + "\n" + report(problems, "code blocks wider than their column")


def test_figure_text_is_at_least_10px_at_1400px(crawler):
    summary, problems = small_figure_text(crawler.visits(1400))
    crawler.notes.append(f"figure text at 1400 px: {summary}")
    assert not problems, summary + "\n" + report(problems, "figures with text under 10 px")


@every_width
def test_figures_follow_the_theme(crawler, width):
    # the light and the dark theme (conftest.THEME)
    scheme = "default" if width == 1400 else "slate"
    figures, problems = figures_off_theme(crawler.visits(width), scheme)
    crawler.notes.append(
        f"theme {scheme!r} at {width} px: {figures} figures, "
        f"{sum(map(len, problems.values()))} problems"
    )
    assert figures > 0, "no figure with text was found on any page"
    assert not problems, report(problems, f"figure problems in the {scheme!r} theme")


@every_width
def test_choosing_nnx_once_switches_every_pair(crawler, width):
    checked, skipped, problems = tabs_that_did_not_follow(crawler.visits(width))
    crawler.notes.append(
        f"Linen/NNX at {width} px: {checked} pages with two or more pairs "
        f"switched, {len(skipped)} with the labels hidden, {len(problems)} failed"
    )
    if not checked and skipped:
        pytest.skip(
            f"at {width} px no page shows its Linen/NNX "
            f"tab labels ({len(skipped)} pages with pairs)"
        )
    assert checked > 0, "no page has two or more Linen/NNX tab sets"
    assert not problems, report(problems, "tab sets that did not follow the choice")


def test_search_finds_each_topic_by_its_name(crawler):
    topics = [
        t for t in TOPICS if crawler.local_file("/" + Path(t.page).with_suffix("").as_posix() + "/")
    ]
    assert topics, "no topic page in the built site"
    page = crawler.context(1400).new_page()
    missing = []
    try:
        page.goto(crawler.base + "/", wait_until="load")
        box = page.locator("input.md-search__input")
        for topic in topics:
            want = "/" + Path(topic.page).with_suffix("").as_posix() + "/"
            box.fill(topic.title)
            box.press("End")  # Material reads the query on key-up
            results: list[str] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                results = page.eval_on_selector_all(
                    ".md-search-result__list > li > a[href]", "links => links.map(a => a.href)"
                )
                if any(urlsplit(href).path == want for href in results):
                    break
                page.wait_for_timeout(100)
            else:
                shown = [urlsplit(h).path for h in results[:5]]
                missing.append(
                    f"{topic.number} {topic.title!r}: {want} not among the results {shown}"
                )
            box.fill("")
            box.press("End")
            page.wait_for_function(
                "() => !document.querySelector('.md-search-result__list > li')", timeout=10_000
            )  # the previous query's results are gone: they cannot answer for the next one
    finally:
        page.close()
    crawler.notes.append(
        f"search: {len(topics) - len(missing)} of {len(topics)} topics found by name"
    )
    assert not missing, f"the search misses {len(missing)} of {len(topics)} topics:\n" + "\n".join(
        missing
    )


BROKEN_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="http://example.com/tracker.js"></script></head>
<body data-md-color-scheme="default" style="background: rgb(255, 255, 255)">
<div class="md-typeset" style="width: 300px; color: rgb(0, 0, 0)">
<a href="missing/">a topic that is not there</a> <a href="#nowhere">an anchor that is not there</a>
<a href="#here" id="here">fine</a> <a href="https://example.org/">a reference, fine</a>
<div class="highlight"><pre><code><span class="n">short</span> = 1
a_line_far_too_long_for_a_block_three_hundred_pixels_wide = some_function(argument_one, arg_2)
</code></pre></div>
<div class="dl-figure"><svg class="figure" width="100" height="50" viewBox="0 0 1000 500">
<text x="10" y="200" style="font: 10px sans-serif; fill: currentColor">tiny</text>
<text x="10" y="400" style="font: 100px sans-serif; fill: #ffffff">white on white</text></svg></div>
<script>console.error("boom")</script></div></body></html>
"""


def test_checks_catch_a_broken_page(crawl_folder, tmp_path):
    (tmp_path / "index.html").write_text(BROKEN_PAGE)
    crawler = crawl_folder(tmp_path)
    assert crawler.pages == ["/"]
    visits = crawler.visits(1400)
    assert list(requests_to_other_hosts(visits)["/"]) == ["http://example.com/tracker.js"]
    assert any("boom" in e for e in console_errors(visits)["/"])
    checked, dead = links_that_go_nowhere(crawler, visits)
    assert checked == 3 and len(dead["/"]) == 2, dead
    summary, wide = wide_code(visits)
    assert summary.startswith("1 of 1 code blocks") and "1 of 2 lines" in wide["/"][0], summary
    summary, small = small_figure_text(visits)
    assert "1 of 2 figure texts" in summary and "1.0 px" in small["/"][0], summary
    figures, off = figures_off_theme(visits, "default")
    assert (
        figures == 1 and "under 3:1 contrast" in off["/"][0] and "'white on white'" in off["/"][0]
    ), off
