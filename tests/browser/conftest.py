"""Serve the built site on 127.0.0.1 and visit every page of it in headless Chromium.

The suite needs three things and skips, saying how to get the missing one, when any is absent:

* a built site: the folder in ``IMPL_SITE_DIR`` (default ``site/``), built by ``mkdocs build``;
* Playwright for Python (``pip install playwright``) — only its driver: its own browser download
  needs the internet and is never used;
* Chromium from the system's package manager (``apt-get install chromium``), found on ``PATH``.

Each width gets one browser context and one tab, reused for every page: 1400 px in the light
theme, 390 px (a phone) in the dark theme, so every page is seen in both themes at no extra cost.
A visit records every request and console message and measures the page once; the tests then
read the records (`Visit`), so the checks add no page loads of their own.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (1400, 390)
THEME = {1400: "light", 390: "dark"}  # each width is seen in one theme: both themes are covered
HEIGHT = {1400: 900, 390: 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing but loopback can be resolved: a request to another host is still recorded (and
    # fails the suite), but never leaves the machine or waits on a network that is not there.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
INSTALL_CHROMIUM = "install Chromium from the system's package manager: apt-get install -y chromium"
# Pages that are not the site's own writing: the 404 page and generated views of source files.
EXCLUDED = re.compile(r"(^|/)404\.html$|(^|/)(_source|source|_src|src)/")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium over the built site (tests/browser)"
    )


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="session")
def site_dir() -> Path:
    site = Path(os.environ.get("IMPL_SITE_DIR", ROOT / "site")).resolve()
    if not (site / "index.html").exists():
        pytest.skip(
            f"no built site in {site}: build the site first: mkdocs build (or set IMPL_SITE_DIR)"
        )
    return site


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the built site as a URL path (``/papers/.../01-dnn/``), from its sitemap.

    Falls back to walking the folder when there is no sitemap. The 404 page and generated source
    views are left out.
    """
    paths: set[str] = set()
    sitemap = site / "sitemap.xml"
    if sitemap.exists():
        locs = ET.parse(sitemap).getroot().iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")
        resolved = set()
        for loc in locs:
            # absolute URLs under site_url, which may add a prefix (https://host/project/...):
            # drop leading folders until the path names a file of the built site
            path = urlsplit((loc.text or "").strip()).path
            parts = path.strip("/").split("/")
            for start in range(len(parts) + 1):
                candidate = "/".join(parts[start:])
                if local_file(site, "/" + candidate) is not None:
                    resolved.add(
                        "/" + candidate + ("/" if candidate and path.endswith("/") else "")
                    )
                    break
        paths = resolved
    if not paths:
        for html in site.rglob("*.html"):
            rel = html.relative_to(site).as_posix()
            paths.add("/" + (rel[: -len("index.html")] if rel.endswith("index.html") else rel))
    pages = []
    for path in paths:
        file = local_file(site, path)
        if file is None or EXCLUDED.search(file.relative_to(site).as_posix()):
            continue
        pages.append(path if path.endswith((".html", "/")) else path + "/")
    return sorted(set(pages))


def local_file(site: Path, url_path: str) -> Path | None:
    """The file that ``http.server`` would answer ``url_path`` with, or None."""
    path = (site / unquote(url_path).lstrip("/")).resolve()
    if site != path and site not in path.parents:
        return None
    if path.is_dir():
        path = path / "index.html"
    return path if path.is_file() else None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury pytest's output
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """``directory`` served on 127.0.0.1, on a port the system picks; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def server(site_dir) -> Iterator[str]:
    with serve(site_dir) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "Playwright for Python is not installed: pip install playwright "
            "(its browser download is not needed)"
        )
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium found on PATH: {INSTALL_CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """What one page did and measured at one width."""

    path: str
    width: int
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what MEASURE (below) returned
    tabs: dict = field(default_factory=dict)  # the NNX switch check, where the page has two pairs
    seconds: float = 0.0


class Crawler:
    """Visits every page once per width, lazily, and keeps the records for all the tests."""

    def __init__(self, browser, base: str, site: Path, notes: list[str] | None = None):
        self.browser, self.base, self.site = browser, base, site
        self.notes = [] if notes is None else notes  # one line per check, for the run's summary
        self.pages = site_pages(site)
        self._visits: dict[int, list[Visit]] = {}
        self.contexts: dict[int, object] = {}
        self.seconds = 0.0

    def local_file(self, url_path: str) -> Path | None:
        return local_file(self.site, url_path)

    def context(self, width: int):
        if width not in self.contexts:
            self.contexts[width] = self.browser.new_context(
                viewport={"width": width, "height": HEIGHT.get(width, 900)},
                color_scheme=THEME.get(width, "light"),
                service_workers="block",
            )
        return self.contexts[width]

    def visits(self, width: int) -> list[Visit]:
        if width not in self._visits:
            start = time.perf_counter()
            self._visits[width] = self._crawl(width)
            self.seconds += time.perf_counter() - start
        return self._visits[width]

    def _crawl(self, width: int) -> list[Visit]:
        context = self.context(width)
        page = context.new_page()
        current: list[Visit] = []

        def on_request(request):
            if current:
                current[-1].requests.append(request.url)

        def on_console(message):
            if current and message.type == "error":
                location = message.location or {}
                where = (
                    f" ({location.get('url', '')}:{location.get('lineNumber', '')})"
                    if location
                    else ""
                )
                current[-1].console_errors.append(f"console.error: {message.text}{where}")

        def on_page_error(error):
            if current:
                current[-1].console_errors.append(f"uncaught exception: {error}")

        context.on("request", on_request)  # the context sees the page's workers' requests too
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        visits = []
        try:
            for path in self.pages:
                visit = Visit(path, width)
                current.append(visit)
                start = time.perf_counter()
                page.goto(self.base + path, wait_until="load")
                visit.data = page.evaluate(MEASURE)
                if width == 1400:  # after the other measurements: it shows every tab's code at once
                    visit.data["code"] = page.evaluate(MEASURE_CODE)
                visit.tabs = switch_tabs(page, visit.data["tabSets"])
                visit.seconds = time.perf_counter() - start
                visits.append(visit)
            # let the last page's late requests land on it, not on nothing
            page.goto("about:blank")
        finally:
            context.remove_listener("request", on_request)
            page.close()
        return visits


@pytest.fixture(scope="session")
def crawler(site_dir, browser, server) -> Iterator[Crawler]:
    crawler = Crawler(browser, server, site_dir, notes=NOTES)
    start = time.perf_counter()
    yield crawler
    for context in crawler.contexts.values():
        context.close()
    visited = sum(len(v) for v in crawler._visits.values())
    if visited:
        widths = ", ".join(f"{w} px ({THEME.get(w, 'light')})" for w in crawler._visits)
        NOTES.insert(
            0,
            f"{len(crawler.pages)} pages x {len(crawler._visits)} widths [{widths}] = "
            f"{visited} visits in "
            f"{crawler.seconds:.0f} s ({crawler.seconds / visited:.2f} s a visit); "
            f"the suite took {time.perf_counter() - start:.0f} s",
        )


NOTES: list[str] = []  # what the checks measured, printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if NOTES:
        terminalreporter.section("the site in Chromium")
        for note in NOTES:
            terminalreporter.write_line(note)


# Run in the page after "load": links, figures' text sizes and colours, tab sets.
MEASURE = r"""
() => {
  const out = {links: [], figures: []};
  for (const a of document.querySelectorAll('a[href]')) {  // SVG links too: resolve the attribute
    const raw = a.getAttribute('href');
    let href = raw;
    try { href = new URL(raw, document.baseURI).href; } catch (e) {}
    // an anchor on this page
    const hash = decodeURIComponent(raw.startsWith('#') ? raw.slice(1) : '');
    const here = !hash || document.getElementById(hash) !== null
      || document.getElementsByName(hash).length > 0;
    out.links.push({href, raw, here, text: (a.textContent || '').trim().slice(0, 60)});
  }
  const bodyStyle = getComputedStyle(document.body);
  out.scheme = document.body.getAttribute('data-md-color-scheme');
  const typeset = document.querySelector('.md-typeset') || document.body;
  out.textColor = getComputedStyle(typeset).color;
  out.background = bodyStyle.backgroundColor;
  const figures = [...document.querySelectorAll('svg.figure')];
  figures.forEach((svg, index) => {
    const box = svg.getBoundingClientRect();
    const label = (svg.getAttribute('aria-label') || '').slice(0, 60);
    const figure = {index, width: box.width, label, texts: [], smallest: null};
    if (box.width > 0) {
      for (const text of svg.querySelectorAll('text')) {
        const style = getComputedStyle(text);
        const ctm = text.getScreenCTM();
        const scale = ctm ? Math.hypot(ctm.a, ctm.b) : 0;
        const px = parseFloat(style.fontSize) * scale;
        const content = (text.textContent || '').trim();
        if (!content) continue;
        const declared =
          (text.getAttribute('style') || '') + ' ' + (text.getAttribute('fill') || '');
        const ink = /currentColor/i.test(declared) || !/fill/i.test(declared);
        figure.texts.push({text: content.slice(0, 40), px, fill: style.fill, ink});
        if (figure.smallest === null || px < figure.smallest) figure.smallest = px;
      }
      // what currentColor resolves to inside the figure: the colour the ink takes
      figure.color = getComputedStyle(svg).color;
    }
    out.figures.push(figure);
  });
  out.tabSets = [...document.querySelectorAll('.tabbed-set')].map(set =>
    [...set.querySelectorAll(':scope > .tabbed-labels > label')]
      .map(l => (l.textContent || '').trim()));
  return out;
}
"""

# At 1400 px: every tab's block shown at once (same width as when chosen), then each code block
# measured: does any line run past the block's edge? Highlighted code (kind "code") is told apart
# from printed output (kind "output") by Pygments' token spans.
MEASURE_CODE = r"""
() => {
  const style = document.createElement('style');
  style.textContent =
    '.tabbed-set > .tabbed-content > .tabbed-block { display: block !important; }';
  document.head.appendChild(style);
  const blocks = [];
  for (const code of document.querySelectorAll('.highlight pre > code')) {
    const pre = code.parentElement;
    if (pre.closest('.md-nav, .md-search, .md-sidebar, .md-header, .md-footer')) continue;
    // Pygments marks the tokens of highlighted code with classed spans; printed output has none
    const kind = code.querySelector('span[class]') ? 'code' : 'output';
    if (code.getBoundingClientRect().width === 0) continue;
    const wide = Math.max(code.scrollWidth - code.clientWidth, pre.scrollWidth - pre.clientWidth);
    const lines = (code.textContent || '').replace(/\n$/, '').split('\n');
    // monospace: one character's width, measured in the block's own font
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(100);
    code.appendChild(probe);
    const charWidth = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const box = code.clientWidth ? code : pre;  // Material scrolls the <code>; plain HTML the <pre>
    const cs = getComputedStyle(box);
    const room = box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    const columns = Math.floor(room / charWidth + 0.01);
    const tooLong = lines.filter(line => line.replace(/\t/g, '    ').length > columns).length;
    blocks.push({kind, overflow: wide > 1, by: wide, lines: lines.length, tooLong, columns,
                 first: (lines.find(l => l.trim()) || '').trim().slice(0, 60)});
  }
  style.remove();
  return blocks;
}
"""


def switch_tabs(page, tab_sets: list[list[str]]) -> dict:
    """Where a page has two or more Linen/NNX tab sets: choose Linen once, then NNX once, and
    record which sets followed each choice (Material's ``content.tabs.link``).

    ``tab_sets`` holds the labels of each ``.tabbed-set`` of the page, in document order."""
    pairs = [
        (i, labels)
        for i, labels in enumerate(tab_sets)
        if any("NNX" in t for t in labels) and any("Linen" in t for t in labels)
    ]
    if len(pairs) < 2:
        return {}
    sets = page.locator(".tabbed-set")
    result: dict = {"sets": len(pairs)}
    for choice in ("Linen", "NNX"):
        first = (
            sets.nth(pairs[0][0]).locator(":scope > .tabbed-labels > label", has_text=choice).first
        )
        if not first.is_visible():
            return {"skipped": f"the first {choice} tab label is not visible"}
        first.click()
        page.wait_for_timeout(50)
        chosen = page.evaluate(
            """(choice) => [...document.querySelectorAll('.tabbed-set')].filter(set => {
                 const labels = [...set.querySelectorAll(':scope > .tabbed-labels > label')];
                 const has = (word) => labels.some(l => l.textContent.includes(word));
                 return has('NNX') && has('Linen');
               }).map(set => {
                 const inputs = [...set.querySelectorAll(':scope > input')];
                 const labels = [...set.querySelectorAll(':scope > .tabbed-labels > label')];
                 const checked = inputs.findIndex(i => i.checked);
                 return checked >= 0 && labels[checked] ? labels[checked].textContent.trim() : null;
               })""",
            choice,
        )
        result[choice] = chosen
    return result


@pytest.fixture
def crawl_folder(browser):
    """A function that visits every page of any folder of HTML (for testing the checks
    themselves)."""
    with contextlib.ExitStack() as stack:

        def crawl(folder: Path) -> Crawler:
            crawler = Crawler(browser, stack.enter_context(serve(folder)), folder)
            stack.callback(lambda: [c.close() for c in crawler.contexts.values()])
            return crawler

        yield crawl
