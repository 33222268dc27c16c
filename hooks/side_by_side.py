"""MkDocs hook: Linen and NNX truly side by side, and a search index that finds topics by name.

* **Side by side.** Every Part 2 page shows a topic's two Flax twins as a pair of linked content
  tabs, "Functional (Linen)" and "Object-oriented (NNX)". After the page is rendered, this hook
  finds each such pair, diffs the two code blocks line by line (`difflib`), and adds after the
  tabs a two-column table: the Linen line beside its NNX counterpart, each keeping the Pygments
  highlighting of the rest of the page, lines that differ marked and the changed words within
  them marked again. A block of output under the code (an executed example's result) gets its
  own pair of columns. ``docs/assets/side-by-side.css`` shows the table on wide screens and the
  tabs (unchanged, still linked) on narrow ones; the table is left out of the search index, so
  the code is indexed once, from the tabs.
* **Search.** Material's search indexes a page's text as it is rendered, so the tick labels of
  the inline-SVG figures and the characters of MathML formulas land in the index as words. Both
  are marked ``data-search-exclude``. A topic's page is tagged with its catalog title and its
  module name in words ("Learning to forget", "Forget gate"), an essay chapter's page with its
  title: Material indexes tags with a far higher weight than titles (and shows them under a
  result, not on the page), so searching for a topic's name ranks its own page first.
* **Tables.** The map's tables get ``data-map`` (a card per topic on phones), and long inline
  code in table cells gets break opportunities after ``_ ( = , . /``.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass

LABELS = ("Functional (Linen)", "Object-oriented (NNX)")

_HIGHLIGHT = r'<div class="(?:[^"]*\s)?highlight(?:\s[^"]*)?">(?:(?!</div>).)*?</div>'
# e.g. the "source: impl/....py, lines 71-80" link under a snippet
_PARA = r"<p\b[^>]*>(?:(?!</?p\b).)*?</p>"
_BLOCK = rf"(?P<{{side}}>(?:\s*(?:{_HIGHLIGHT}|{_PARA}))+)\s*"
_TABS = re.compile(
    r'<div class="tabbed-set(?P<cls>[^"]*)"(?P<attrs>[^>]*)>(?P<inputs>(?:<input [^>]*>)+)'
    r'<div class="tabbed-labels">(?P<labels>(?:<label [^>]*>[^<]*</label>){2})</div>\s*'
    r'<div class="tabbed-content">\s*<div class="tabbed-block">'
    + _BLOCK.format(side="left")
    + r"</div>\s*"
    r'<div class="tabbed-block">' + _BLOCK.format(side="right") + r"</div>\s*</div>\s*</div>",
    re.DOTALL,
)
_LABEL = re.compile(r"<label [^>]*>([^<]*)</label>")
_HIGHLIGHT_RE = re.compile(_HIGHLIGHT, re.DOTALL)
_PARA_RE = re.compile(_PARA, re.DOTALL)
_CODE = re.compile(r"<code[^>]*>(.*?)</code>", re.DOTALL)
_ANCHOR = re.compile(r'<a id="__codelineno-[^"]*"[^>]*></a>')
_SPAN_TAG = re.compile(r"<(/?)span\b[^>]*>")
_TAG = re.compile(r"(<[^>]+>)")
_CHAR = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|\w+);|[^&]", re.DOTALL)
_WORD = re.compile(r"\w+|\s+|[^\w\s]")


# ---------------------------------------------------------------------------------------
# Highlighted code as lines.
# ---------------------------------------------------------------------------------------
def code_lines(block: str) -> list[str]:
    """The lines of one highlighted code block as self-contained HTML, line anchors removed.

    A token that spans several lines (a long string) stays open across the newline in Pygments'
    output; each line here closes what it left open and the next line reopens it.
    """
    match = _CODE.search(block)
    if match is None:
        return []
    body = _ANCHOR.sub("", match.group(1))
    if body.endswith("\n"):
        body = body[:-1]
    lines, stack = [], []
    for raw in body.split("\n"):
        opened = "".join(stack)
        for tag in _SPAN_TAG.finditer(raw):
            if tag.group(1):
                if stack:
                    stack.pop()
            else:
                stack.append(tag.group(0))
        lines.append(opened + raw + "</span>" * len(stack))
    return lines


def text_of(line: str) -> str:
    """The plain text of one line of highlighted HTML."""
    return html.unescape(_TAG.sub("", line))


# ---------------------------------------------------------------------------------------
# The line diff.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One row of the side-by-side view: a line of each side (``None`` where a side has none)."""

    left: int | None
    right: int | None
    same: bool


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.strip(), b.strip(), autojunk=False).ratio()


def _pair(a: list[str], b: list[str], i0: int, j0: int) -> list[Row]:
    """Align a block of changed lines: as many pairs as possible, the most similar lines paired."""
    n, m = len(a), len(b)
    if n * m > 4000:  # a huge rewrite: pair in order
        return [
            Row(i0 + k if k < n else None, j0 + k if k < m else None, False)
            for k in range(max(n, m))
        ]
    sim = [[1.0 + _similarity(x, y) for y in b] for x in a]  # +1: pairing beats leaving a gap
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in reversed(range(n)):
        for j in reversed(range(m)):
            best[i][j] = max(best[i + 1][j], best[i][j + 1], best[i + 1][j + 1] + sim[i][j])
    rows, i, j = [], 0, 0
    while i < n or j < m:
        if i < n and j < m and best[i][j] == best[i + 1][j + 1] + sim[i][j]:
            rows.append(Row(i0 + i, j0 + j, False))
            i, j = i + 1, j + 1
        elif i < n and (j == m or best[i][j] == best[i + 1][j]):
            rows.append(Row(i0 + i, None, False))
            i += 1
        else:
            rows.append(Row(None, j0 + j, False))
            j += 1
    return rows


def align(left: list[str], right: list[str]) -> list[Row]:
    """Rows pairing the lines of ``left`` and ``right`` (plain text): equal lines side by side,
    changed lines paired with their most similar counterpart, the rest facing a gap."""
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(
        None, [s.rstrip() for s in left], [s.rstrip() for s in right], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [Row(i1 + k, j1 + k, True) for k in range(i2 - i1)]
        else:
            rows += _pair(left[i1:i2], right[j1:j2], i1, j1)
    return rows


def changed_spans(a: str, b: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character ranges of ``a`` and of ``b`` that differ, compared word by word."""
    ta, tb = _WORD.findall(a), _WORD.findall(b)
    starts_a = [0]
    for token in ta:
        starts_a.append(starts_a[-1] + len(token))
    starts_b = [0]
    for token in tb:
        starts_b.append(starts_b[-1] + len(token))
    spans_a, spans_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if i2 > i1 and "".join(ta[i1:i2]).strip():
            spans_a.append((starts_a[i1], starts_a[i2]))
        if j2 > j1 and "".join(tb[j1:j2]).strip():
            spans_b.append((starts_b[j1], starts_b[j2]))
    return spans_a, spans_b


def mark(line: str, spans: list[tuple[int, int]]) -> str:
    """Wrap the characters of ``line`` (highlighted HTML) that fall in ``spans`` in ``<mark>``."""
    if not spans:
        return line
    out, pos = [], 0
    for piece in _TAG.split(line):
        if not piece:
            continue
        if piece.startswith("<"):
            out.append(piece)
            continue
        inside = False
        for char in _CHAR.findall(piece):
            hit = any(start <= pos < end for start, end in spans)
            if hit != inside:
                out.append('<mark class="sbs-word">' if hit else "</mark>")
                inside = hit
            out.append(char)
            pos += 1
        if inside:
            out.append("</mark>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# The view.
# ---------------------------------------------------------------------------------------
def _cell(side: str, line: str | None, state: str) -> str:
    """One side of a row; ``--indent`` lets a wrapped line hang under its own indentation."""
    if line is None:
        return f'<td class="sbs-{side} sbs-gap"></td>'
    text = text_of(line)
    indent = len(text) - len(text.lstrip(" "))
    style = f' style="--indent:{indent}ch"' if indent and text.strip() else ""
    return f'<td class="sbs-{side} sbs-{state}"{style}>{line or " "}</td>'


def diff_rows(left_block: str, right_block: str) -> str:
    """The ``<tr>`` rows comparing two highlighted code blocks."""
    left, right = code_lines(left_block), code_lines(right_block)
    left_text, right_text = [text_of(s) for s in left], [text_of(s) for s in right]
    out = []
    for row in align(left_text, right_text):
        a = left[row.left] if row.left is not None else None
        b = right[row.right] if row.right is not None else None
        if row.same:
            state = "same"
        else:
            state = "diff"
            if (
                a is not None
                and b is not None
                and _similarity(left_text[row.left], right_text[row.right]) >= 0.5
            ):
                spans_a, spans_b = changed_spans(left_text[row.left], right_text[row.right])
                a, b = mark(a, spans_a), mark(b, spans_b)
        out.append(f'<tr class="sbs-{state}">{_cell("l", a, state)}{_cell("r", b, state)}</tr>')
    return "\n".join(out)


def side_by_side(
    labels: tuple[str, str],
    left_blocks: list[str],
    right_blocks: list[str],
    notes: tuple[str, str] = ("", ""),
) -> str:
    """A two-column table comparing the code blocks of two tabs, block by block; ``notes`` (the
    tabs' paragraphs, such as the link to the source under a snippet) go in a last row."""
    head = "".join(f'<th scope="col">{html.escape(label)}</th>' for label in labels)
    bodies = "".join(
        f'<tbody class="sbs-block">\n{diff_rows(a, b)}\n</tbody>'
        for a, b in zip(left_blocks, right_blocks, strict=True)
    )
    if any(notes):
        bodies += (
            f'<tbody class="sbs-notes"><tr><td>{notes[0]}</td><td>{notes[1]}</td></tr></tbody>'
        )
    return (
        '<table class="sbs highlight" data-search-exclude>'
        f"<colgroup><col><col></colgroup><thead><tr>{head}</tr></thead>{bodies}</table>"
    )


def add_side_by_side(content: str, labels: tuple[str, str] = LABELS) -> str:
    """Add the side-by-side table after every pair of tabs labelled ``labels``.

    The tabs stay as they are (linked across the page, shown on narrow screens) and gain the
    class ``sbs-tabs``, which the stylesheet hides on wide screens. A pair whose tabs hold
    anything but code blocks, or a different number of them, is left alone.
    """

    def replace(match: re.Match) -> str:
        found = tuple(html.unescape(s).strip() for s in _LABEL.findall(match.group("labels")))
        if found != labels:
            return match.group(0)
        left = _HIGHLIGHT_RE.findall(match.group("left"))
        right = _HIGHLIGHT_RE.findall(match.group("right"))
        if len(left) != len(right) or not left:
            return match.group(0)
        tabs = match.group(0).replace(
            f'class="tabbed-set{match.group("cls")}"',
            f'class="tabbed-set{match.group("cls")} sbs-tabs"',
            1,
        )
        notes = (
            "".join(_PARA_RE.findall(match.group("left"))),
            "".join(_PARA_RE.findall(match.group("right"))),
        )
        return tabs + "\n" + side_by_side(labels, left, right, notes)

    return _TABS.sub(replace, content)


# ---------------------------------------------------------------------------------------
# Search.
# ---------------------------------------------------------------------------------------
_EXCLUDE = re.compile(r"<(svg|math)\b(?![^>]*\bdata-search-exclude)")


def exclude_from_search(content: str) -> str:
    """Mark inline SVG (figures) and MathML (formulas) so that Material's search skips their text.

    The marker goes on the ``<svg>``/``<math>`` element itself: Material's indexer tracks skipped
    elements by tag name, so an excluded element must not contain another of the same tag.
    """
    return _EXCLUDE.sub(r"<\1 data-search-exclude", content)


_CELL = re.compile(r"<td\b[^>]*>.*?</td>", re.DOTALL)
_INLINE_CODE = re.compile(r"<code>([^<]*)</code>")
_BREAK_AFTER = re.compile(r"([_(=,./])(?=[^<])")


def break_table_code(content: str) -> str:
    """Let long inline code in table cells wrap only after ``_ ( = , . /`` (a ``<wbr>``).

    Material lets inline code break between any two letters, which splits short words in a
    narrow column ("momentu/m"); the stylesheet forbids that, and these break opportunities keep
    long identifiers (``scale_by_adam(bias_correction=False)``) from widening their column.
    """

    def cell(match: re.Match) -> str:
        return _INLINE_CODE.sub(
            lambda m: "<code>" + _BREAK_AFTER.sub(r"\1<wbr>", m.group(1)) + "</code>",
            match.group(0),
        )

    return _CELL.sub(cell, content)


_MAP_TABLE = re.compile(r"<table>(?=\s*<thead>\s*<tr>\s*<th[^>]*>#</th>\s*<th[^>]*>topic</th>)")


def mark_map_tables(content: str) -> str:
    """Give the tables of the project's map (``impl.catalog.site_map``: #, topic, paper, claim)
    the attribute ``data-map``, which the stylesheet lays out as one card per topic on phones."""
    return _MAP_TABLE.sub("<table data-map>", content)


def page_tags(src_uri: str) -> list[str]:
    """Search tags for a page of the catalog: a topic's title and its module name in words
    ("Learning to forget", "Forget gate"), or an essay chapter's title ("Data")."""
    from impl.catalog import CHAPTERS, TOPICS

    for chapter in CHAPTERS:
        if chapter.path == src_uri:
            return [chapter.title]
    for topic in TOPICS:
        if topic.page == src_uri:
            name = topic.name.replace("_", " ")
            tags = [topic.title]
            if name.lower() != topic.title.lower().replace("-", " "):
                tags.append(name[:1].upper() + name[1:])
            return tags
    return []


# ---------------------------------------------------------------------------------------
# MkDocs events.
# ---------------------------------------------------------------------------------------
def on_page_content(content, page, config, files, **kwargs):
    tags = page_tags(page.file.src_uri)
    if tags and "tags" not in page.meta:
        page.meta["tags"] = tags
    return break_table_code(mark_map_tables(exclude_from_search(add_side_by_side(content))))
