"""Keep Part 1's links to Part 2 in step with the pages that exist.

A chapter names a Part 2 topic as ``*Title* (topic n)`` until the topic's page exists, and as
``[Title](relative/path.md) (topic n)`` once it does (``mkdocs build --strict`` fails on a link
to a missing page). :func:`relink` rewrites one chapter either way, from :mod:`impl.catalog`::

    python -m impl.essay.links          # relink every chapter of Part 1 in place
"""

from __future__ import annotations

import posixpath
import re

from impl.catalog import CHAPTERS, ROOT, TOPICS

__all__ = ["main", "relink"]


def _title_pattern(title: str) -> str:
    return r"\s+".join(re.escape(word) for word in title.split())  # a title may wrap across lines


def relink(text: str, chapter_path: str, exists=lambda page: (ROOT / page).exists()) -> str:
    """Link every ``*Title* (topic n)`` whose page exists; unlink those whose page does not.

    ``chapter_path`` is the chapter's path from the repository root (links are relative to it).
    """
    base = posixpath.dirname(chapter_path)
    for t in TOPICS:
        title, number = _title_pattern(t.title), re.escape(t.number)
        plain = re.compile(rf"\*{title}\*(\s+)\(topic {number}\)")
        linked = re.compile(rf"\[{title}\]\([^)]*\)(\s+)\(topic {number}\)")
        if exists(t.page):
            target = posixpath.relpath(t.page, base)
            text = plain.sub(
                lambda m, t=t, target=target: (
                    f"[{t.title}]({target}){m.group(1)}(topic {t.number})"
                ),
                text,
            )
        else:
            text = linked.sub(lambda m, t=t: f"*{t.title}*{m.group(1)}(topic {t.number})", text)
    return text


def main() -> int:
    for chapter in CHAPTERS:
        path = ROOT / chapter.path
        if path.exists():
            text = path.read_text(encoding="utf-8")
            new = relink(text, chapter.path)
            if new != text:
                path.write_text(new, encoding="utf-8")
                print(f"relinked {chapter.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
