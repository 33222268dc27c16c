"""MkDocs hook: serve ``essays/`` and ``papers/`` from the repository root, build the
navigation from the folders, and render LaTeX to MathML at build time.

* Pages: MkDocs reads ``docs/`` (home page, assets); this hook adds every Markdown file under
  ``essays/`` and ``papers/`` with the repository root as its source folder, so the site's URLs
  mirror the repository (``papers/01-deep-neural-networks/01-dnn/``).
* Navigation: Home, Part 1 (``essays/``), Part 2 (``papers/``), then the other pages of
  ``docs/``; folders become sections titled from their names (``02-constraints`` -> "2.
  Constraints"), files sort by name, and each page's title comes from its first heading.
* Math: ``pymdownx.arithmatex`` (generic mode) marks ``$...$`` and ``$$...$$``; this hook turns
  each into MathML with ``latex2mathml``. Browsers render MathML natively, so no script, font
  or stylesheet is fetched from anywhere: the site reads fully offline.
* ``{{ topic_map }}`` in a page becomes the map of the project, from `impl.catalog`; in Part 1,
  ``*Title* (topic n)`` links to topic n's page whenever that page exists.
* ``mkdocs serve`` also watches ``essays/``, ``papers/``, ``impl/`` and ``hooks/``.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
CONTENT_DIRS = ("essays", "papers")
log = logging.getLogger("mkdocs.plugins.pages")

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.DOTALL)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.DOTALL)


def _section_title(folder: str) -> str:
    match = re.fullmatch(r"(\d+)-(.*)", folder)
    if not match:
        return folder.replace("-", " ").capitalize()
    words = match.group(2).replace("-and-", " & ").replace("-", " ")
    return f"{int(match.group(1))}. {words[:1].upper()}{words[1:]}"


def _tree(paths: list[str], depth: int) -> list:
    """Nested MkDocs nav entries for ``paths`` (all under one folder), ``index.md`` first, then
    files and sub-folders together in name order (``01-introduction.md``, ``02-constraints/``,
    ``03-...``)."""
    entries: list = []
    groups: dict[str, list[str]] = {}
    for path in sorted(paths):
        parts = path.split("/")
        if len(parts) == depth + 1:
            entries.append(path)
        else:
            groups.setdefault(parts[depth], []).append(path)
    keyed = [((not p.endswith("/index.md"), p.split("/")[depth]), p) for p in entries]
    for folder, members in groups.items():
        keyed.append(((True, folder), {_section_title(folder): _tree(members, depth + 1)}))
    # files and folders in name order
    return [entry for _, entry in sorted(keyed, key=lambda pair: pair[0])]


def on_files(files, config, **kwargs):
    added: dict[str, list[str]] = {d: [] for d in CONTENT_DIRS}
    for folder in CONTENT_DIRS:
        for path in sorted((ROOT / folder).rglob("*.md")):
            rel = path.relative_to(ROOT).as_posix()
            files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
            added[folder].append(rel)
    docs_pages = sorted(
        f.src_uri
        for f in files
        if f.src_uri.endswith(".md") and f.src_uri.split("/")[0] not in CONTENT_DIRS
    )
    nav: list = [{"Home": "index.md"}]
    nav.append({"Part 1 — The essay": _tree(added["essays"], 1)})
    nav.append({"Part 2 — The arrow of progress": _tree(added["papers"], 1)})
    nav += [p for p in docs_pages if p != "index.md"]
    config["nav"] = nav
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    """Expand ``{{ topic_map }}`` into the map of the project, and keep essay links in step.

    In Part 1, a topic named ``*Title* (topic n)`` becomes a link as soon as its page exists
    (and a link whose page is gone becomes plain text again), so a chapter never waits for, or
    breaks on, Part 2.
    """
    if "{{ topic_map }}" in markdown:
        from impl.catalog import site_map

        markdown = markdown.replace("{{ topic_map }}", site_map(page.file.src_uri))
    if page.file.src_uri.startswith("essays/"):
        from impl.essay.links import relink

        markdown = relink(markdown, page.file.src_uri)
    return markdown


def _render(match: re.Match, display: str) -> str:
    tex = html.unescape(match.group(1)).strip()
    try:
        mathml = latex_to_mathml(tex, display=display)
    except Exception as error:
        log.warning("math: could not render %r: %s", tex, error)
        return match.group(0)
    mathml = mathml.replace("<math ", f'<math alttext="{html.escape(tex)}" ', 1)
    tag = "div" if display == "block" else "span"
    return f'<{tag} class="math math-{display}">{mathml}</{tag}>'


def on_page_content(content, page, config, files, **kwargs):
    content = _BLOCK.sub(lambda m: _render(m, "block"), content)
    return _INLINE.sub(lambda m: _render(m, "inline"), content)


def on_serve(server, config, builder, **kwargs):
    for folder in (*CONTENT_DIRS, "impl", "hooks"):
        server.watch(str(ROOT / folder))
    return server
