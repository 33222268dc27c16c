"""MkDocs hook: every page of ``essays/`` and ``papers/`` as a Jupyter notebook and a Python script,
and a "Reproduce" line under each page's experiment.

* **Notebook and script.** At build time each page's own Markdown becomes a notebook
  (``01-dnn.md`` -> ``01-dnn.ipynb``, nbformat 4.5 JSON written with `json`) and a script
  (``01-dnn.py``, in the "percent" format that Jupytext, VS Code and Spyder open as cells; plain
  Python to everything else). Text becomes Markdown cells (comments in the script); every
  Python block becomes a code cell: the blocks the site executes (``exec="on"``), in page
  order, and the snippets the page includes (``--8<-- "impl/x.py:section"``) resolved to their
  real code, preceded by the imports that code needs from its module. Content tabs and
  admonitions become bold labels. Both files are published beside the page and linked from
  the top of it ("Download this page as …").
* **Reproduce.** Under the block that runs a Part 2 topic's ``experiment(seed=0)``, a line
  gives the shell command that prints the same report and saves the figure:
  ``python -m impl 1.1 --seed 0``; essay chapters get their own command-line names
  (``python -m impl essay:size``, from `impl.essay.RUNS`), which never clash with topic numbers.

`page_cells`, `notebook_json` and `script_text` are what ``tests/test_notebooks.py`` checks.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import re
import textwrap
from pathlib import Path, PurePosixPath

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
CONTENT_DIRS = ("essays", "papers")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_CONTAINER = re.compile(r"^(?P<indent>[ \t]*)(?P<kind>===\+?|!!!|\?\?\?\+?)\s*(?P<rest>.*)$")
_SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<spec>[^"]+)"\s*$')
_H1 = re.compile(r"^# \S")
_ATTR_LIST = re.compile(
    r"^[ \t]*\{:?[ \t]*[.#][^}\n]*\}[ \t]*$\n?|(?<=\))\{:?[ \t]*[.#\w][^}\n]*\}", re.MULTILINE
)


# ---------------------------------------------------------------------------------------
# Reproduce: the shell command for a page's experiment.
# ---------------------------------------------------------------------------------------
def reproduce_command(rel: str) -> tuple[str, list[str], bool] | None:
    """``("python -m impl 1.1 --seed 0", ["dnn.png"], True)`` for a page with an experiment:
    the command, the figures it saves and whether it prints a report; None for other pages."""
    from impl import catalog, essay

    for topic in catalog.TOPICS:
        if topic.page == rel:
            return f"python -m impl {topic.number} --seed 0", [f"{topic.name}.png"], True
    chapters = {c.path: c.number for c in catalog.CHAPTERS}
    for name, entry in essay.RUNS.items():
        if chapters.get(rel) == entry.chapter:
            seeded = any(run.target.endswith(":experiment") for run in entry.runs)
            reports = any(run.target.endswith((":experiment", ":analysis")) for run in entry.runs)
            figures = [f"{r.figure}.png" for r in entry.runs]
            return f"python -m impl {name}" + (" --seed 0" if seeded else ""), figures, reports
    return None


def reproduce_line(rel: str) -> str | None:
    found = reproduce_command(rel)
    if found is None:
        return None
    command, figures, reports = found
    seeds = "; any other `--seed` runs the same code on another draw" if "--seed" in command else ""
    saved = ", ".join(f"`{f}`" for f in figures)
    shown = "this report" if rel.startswith("papers/") else "this chapter's results"
    verb = f"prints {shown} and " if reports else ""
    return (
        f"**Reproduce** from a shell, in the repository: `{command}` {verb}saves "
        f"the figure{'s' if len(figures) > 1 else ''} as {saved}{seeds}.\n{{ .dl-reproduce }}"
    )


def _fences(lines: list[str]):
    """(opening line, closing line, indent, info) of every fenced block, in order."""
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            close = re.compile(rf"^[ \t]*{re.escape(m['fence'][0])}{{{len(m['fence'])},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            yield i, j, m["indent"], m["info"]
            i = j
        i += 1


def with_reproduce(markdown: str, rel: str) -> str:
    """Put the page's Reproduce line under the block that runs its experiment.

    That block is the first executed one calling ``.experiment(`` or ``.analysis(``; on a
    chapter with neither, the first executed block that prints text.
    """
    line = reproduce_line(rel)
    if line is None or "{ .dl-reproduce }" in markdown:
        return markdown
    lines = markdown.split("\n")
    executed = [(i, j, indent) for i, j, indent, info in _fences(lines) if 'exec="on"' in info]
    runs = [
        f
        for f in executed
        if re.search(r"\.(experiment|analysis)\(", "\n".join(lines[f[0] : f[1]]))
    ]
    printing = [f for f in executed if 'result="text"' in lines[f[0]]]
    target = (runs or printing or [None])[0]
    if target is None:
        return markdown
    _, end, indent = target
    block = ["", *(indent + part for part in line.split("\n"))]
    return "\n".join(lines[: end + 1] + block + lines[end + 1 :])


# ---------------------------------------------------------------------------------------
# Snippets resolved to code, with the imports the code needs from its module.
# ---------------------------------------------------------------------------------------
def _section(text: str, section: str | None) -> str:
    lines = text.splitlines()
    if section is None:
        picked = lines
    elif re.fullmatch(r"-?\d+(:-?\d+)?", section):  # "10:20" line ranges
        start, _, end = section.partition(":")
        picked = lines[int(start) - 1 : int(end) if end else None]
    else:
        picked, inside = [], False
        for line in lines:
            if f"--8<-- [start:{section}]" in line:
                inside = True
            elif f"--8<-- [end:{section}]" in line:
                inside = False
            elif inside:
                picked.append(line)
        if not picked:
            raise ValueError(f"snippet section {section!r} not found")
    picked = [line for line in picked if not re.search(r"--8<-- \[(start|end):", line)]
    return textwrap.dedent("\n".join(picked)).strip("\n")


def _module_name(path: str) -> str | None:
    parts = PurePosixPath(path).with_suffix("").parts
    if not path.endswith(".py") or parts[0] != "impl":
        return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=256)  # keyed by the source text, so an edit is seen
def _module_bindings(source: str, module: str) -> tuple[dict[str, str], set[str]]:
    """The module's top-level imports (bound name -> import statement) and its other globals."""
    imports: dict[str, str] = {}
    others: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.parse(source).body:
        nodes = node.body if isinstance(node, ast.If) else [node]  # `if TYPE_CHECKING:` imports too
        for n in nodes:
            if isinstance(n, ast.Import):
                for a in n.names:
                    bound = a.asname or a.name.split(".")[0]
                    imports[bound] = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
            elif isinstance(n, ast.ImportFrom) and n.module != "__future__":
                base = n.module or ""
                if n.level:
                    root = package.rsplit(".", n.level - 1)[0] if n.level > 1 else package
                    base = f"{root}.{base}" if base else root
                for a in n.names:
                    imports[a.asname or a.name] = (
                        f"from {base} import " + a.name + (f" as {a.asname}" if a.asname else "")
                    )
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                others.add(n.name)
            elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    others |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
    return imports, others


def _defined_at_top(tree: ast.Module) -> set[str]:
    found = set()
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                found |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
    return found


def _header(imports: list[str]) -> list[str]:
    """Import statements, ``from x import a``/``from x import b`` merged, sorted."""
    plain, grouped = set(), {}
    for statement in imports:
        m = re.fullmatch(r"from (\S+) import (.+)", statement)
        if m:
            grouped.setdefault(m[1], set()).add(m[2])
        else:
            plain.add(statement)
    lines = sorted(plain)
    lines += [
        f"from {mod} import {', '.join(sorted(names))}" for mod, names in sorted(grouped.items())
    ]
    return lines


def resolve_snippets(specs: list[str]) -> str:
    """The code of ``--8<-- "spec"`` lines, preceded by the imports it needs to run on its own."""
    codes, needed = [], []
    for spec in specs:
        path, _, section = spec.partition(":")
        source = (ROOT / path).read_text(encoding="utf-8")
        code = _section(source, section or None)
        codes.append(code)
        module = _module_name(path)
        if module is None:
            continue
        imports, others = _module_bindings(source, module)
        tree = ast.parse(code)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used -= _defined_at_top(tree) | set(dir(builtins))
        needed += [imports[name] for name in sorted(used & imports.keys())]
        from_module = sorted((used & others) - imports.keys())
        needed += [f"from {module} import {name}" for name in from_module]
    where = ", ".join(f"`{s}`" for s in specs)
    head = [f"# The code the page includes from {where}, with the imports it needs."]
    header = _header(needed)
    return (
        "\n".join([*head, *header, *(["", ""] if header else []), "\n\n\n".join(codes)]).rstrip()
        + "\n"
    )


# ---------------------------------------------------------------------------------------
# A page's cells.
# ---------------------------------------------------------------------------------------
def page_cells(rel: str, markdown: str | None = None) -> list[dict]:
    """The page at ``rel`` (relative to the repository root) as cells.

    Each cell is ``{"type": "markdown" | "code", "source": str, "tags": [...]}``; code cells
    are tagged ``"executed"`` (the site runs them) or ``"snippet"`` (included source).
    """
    if markdown is None:
        markdown = (ROOT / rel).read_text(encoding="utf-8")
    markdown = with_reproduce(markdown, rel)
    lines = markdown.split("\n")
    if lines and lines[0].strip() == "---":  # YAML front matter is the site's, not the reader's
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), 0)
        lines = lines[end + 1 :]
    cells: list[dict] = []
    text: list[str] = []
    containers: list[int] = []  # indent of the content of each open tab or admonition

    def flush():
        body = _ATTR_LIST.sub("", "\n".join(text)).strip("\n")
        if body.strip():
            cells.append({"type": "markdown", "source": body, "tags": []})
        text.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if line.strip():
            while containers and indent < containers[-1]:
                containers.pop()
        depth = containers[-1] if containers else 0
        m = _CONTAINER.match(line)
        if m and len(m["indent"]) >= depth and len(m["indent"]) <= depth + 3:
            label = re.search(r'"([^"]*)"', m["rest"])
            kind = m["rest"].split()[0].capitalize() if m["rest"].split() else ""
            title = label[1] if label else kind
            text.append(f"**{title}**" if title else "")
            containers.append(len(m["indent"]) + 4)
            i += 1
            continue
        f = _FENCE.match(line)
        if f:
            close = re.compile(rf"^[ \t]*{re.escape(f['fence'][0])}{{{len(f['fence'])},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            body = textwrap.dedent("\n".join(lines[i + 1 : j]))
            info = f["info"]
            language = info.split()[0] if info.split() else ""
            if language in ("python", "py"):
                specs = [s["spec"] for s in map(_SNIPPET.match, body.splitlines()) if s]
                if 'exec="on"' in info:
                    flush()
                    cells.append(
                        {"type": "code", "source": body.strip("\n") + "\n", "tags": ["executed"]}
                    )
                elif specs and all(_SNIPPET.match(x) or not x.strip() for x in body.splitlines()):
                    flush()
                    cells.append(
                        {"type": "code", "source": resolve_snippets(specs), "tags": ["snippet"]}
                    )
                else:
                    text += ["```python", body, "```"]
            else:
                text += [f"```{language}", body, "```"]
            i = j + 1
            continue
        if line.startswith("#") and re.match(r"^#{1,6} ", line):  # a heading starts a new cell
            flush()
        text.append(line[depth:] if line[:depth].strip() == "" else line.lstrip())
        i += 1
    flush()
    return cells


def _title(cells: list[dict], rel: str) -> str:
    for cell in cells:
        for line in cell["source"].splitlines():
            if cell["type"] == "markdown" and _H1.match(line):
                return line[2:].strip()
    return PurePosixPath(rel).stem


def _intro(rel: str) -> str:
    return (
        f"*Generated from `{rel}`, a page of the deep-learning project's site, by "
        "`hooks/notebooks.py`.* "
        "Run it from the repository root with the project installed (`pip install -e .`); the "
        "cells are the page's own code, in page order, and each figure is saved as a PNG file."
    )


def notebook_json(rel: str, cells: list[dict] | None = None) -> str:
    """The page as an nbformat 4.5 notebook (JSON text)."""
    cells = page_cells(rel) if cells is None else cells
    out = [{"cell_type": "markdown", "id": "intro", "metadata": {}, "source": _lines(_intro(rel))}]
    for k, cell in enumerate(cells):
        entry = {
            "cell_type": cell["type"],
            "id": f"cell-{k}",
            "metadata": {},
            "source": _lines(cell["source"]),
        }
        if cell["tags"]:
            entry["metadata"]["tags"] = list(cell["tags"])
        if cell["type"] == "code":
            entry.update(execution_count=None, outputs=[])
        out.append(entry)
    notebook = {
        "cells": out,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {
                "name": "python",
                "file_extension": ".py",
                "mimetype": "text/x-python",
            },
            "title": _title(cells, rel),
            "source": rel,
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def script_text(rel: str, cells: list[dict] | None = None) -> str:
    """The page as a plain Python script: text as comments, cells marked ``# %%``."""
    cells = page_cells(rel) if cells is None else cells
    parts = [f'"""{_title(cells, rel)}\n\n{textwrap.fill(_intro(rel), 96)}\n"""\n']
    for cell in cells:
        if cell["type"] == "markdown":
            comment = "\n".join(f"# {line}".rstrip() for line in cell["source"].splitlines())
            parts.append(f"# %% [markdown]\n{comment}\n")
        else:
            parts.append(f"# %%\n{cell['source'].rstrip()}\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# MkDocs events.
# ---------------------------------------------------------------------------------------
def content_pages() -> list[str]:
    return [
        p.relative_to(ROOT).as_posix()
        for d in CONTENT_DIRS
        for p in sorted((ROOT / d).rglob("*.md"))
    ]


def downloads(rel: str) -> tuple[str, str]:
    stem = PurePosixPath(rel).with_suffix("")
    return f"{stem}.ipynb", f"{stem}.py"


def on_files(files, config, **kwargs):
    for rel in content_pages():
        cells = page_cells(rel)
        notebook, script = downloads(rel)
        files.append(File.generated(config, notebook, content=notebook_json(rel, cells)))
        files.append(File.generated(config, script, content=script_text(rel, cells)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    rel = page.file.src_uri
    if rel.split("/")[0] not in CONTENT_DIRS:
        return markdown
    markdown = with_reproduce(markdown, rel)
    notebook, script = (PurePosixPath(p).name for p in downloads(rel))
    line = (
        f'Download this page as a [Jupyter notebook]({notebook}){{ download="{notebook}" }} '
        f'or a [Python script]({script}){{ download="{script}" }}.\n{{ .dl-downloads }}'
    )
    lines = markdown.split("\n")
    at = next((k + 1 for k, text in enumerate(lines) if _H1.match(text)), 0)
    return "\n".join([*lines[:at], "", line, "", *lines[at:]])
