"""MkDocs hook: write every figure of a page also as a standalone SVG file, and link it.

`impl.plotting.show` prints each figure inline, as ``<div class="dl-figure" data-name="NAME"><svg
...></svg></div>``. After a page is rendered, this hook copies each such SVG beside the page
(``papers/01-deep-neural-networks/01-dnn/dnn.svg``) and adds an "Open full size" link under
the figure. The file is written from the page's HTML, so it is there whether the figure was
drawn in this build or came from the examples' cache (``hooks/examples.py``).

The standalone file has no fixed size (it fills the browser window and zooms without blur),
black ink on white, and the figure's description as its ``<title>``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

_FIGURE = re.compile(
    r'(<div class="dl-figure" data-name="([^"]*)">)(<svg\b.*?</svg>)(\s*</div>)', re.DOTALL
)
_ROOT_ATTRIBUTES = ("class", "role", "style", "width", "height", "aria-label")


def standalone(svg: str) -> str:
    """An inline figure's ``<svg>`` as a file of its own: sized by the window, black on white."""
    opening = re.match(r"<svg\b[^>]*>", svg).group(0)
    label = re.search(r'\saria-label="([^"]*)"', opening)
    tag = opening
    for attribute in _ROOT_ATTRIBUTES:
        tag = re.sub(rf'\s{attribute}="[^"]*"', "", tag)
    tag = tag.replace("<svg", '<svg style="color:#000;background:#fff"', 1)
    title = f"\n <title>{label.group(1)}</title>" if label else ""
    return f'<?xml version="1.0" encoding="utf-8"?>\n{tag}{title}{svg[len(opening) :]}\n'


def _file_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", html.unescape(name)).strip("-") or "figure"
    candidate, n = f"{stem}.svg", 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}.svg"
    taken.add(candidate)
    return candidate


def on_post_page(output: str, page, config, **kwargs) -> str:
    folder = Path(config["site_dir"]) / Path(page.file.dest_path).parent
    taken: set[str] = set()

    def write(match: re.Match) -> str:
        opening, name, svg, closing = match.groups()
        file_name = _file_name(name, taken)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_text(standalone(svg), encoding="utf-8")
        link = (
            f'<a class="dl-figure-open" href="{file_name}" target="_blank" '
            'title="The figure as an SVG file of its own, as large as the window">'
            "Open full size</a>"
        )
        return f"{opening}{svg}{link}{closing}"

    return _FIGURE.sub(write, output)
