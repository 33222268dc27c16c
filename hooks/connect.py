"""MkDocs hook: a connected site — the code one click from every page, and the pages from each
other.

* **Source view.** Every ``impl/**/*.py`` and ``tests/**/*.py`` becomes a page of its own at
  ``source/<path>/`` (``source/impl/deep_networks/dnn.py/``): the file highlighted by Pygments,
  one anchor per line (``#L12``) and one per snippet section (``#L12-L40`` highlights the lines),
  with links to the file's topic, its tests and the modules it imports or is imported by. The
  pages are out of the search index and reached from one "Source code" entry in the navigation,
  so the code reads offline, from the site itself.
* **Snippets.** Under every code block that includes source (``--8<-- "impl/x.py:core"``) goes a
  line "source: impl/x.py, lines a–b" linking to those lines.
* **Paths and topics.** In prose, every ``impl/...py`` or ``tests/...py`` path (or dotted
  ``impl.x.y`` module in inline code) links to its source page, and every "topic n.m" links to
  topic n.m's page where it exists — never inside code, math, headings or another link.
* **History.** Each Part 2 page ends with "Builds on / Built upon by", computed from its model
  file's imports (`impl.history`); ``{{ history_graph }}`` on a page becomes the whole graph as an
  inline SVG whose nodes link to the topics.
* **Footnotes.** An arXiv id, a DOI or a bare URL in a footnote becomes a link; adjacent footnote
  markers are separated by a comma (``¹,²`` rather than ``¹²``).
"""

from __future__ import annotations

import html
import logging
import posixpath
import re
from collections import Counter
from pathlib import Path

from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("impl", "tests")
SOURCE_ROOT = "source"
log = logging.getLogger("mkdocs.plugins.connect")
STATS: Counter = Counter()

# ---------------------------------------------------------------------------------------------
# Source pages


def source_paths(root: Path = ROOT) -> list[str]:
    """Every Python file under ``impl/`` and ``tests/``, as repository paths."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found.append(path.relative_to(root).as_posix())
    return found


def source_uri(path: str) -> str:
    """The generated page of a source file: ``impl/x.py`` -> ``source/impl/x.py.md`` (URL
    ``source/impl/x.py/``)."""
    return f"{SOURCE_ROOT}/{path}.md"


_MARKER = re.compile(r"-{1,}8<-{1,}\s*\[(start|end):([\w-]+)\]")


def sections(text: str) -> dict[str, tuple[int, int]]:
    """Snippet sections of a file: name -> (first line, last line) of the included code, 1-based."""
    starts: dict[str, int] = {}
    found: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, name in _MARKER.findall(line):
            if kind == "start" and name not in found:
                starts.setdefault(name, number)
            elif kind == "end" and name in starts and name not in found:
                found[name] = (starts[name] + 1, number - 1)
    return found


def snippet_lines(spec: str, root: Path = ROOT) -> tuple[str, int, int] | None:
    """``"impl/x.py:core"`` -> ``("impl/x.py", first, last)``; also ``impl/x.py``,
    ``impl/x.py:3:9``.

    None when the file is not under ``impl/`` or ``tests/`` or the section is unknown.
    """
    path, _, rest = spec.partition(":")
    if not path.startswith(tuple(f"{d}/" for d in SOURCE_DIRS)) or not (root / path).is_file():
        return None
    text = (root / path).read_text(encoding="utf-8")
    if not rest:
        return path, 1, len(text.splitlines())
    if re.fullmatch(r"\d+(:\d+)?", rest):
        first, _, last = rest.partition(":")
        return path, int(first), int(last or len(text.splitlines()))
    span = sections(text).get(rest)
    return (path, *span) if span else None


def _lines_anchor(first: int, last: int) -> str:
    return f"L{first}" if first == last else f"L{first}-L{last}"


def render_source(text: str) -> tuple[str, set[str]]:
    """The file as highlighted HTML with an anchor per line (``L12``) and per section (``L12-L40``).

    Returns (html, ids). The lines are the ``<span>`` children of ``<code>``, so one CSS rule per
    section highlights its lines when its anchor is the target.
    """
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    body = highlight(text, PythonLexer(stripnl=False, ensurenl=True), HtmlFormatter(nowrap=True))
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    spans = sections(text)
    starts: dict[int, list[str]] = {}
    rules, ids = [], set()
    for first, last in sorted(set(spans.values())):
        anchor = _lines_anchor(first, last)
        starts.setdefault(first, []).append(anchor)
        ids.add(anchor)
        rules.append(
            f".source-view:has(#{anchor}:target) "
            f"code>span:nth-of-type(n+{first}):nth-of-type(-n+{last})"
            "{background:var(--connect-highlight)}"
        )
    out = []
    for number, line in enumerate(lines, start=1):
        for anchor in starts.get(number, ()):
            out.append(f'<a class="source-range" id="{anchor}"></a>')
        out.append(
            f'<span id="L{number}"><a class="source-lineno" '
            f'href="#L{number}">{number}</a>{line}\n</span>'
        )
        ids.add(f"L{number}")
    style = f"<style>{''.join(rules)}</style>" if rules else ""
    block = (
        f'<div class="source-view highlight">{style}<pre><code>{"".join(out)}</code></pre></div>'
    )
    return block, ids


def _roles(root: Path = ROOT) -> dict[str, tuple[object, str]]:
    """source path -> (topic, "model" | "experiment" | "tests")."""
    from impl.catalog import TOPICS

    roles = {}
    for t in TOPICS:
        package = f"impl/{t.section.package}/{t.name}"
        roles[f"{package}.py"] = (t, "model")
        roles[f"{package}_experiment.py"] = (t, "experiment")
        roles[t.test_file] = (t, "tests")
    return roles


def _module_paths(root: Path = ROOT) -> dict[str, str]:
    """dotted module -> repository path, for every file under ``impl/``."""
    from impl.history import module_name

    return {
        module_name(p): p.relative_to(root).as_posix()
        for p in sorted((root / "impl").rglob("*.py"))
    }


def source_page(path: str, root: Path = ROOT) -> str:
    """The Markdown of one source page: title, links to its topic, tests and imports, the code
    placeholder."""
    from impl.history import import_graph

    here = posixpath.dirname(source_uri(path))

    def to_source(other: str, text: str | None = None) -> str:
        return f"[`{text or other}`]({posixpath.relpath(source_uri(other), here)})"

    def to_page(page: str, text: str) -> str:
        return f"[{text}]({posixpath.relpath(page, here)})"

    lines = [
        "---",
        f"title: {path}",
        "search:",
        "  exclude: true",
        "hide:",
        "  - navigation",
        "  - toc",
        "---",
        "",
        f"# `{path}`",
        "",
    ]
    facts = []
    role = _roles(root).get(path)
    if role:
        topic, kind = role
        if (root / topic.page).exists():
            facts.append(
                f"- **Topic:** {to_page(topic.page, f'{topic.number} {topic.title}')} "
                f"— this is its {kind}"
            )
        package = f"impl/{topic.section.package}/{topic.name}"
        siblings = {
            "model": f"{package}.py",
            "experiment": f"{package}_experiment.py",
            "tests": topic.test_file,
        }
        others = [
            f"{k} {to_source(p)}" for k, p in siblings.items() if k != kind and (root / p).exists()
        ]
        if others:
            facts.append(f"- **Also:** {', '.join(others)}")
    modules = _module_paths(root)
    if path.startswith("impl/"):
        by_path = {p: m for m, p in modules.items()}
        graph = import_graph()
        me = by_path[path]
        imported = sorted(graph.get(me, ()))
        users = sorted(m for m, deps in graph.items() if me in deps)
        if imported:
            facts.append("- **Imports:** " + ", ".join(to_source(modules[m], m) for m in imported))
        if users:
            facts.append(
                f"- **Imported by** ({len(users)}): "
                + ", ".join(to_source(modules[m], m) for m in users)
            )
    index = posixpath.relpath(f"{SOURCE_ROOT}/index.md", here)
    facts.append(f"- [All source files]({index}) · each line number is a link to its line (`#L12`)")
    lines += [*facts, ""]
    lines += [f'<div class="source-view-placeholder" data-source="{html.escape(path)}"></div>', ""]
    return "\n".join(lines)


def source_index(paths: list[str]) -> str:
    """The Markdown of ``source/index.md``: every source file, grouped by folder."""
    lines = [
        "---",
        "title: Source code",
        "search:",
        "  exclude: true",
        "---",
        "",
        "# Source code",
        "",
        "Every file of the implementation (`impl/`) and of its tests (`tests/`), as the site "
        "was built from them. Each line has an anchor; code included on a page links here.",
        "",
    ]
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(posixpath.dirname(path), []).append(path)
    for folder in sorted(groups):
        lines += [f"## `{folder}/`", ""]
        for path in groups[folder]:
            lines.append(f"- [`{posixpath.basename(path)}`]({path}.md)")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Markdown transformations

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})")
_INCLUDE = re.compile(r"""^[ \t]*-{1,}8<-{1,}[ \t]+(["'])(?P<spec>[^"']+)\1[ \t]*$""")


def link_snippets(markdown: str, page_uri: str, root: Path = ROOT) -> tuple[str, int]:
    """Add "source: path, lines a–b" under every fenced block that includes a file of ``impl/`` or
    ``tests/``."""
    out, count = [], 0
    fence: tuple[str, str] | None = None
    includes: list[tuple[str, int, int]] = []
    here = posixpath.dirname(page_uri)
    for line in markdown.split("\n"):
        out.append(line)
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, includes = (match["indent"], match["fence"]), []
            continue
        include = _INCLUDE.match(line)
        if include:
            found = snippet_lines(include["spec"], root)
            if found:
                includes.append(found)
        elif match and match["fence"].startswith(fence[1]) and line.strip() == match["fence"]:
            indent = fence[0]
            fence = None
            if includes:
                links = []
                for path, first, last in includes:
                    target = posixpath.relpath(source_uri(path), here)
                    span = f"line {first}" if first == last else f"lines {first}–{last}"
                    links.append(
                        f"[source: `{path}`, {span}]({target}#{_lines_anchor(first, last)})"
                    )
                    count += 1
                out += ["", indent + " · ".join(links), indent + "{: .source-link }", ""]
    return "\n".join(out), count


_LINK_OR_CODE = re.compile(r"(`+)[^`]*?\1|\[[^\]]*\]\([^)]*\)|<https?://[^>]*>|\]\([^)]*\)")
_ARXIV = re.compile(
    r"(?:\barXiv:\s?|\barxiv\.org/abs/)"
    r"(?P<id>\d{4}\.\d{4,5}(?:v\d+)?|[a-z-]+(?:\.[A-Z]{2})?/\d{7})",
    re.IGNORECASE,
)
_DOI = re.compile(r"(?:\bdoi:\s?|\bdoi\.org/)?\b(?P<id>10\.\d{4,9}/[^\s\])>\"']+)", re.IGNORECASE)
_URL = re.compile(r"\bhttps?://[^\s<>\])\"']+")


def _strip_tail(value: str) -> tuple[str, str]:
    stripped = value.rstrip(".,;:")
    return stripped, value[len(stripped) :]


def link_references(text: str) -> str:
    """Link the arXiv ids, DOIs and URLs in one piece of Markdown that are not linked yet."""

    def plain(segment: str) -> str:
        def url(m: re.Match) -> str:
            value, tail = _strip_tail(m.group(0))
            return f"<{value}>{tail}"

        def arxiv(m: re.Match) -> str:
            return f"[{m.group(0)}](https://arxiv.org/abs/{m['id']})"

        def doi(m: re.Match) -> str:
            value, tail = _strip_tail(m["id"])
            return f"[{m.group(0)[: len(m.group(0)) - len(tail)]}](https://doi.org/{value}){tail}"

        pieces = re.split(r"(\bhttps?://[^\s<>\])\"']+)", segment)
        for i, piece in enumerate(pieces):
            if i % 2:
                pieces[i] = url(_URL.match(piece))
            else:
                piece = _ARXIV.sub(arxiv, piece)
                parts = re.split(r"(\[[^\]]*\]\([^)]*\))", piece)  # the arXiv links just made
                pieces[i] = "".join(p if j % 2 else _DOI.sub(doi, p) for j, p in enumerate(parts))
        return "".join(pieces)

    out, last = [], 0
    for m in _LINK_OR_CODE.finditer(text):
        out += [plain(text[last : m.start()]), m.group(0)]
        last = m.end()
    out.append(plain(text[last:]))
    return "".join(out)


_FOOTNOTE = re.compile(r"^\[\^[^\]]+\]:")


def link_footnotes(markdown: str) -> tuple[str, int]:
    """Link the sources named in footnote definitions (and their indented continuation lines)."""
    lines = markdown.split("\n")
    count, inside, changed = 0, False, False
    for i, line in enumerate(lines):
        if _FOOTNOTE.match(line):
            count += changed
            inside, changed = True, False
        elif inside and line.strip() and not line.startswith(("    ", "\t")):
            count += changed
            inside, changed = False, False
        if inside and line.strip():
            new = link_references(line)
            if new != line:
                lines[i], changed = new, True
    count += changed
    return "\n".join(lines), count


def history_section(number: str, page_uri: str, root: Path = ROOT) -> str:
    """ "Builds on / Built upon by" for topic ``number``, from the imports of its model file."""
    from impl.catalog import TOPICS
    from impl.history import builds_on, built_upon_by, topic_edges

    topics = {t.number: t for t in TOPICS}
    me = topics[number]
    here = posixpath.dirname(page_uri)

    def names(numbers) -> str:
        found = [topics[n] for n in numbers if (root / topics[n].page).exists()]
        return ", ".join(
            f"[{t.number} {t.title}]({posixpath.relpath(t.page, here)})" for t in found
        )

    model = f"impl/{me.section.package}/{me.name}.py"
    source = f"[`{model}`]({posixpath.relpath(source_uri(model), here)})"
    uses = [n for n in topic_edges("experiment")[number] if n not in builds_on(number)]
    lines = [
        "## Builds on, built upon by",
        "",
        "Computed from the code when the site was built: the topics whose model "
        f"files {source} imports, and the topics whose model files import it.",
        "",
        "- **Builds on:** "
        f"{names(builds_on(number)) or 'no earlier topic — only the shared pieces'}",
        f"- **Built upon by:** {names(built_upon_by(number)) or 'no later topic yet'}",
    ]
    if uses:
        lines.append(f"- **Its experiment also uses:** {names(uses)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML transformations

_SKIP = {
    "a",
    "pre",
    "code",
    "script",
    "style",
    "math",
    "svg",
    "textarea",
    "button",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
}
_TAG = re.compile(r"(<[^>]*>)")
_TAG_NAME = re.compile(r"<\s*(/?)\s*([a-zA-Z][\w-]*)")
_TOPIC = re.compile(
    r"\b(?P<word>[Tt]opics?)\s+"
    r"(?P<list>\d+\.\d+(?:(?:,\s*|,?\s+and\s+|\s*[–-]\s*|\s+or\s+)\d+\.\d+)*)(?![\d.]\d)"
)
_NUMBER = re.compile(r"\d+\.\d+")
_PATH = re.compile(r"\b(?:impl|tests)/[\w/-]+\.py\b")
_MODULE = re.compile(r"impl(?:\.\w+)+")


def link_html(
    content: str,
    page_url: str,
    topic_urls: dict[str, str],
    source_urls: dict[str, str],
    modules: dict[str, str],
) -> tuple[str, Counter]:
    """Link topic mentions and source paths in the prose of one rendered page.

    ``topic_urls``: topic number -> site URL of its page (only pages that exist); ``source_urls``:
    repository path -> site URL of its source page; ``modules``: dotted module -> repository path.
    Text inside links, code blocks, inline code (except a code span that is exactly a path or
    module), math, SVG and headings is left alone; a page never links to itself.
    """
    counts: Counter = Counter()
    tokens = _TAG.split(content)
    stack: list[str] = []
    previous_href: str | None = None  # href of the link that closed just before this text

    def rel(url: str) -> str:
        return get_relative_url(url, page_url)

    def topic_sub(text: str, after_href: str | None) -> str:
        def one(m: re.Match) -> str:
            numbers = _NUMBER.findall(m["list"])
            if not any(n in topic_urls and topic_urls[n] != page_url for n in numbers):
                return m.group(0)
            if (
                after_href
                and m.start() <= 3
                and len(numbers) == 1
                and _same(rel(topic_urls.get(numbers[0], "")), after_href)
            ):
                return m.group(0)  # "[Adam](...) (topic 2.8)": already linked
            if len(numbers) == 1:
                counts["topic"] += 1
                return (
                    f'<a class="topic-link" href="{rel(topic_urls[numbers[0]])}">{m.group(0)}</a>'
                )

            def number(n: re.Match) -> str:
                url = topic_urls.get(n.group(0))
                if not url or url == page_url:
                    return n.group(0)
                counts["topic"] += 1
                return f'<a class="topic-link" href="{rel(url)}">{n.group(0)}</a>'

            return m["word"] + m.group(0)[len(m["word"]) :].replace(
                m["list"], _NUMBER.sub(number, m["list"])
            )

        return _TOPIC.sub(one, text)

    def path_sub(text: str) -> str:
        def one(m: re.Match) -> str:
            url = source_urls.get(m.group(0))
            if not url or url == page_url:
                return m.group(0)
            counts["path"] += 1
            return f'<a class="source-path" href="{rel(url)}">{m.group(0)}</a>'

        return _PATH.sub(one, text)

    out: list[str] = []
    open_href: str | None = None  # href of the open top-level link
    i = 0
    while i < len(tokens):
        token = tokens[i]
        m = _TAG_NAME.match(token) if token.startswith("<") else None
        if m:
            closing, name = m.group(1) == "/", m.group(2).lower()
            if (
                name == "code"
                and not closing
                and not stack
                and i + 2 < len(tokens)
                and tokens[i + 2] == "</code>"
            ):
                target = _code_target(html.unescape(tokens[i + 1]).strip(), source_urls, modules)
                if target and target != page_url:
                    counts["path"] += 1
                    out.append(
                        '<a class="source-path" '
                        f'href="{rel(target)}">{token}{tokens[i + 1]}</code></a>'
                    )
                    previous_href = None
                    i += 3
                    continue
            previous_href = None
            if name in _SKIP:
                if closing:
                    if name in stack:
                        while stack and stack.pop() != name:
                            pass
                    if name == "a" and not stack:
                        previous_href, open_href = open_href, None
                elif not token.rstrip().endswith("/>"):
                    if name == "a" and not stack:
                        href = re.search(r'href="([^"]*)"', token)
                        open_href = href.group(1) if href else None
                    stack.append(name)
            out.append(token)
        elif token and not stack and not token.startswith("<"):
            text = topic_sub(token, previous_href)
            out.append(_link_paths_outside_links(text, path_sub))
            if token.strip():
                previous_href = None
        else:
            out.append(token)
        i += 1
    return "".join(out), counts


def _code_target(inner: str, source_urls: dict[str, str], modules: dict[str, str]) -> str | None:
    """The source page an inline code span names: a path (``impl/x.py``, ``tests/t.py::test``) or a
    module."""
    path = inner.split("::")[0].split(":")[0]
    if path in source_urls:
        return source_urls[path]
    if _MODULE.fullmatch(inner):
        parts = inner.split(".")
        for k in range(len(parts), 1, -1):
            module = ".".join(parts[:k])
            if module in modules:
                return source_urls.get(modules[module])
    return None


def _same(a: str, b: str) -> bool:
    return a.split("#")[0].rstrip("/") == b.split("#")[0].rstrip("/")


def _link_paths_outside_links(text: str, path_sub) -> str:
    parts = re.split(r"(<a [^>]*>.*?</a>)", text)
    return "".join(p if j % 2 else path_sub(p) for j, p in enumerate(parts))


_ADJACENT_FOOTNOTES = re.compile(r'(</a></sup>)(\s*)(<sup id="fnref)')


def separate_footnote_markers(content: str) -> str:
    """``¹²`` -> ``¹,²``: a comma between footnote markers that follow each other."""
    return _ADJACENT_FOOTNOTES.sub(
        r'\1<sup class="footnote-sep" aria-hidden="true">,</sup>\3', content
    )


# ---------------------------------------------------------------------------------------------
# The home page's graph


def _text_width(text: str, size: float) -> float:
    """A generous estimate of a sans-serif label's width in px."""
    narrow = sum(ch in "ilIjtf.,:;|!'()[] -" for ch in text)
    wide = sum(ch in "mwMW" or ch.isupper() for ch in text)
    return size * (0.52 * len(text) - 0.2 * narrow + 0.15 * wide)


def _curve(*points: tuple[float, float]) -> str:
    """An SVG cubic Bézier path through start, two control points and end."""
    (ax, ay), *rest = points
    return f"M{ax:.1f},{ay:.1f} C" + " ".join(f"{x:.1f},{y:.1f}" for x, y in rest)


def history_svg(topics, edges: dict[str, tuple[str, ...]], urls: dict[str, str]) -> str:
    """The arrow of progress as an inline SVG: one column per section, one row per year, an arrow
    per import.

    ``topics``: `impl.catalog.Topic` s; ``edges``: topic number -> the numbers it imports;
    ``urls``: topic number -> link (relative to the page) for the topics whose pages exist.
    """
    sections = []
    for t in topics:
        if t.section not in sections:
            sections.append(t.section)
    years = sorted({t.year for t in topics})
    font, node_h, step, pad = 11.5, 22, 28, 8
    labels = {t.number: f"{t.number} {t.title.split(',')[0]}" for t in topics}
    node_w = max(_text_width(label, font) for label in labels.values()) + 2 * pad
    col_w = node_w + 32  # room between columns for the arcs of same-column arrows
    left, top = 52, 58
    stacks: dict[tuple[int, int], list] = {}
    for t in topics:
        stacks.setdefault((t.year, t.section.number), []).append(t)
    row_top, y = {}, top
    for year in years:
        row_top[year] = y
        depth = max(len(v) for (yr, _), v in stacks.items() if yr == year)
        y += depth * step + 12
    height = y + 8
    width = left + len(sections) * col_w
    pos = {}
    for (year, section), members in stacks.items():
        column = [s.number for s in sections].index(section)
        for k, t in enumerate(members):
            pos[t.number] = (left + column * col_w + 30, row_top[year] + k * step)

    def nid(number: str) -> str:
        return "h" + number.replace(".", "-")

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="history-svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'aria-labelledby="history-title">',
        '<title id="history-title">The arrow of progress: each topic at its year, '
        "an arrow from each topic to the topics whose code imports it</title>",
        '<defs><marker id="history-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path '
        'd="M0,0 L8,4 L0,8 z" class="history-arrowhead"/></marker></defs>',
    ]
    rules = []
    for year in years:
        y0 = row_top[year] - 5
        parts.append(f'<line class="history-grid" x1="0" x2="{width:.0f}" y1="{y0}" y2="{y0}"/>')
        parts.append(
            f'<text class="history-year" x="4" y="{row_top[year] + 15}" '
            f'font-size="12">{year}</text>'
        )
    for column, section in enumerate(sections):
        x = left + column * col_w + 30 + node_w / 2
        words = f"{section.number}. {section.title}"
        first, second = (words, "") if _text_width(words, 12) <= col_w - 8 else words.rsplit(" ", 1)
        if second and _text_width(first, 12) > col_w - 8:
            first = words.split(" ", 1)[0] + " " + words.split(" ", 2)[1]
            second = words.split(" ", 2)[2]
        parts.append(
            f'<text class="history-section" x="{x:.0f}" y="18" text-anchor="middle" '
            f'font-size="12">{html.escape(first)}'
        )
        if second:
            parts.append(f'<tspan x="{x:.0f}" dy="15">{html.escape(second)}</tspan>')
        parts.append("</text>")
    for target, sources in edges.items():
        for source in sources:
            if source not in pos or target not in pos:
                continue
            (x1, y1), (x2, y2) = pos[source], pos[target]
            if x1 == x2:  # same column: an arc on the left, outside the column's boxes
                bend = 14 + min(30.0, abs(y2 - y1) * 0.08)
                a, b = (x1, y1 + node_h / 2), (x2, y2 + node_h / 2)
                d = _curve(a, (a[0] - bend, a[1]), (b[0] - bend, b[1]), b)
            elif y2 > y1 + node_h:  # later: from the side of the box into the top of the other
                a = (x1 + node_w, y1 + node_h / 2) if x2 > x1 else (x1, y1 + node_h / 2)
                b = (x2 + node_w / 2, y2)
                d = _curve(a, ((a[0] + b[0]) / 2, a[1]), (b[0], min(a[1], b[1] - 20)), b)
            else:  # the same year, side by side
                a = (x1 + node_w, y1 + node_h / 2) if x2 > x1 else (x1, y1 + node_h / 2)
                b = (x2, y2 + node_h / 2) if x2 > x1 else (x2 + node_w, y2 + node_h / 2)
                mid = (a[0] + b[0]) / 2
                d = _curve(a, (mid, a[1]), (mid, b[1]), b)
            parts.append(
                f'<path class="history-edge e{nid(source)} e{nid(target)}" d="{d}" '
                'marker-end="url(#history-arrow)">'
                f"<title>{html.escape(labels[target])} builds on "
                f"{html.escape(labels[source])}</title></path>"
            )
    for t in topics:
        x, y = pos[t.number]
        label = html.escape(labels[t.number])
        tip = html.escape(f"{t.number} {t.title} ({t.year}): {t.papers}")
        box = (
            f'<rect x="{x:.1f}" y="{y}" width="{node_w:.0f}" height="{node_h}" rx="5"/>'
            f'<text x="{x + pad:.1f}" y="{y + 15.5}" font-size="{font}">{label}</text>'
        )
        if t.number in urls:
            parts.append(
                f'<a id="{nid(t.number)}" class="history-node" '
                f'href="{html.escape(urls[t.number])}">'
                f"<title>{tip}</title>{box}</a>"
            )
            if any(t.number in s for s in edges.values()) or edges.get(t.number):
                rules.append(
                    f".history-svg:has(#{nid(t.number)}:hover,#{nid(t.number)}:focus) "
                    f".e{nid(t.number)}"
                    "{stroke:var(--md-accent-fg-color);stroke-opacity:1;stroke-width:2}"
                )
        else:
            parts.append(
                f'<g class="history-node history-coming"><title>{tip} — coming</title>{box}</g>'
            )
    parts.insert(3, f"<style>{''.join(rules)}</style>")
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# MkDocs events

_state: dict = {}


def on_config(config, **kwargs):
    STATS.clear()
    try:
        from impl import history

        history._topic_edges.cache_clear()  # `mkdocs serve` rebuilds after an edit of impl/
    except ImportError:  # pragma: no cover
        pass
    return config


def on_files(files, config, **kwargs):
    paths = source_paths()
    for path in paths:
        files.append(File.generated(config, source_uri(path), content=source_page(path)))
    files.append(File.generated(config, f"{SOURCE_ROOT}/index.md", content=source_index(paths)))
    STATS["source pages"] = len(paths)
    nav = config.get("nav")
    if isinstance(nav, list) and not any(isinstance(e, dict) and "Source code" in e for e in nav):
        nav.append({"Source code": f"{SOURCE_ROOT}/index.md"})
    _state["paths"] = paths
    return files


def _is_source_page(page) -> bool:
    return page.file.src_uri.startswith(f"{SOURCE_ROOT}/")


def on_page_markdown(markdown, page, config, files, **kwargs):
    if _is_source_page(page):
        return markdown
    uri = page.file.src_uri
    markdown, count = link_snippets(markdown, uri)
    STATS["snippet links"] += count
    markdown, count = link_footnotes(markdown)
    STATS["footnotes linked"] += count
    if uri.startswith("essays/"):
        STATS["essay footnotes linked"] += count
    if uri.startswith("papers/"):
        from impl.catalog import TOPICS

        topic = next((t for t in TOPICS if t.page == uri), None)
        if topic is not None and (ROOT / f"impl/{topic.section.package}/{topic.name}.py").exists():
            markdown = markdown.rstrip("\n") + "\n\n" + history_section(topic.number, uri)
            STATS["history sections"] += 1
    return markdown


_PLACEHOLDER = re.compile(r'<div class="source-view-placeholder" data-source="([^"]+)"></div>')


def on_page_content(content, page, config, files, **kwargs):
    from impl.catalog import TOPICS

    if _is_source_page(page):
        match = _PLACEHOLDER.search(content)
        if match:
            path = html.unescape(match.group(1))
            block, ids = render_source((ROOT / path).read_text(encoding="utf-8"))
            content = content[: match.start()] + block + content[match.end() :]
            if page.present_anchor_ids is not None:
                page.present_anchor_ids |= ids
        return content
    topic_urls = {}
    for t in TOPICS:
        f = files.get_file_from_path(t.page)
        if f is not None:
            topic_urls[t.number] = f.url
    source_urls = {}
    for path in _state.get("paths", ()):
        f = files.get_file_from_path(source_uri(path))
        if f is not None:
            source_urls[path] = f.url
    content, counts = link_html(content, page.url, topic_urls, source_urls, _module_paths())
    STATS["topic links"] += counts["topic"]
    STATS["path links"] += counts["path"]
    if page.file.src_uri.startswith("papers/"):
        STATS["topic links on Part 2 pages"] += counts["topic"]
    content = separate_footnote_markers(content)
    if "{{ history_graph }}" in content:
        from impl.history import topic_edges

        urls = {n: get_relative_url(u, page.url) for n, u in topic_urls.items()}
        urls = {t.number: urls[t.number] for t in TOPICS if t.number in urls and t.implemented}
        svg = history_svg(TOPICS, topic_edges(), urls)
        content = content.replace(
            "<p>{{ history_graph }}</p>", f'<div class="history-graph">{svg}</div>'
        )
    return content


def on_post_build(config, **kwargs):
    log.info("connect: %s", ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())))
