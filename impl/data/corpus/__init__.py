"""The project's own prose as a frozen English corpus for the text topics.

The essays (``essays/**/*.md``) and the paper pages (``papers/**/*.md``) hold about 54,000
words of English written for this project: real text, free to ship, and never downloaded. The
corpus is a **committed snapshot**, ``impl/data/corpus/project_text.txt``, so that experiments
trained on it do not shift each time a chapter is edited. `load_corpus` reads only that file;
it is rebuilt only on purpose, with

    python -m impl.data.corpus --write              # refresh the committed snapshot
    python -m impl.data.corpus --write --output X   # write somewhere else (what the test does)

What `markdown_to_text` keeps and drops, so that the file is plain prose:

* **dropped**: code blocks (fenced or inside tabs and admonitions, executed blocks included),
  snippet includes (``--8<--``), display and inline math (``$$...$$``, ``$...$``), tables (their
  cells are fragments and numbers, not sentences), HTML tags and comments, images, URLs, link
  targets, footnote markers, tab and admonition headers, reference-link definitions;
* **kept, as text**: headings, paragraphs, list items (each its own paragraph), admonition
  bodies, link texts, inline code (without the backticks), emphasis (without the stars), and
  footnote definitions — the citations — without their URLs.

The output has one paragraph per line, paragraphs separated by a blank line, documents in
sorted path order (essays first, then papers). It is UTF-8 and keeps typographic characters
(—, ×, é) as written.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SNAPSHOT", "build_corpus", "load_corpus", "main", "markdown_to_text", "write_corpus"]

SNAPSHOT = "project_text.txt"
_ROOT = Path(__file__).resolve().parents[3]  # the repository: impl/data/corpus/__init__.py
_SOURCES = ("essays", "papers")

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.DOTALL)
# may wrap, not across paragraphs
_INLINE_MATH = re.compile(r"(?<!\\)\$(?:[^$\n]|\n(?![ \t]*\n))+?(?<!\\)\$")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BLOCK_MARKER = re.compile(r"^(!!!|\?\?\?\+?|===)\s")  # admonition or content-tab header
_LIST_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+")
_FOOTNOTE_DEF = re.compile(r"^\[\^[^\]]+\]:\s*")
_REF_DEF = re.compile(r"^\[[^\]^][^\]]*\]:\s+\S+")
_INLINE = [  # (pattern, replacement), applied in order to each paragraph
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[\^[^\]]+\]"), ""),  # footnote markers
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # [text][ref]
    (re.compile(r"<https?://[^>]*>"), ""),  # autolinks
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # HTML tags
    (re.compile(r"https?://\S+"), ""),  # bare URLs
    (re.compile(r"\{\s*[:.#][^}]*\}"), ""),  # attribute lists
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # inline code
    (re.compile(r"\*\*|__"), ""),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!$|])"), r"\1"),  # backslash escapes
    (re.compile(r"\(\s*[,;]?\s*\)"), ""),  # parentheses emptied by dropped math
    (re.compile(r"\s+"), " "),
    (re.compile(r" ([,.;:!?)])"), r"\1"),
    (re.compile(r"\(\s*[,;]\s*"), "("),  # "(, its total input)" once the math has gone
    (re.compile(r"\( "), "("),
]


def markdown_to_text(markdown: str) -> str:
    """Plain prose from one Markdown page: one paragraph per line, blank lines between."""
    if not isinstance(markdown, str):
        raise TypeError(f"markdown: expected a str, got {type(markdown).__name__}")
    lines: list[str] = []
    fence: str | None = None
    for line in markdown.replace("\r\n", "\n").split("\n"):
        match = _FENCE.match(line)
        if fence is not None:  # inside a code block: drop until the matching fence
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        lines.append(line)
    text = _HTML_COMMENT.sub("", "\n".join(lines))
    text = _DISPLAY_MATH.sub("", text)
    text = _INLINE_MATH.sub("", text)

    paragraphs: list[list[str]] = [[]]
    for raw in text.split("\n"):
        line = raw.strip()
        if line.startswith(">"):
            line = line.lstrip("> ")
        if (
            not line
            or "--8<--" in line
            or _BLOCK_MARKER.match(line)
            or line.startswith("|")
            or _REF_DEF.match(line)  # [id]: url (footnote definitions are kept)
        ):
            paragraphs.append([])  # a dropped line ends the paragraph it was in
            continue
        starts_block = False
        for pattern in (_FOOTNOTE_DEF, _LIST_ITEM):
            if pattern.match(line):
                line = pattern.sub("", line, count=1)
                starts_block = True
        if line.startswith("#"):
            line = line.lstrip("#").strip()
            starts_block = True
        if starts_block:
            paragraphs.append([])
        paragraphs[-1].append(line)
        if raw.lstrip().startswith("#"):  # a heading is a paragraph of its own
            paragraphs.append([])

    out = []
    for lines_ in paragraphs:
        paragraph = " ".join(lines_)
        for pattern, replacement in _INLINE:
            paragraph = pattern.sub(replacement, paragraph)
        paragraph = paragraph.strip()
        if any(ch.isalpha() for ch in paragraph):
            out.append(paragraph)
    return "\n\n".join(out)


def _sources(root: Path) -> list[Path]:
    files = [
        p
        for folder in _SOURCES
        for p in sorted((root / folder).rglob("*.md"), key=lambda p: p.as_posix())
    ]
    if not files:
        raise FileNotFoundError(f"root: no essays/**/*.md or papers/**/*.md under {root}")
    return files


def build_corpus(root: str | Path | None = None) -> str:
    """Convert every essay and paper page under ``root`` (the repository) into one text."""
    root = _ROOT if root is None else Path(root)
    if not root.is_dir():
        raise ValueError(f"root: expected a directory, got {str(root)!r}")
    texts = [markdown_to_text(p.read_text(encoding="utf-8")) for p in _sources(root)]
    return "\n\n".join(t for t in texts if t) + "\n"


def write_corpus(output: str | Path | None = None, *, root: str | Path | None = None) -> Path:
    """Build the corpus and write it to ``output`` (default: the committed snapshot)."""
    path = Path(__file__).with_name(SNAPSHOT) if output is None else Path(output)
    path.write_text(build_corpus(root), encoding="utf-8", newline="\n")
    return path


@functools.cache
def load_corpus() -> str:
    """The committed snapshot of the project's prose (about 46,000 words), as one string.

    Reads only the data file shipped with the package, never ``essays/`` or ``papers/``.
    """
    return importlib.resources.files(__name__).joinpath(SNAPSHOT).read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m impl.data.corpus", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--write", action="store_true", help="rebuild the snapshot from essays/ and papers/"
    )
    parser.add_argument("--output", help="where to write (default: the committed snapshot)")
    parser.add_argument("--root", help="the repository to read (default: this checkout)")
    args = parser.parse_args(argv)
    if args.write:
        path = write_corpus(args.output, root=args.root)
        text = path.read_text(encoding="utf-8")
    else:
        if args.output or args.root:
            parser.error("--output and --root need --write")
        path, text = Path(__file__).with_name(SNAPSHOT), load_corpus()
    print(f"{path}: {len(text.split()):,} words, {len(text):,} characters", file=sys.stdout)
    return 0
