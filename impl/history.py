"""The import graph of ``impl/``, read with `ast` (nothing is imported): the history, from the code.

A topic's model file imports the model files of the topics it builds on (`impl.catalog` years
keep the arrow pointing forward; ``tests/test_history.py`` checks it). This module reads those
imports so that the checks, the site's "Builds on / Built upon by" lists and the home page's
graph all agree::

    import_graph()        # module -> impl modules it imports at module level
    topic_edges()         # topic number -> numbers of the topics its model file imports
    builds_on("4.2")      # ("4.1", ...) in catalog order
    built_upon_by("1.1")  # the topics whose model files import 1.1's
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from impl.catalog import ROOT, TOPICS

__all__ = [
    "IMPL",
    "SHARED_FOR_MODELS",
    "builds_on",
    "built_upon_by",
    "cycles",
    "import_graph",
    "imports",
    "module_name",
    "topic_edges",
]

IMPL = ROOT / "impl"
SHARED_FOR_MODELS = ("impl.checks", "impl.twins", "impl.data")


def module_name(path: Path) -> str:
    """``impl/sequence/rnn.py`` -> ``impl.sequence.rnn`` (a package's ``__init__`` is the
    package)."""
    parts = path.resolve().relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> tuple[set[str], list[str]]:
    """(impl modules imported at module level, impl imports found inside functions)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    top: set[str] = set()
    nested: list[str] = []
    module = module or module_name(path)
    package = module.rsplit(".", 1)[0] if Path(path).name != "__init__.py" else module

    def names(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:  # relative import
            base = ".".join(
                package.split(".")[: len(package.split(".")) - node.level + 1]
                + ([base] if base else [])
            )
        # `from impl.x import y` may name a module y: keep both candidates, resolved by the caller
        return [base] + [f"{base}.{alias.name}" for alias in node.names]

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    nested += [n for n in names(inner) if n == "impl" or n.startswith("impl.")]
    for node in tree.body:
        stack = [node]
        # module level, including under if/try, but not inside functions or classes' methods
        while stack:
            current = stack.pop()
            if isinstance(current, ast.Import | ast.ImportFrom):
                top |= {n for n in names(current) if n == "impl" or n.startswith("impl.")}
            elif not isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                stack.extend(ast.iter_child_nodes(current))
    return top, nested


def _files(root: Path) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def import_graph(root: Path = IMPL) -> dict[str, set[str]]:
    """module -> the impl modules it imports at module level (packages' ``__init__`` left out
    where they import nothing: ``from impl.sequence import rnn`` is an edge to ``rnn`` only)."""
    files = _files(root)
    parsed = {name: imports(path, name)[0] for name, path in files.items()}
    empty_packages = {n for n, p in files.items() if p.name == "__init__.py" and not parsed[n]}
    return {
        name: {m for m in top if m in files and m != name and m not in empty_packages}
        for name, top in parsed.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@cache
def _topic_edges(kind: str) -> dict[str, tuple[str, ...]]:
    graph = import_graph()
    by_module = {t.module_name: t.number for t in TOPICS}
    order = {t.number: i for i, t in enumerate(TOPICS)}
    edges = {}
    for t in TOPICS:
        source = t.module_name if kind == "model" else t.experiment_module_name
        found = {by_module[m] for m in graph.get(source, ()) if m in by_module} - {t.number}
        edges[t.number] = tuple(sorted(found, key=order.__getitem__))
    return edges


def topic_edges(kind: str = "model") -> dict[str, tuple[str, ...]]:
    """topic number -> the numbers of the topics whose *model* files its model file imports.

    ``kind="experiment"`` reads the topic's experiment file instead (what its training run uses:
    an optimizer, a data set's model). Topics whose files do not exist yet have no edges.
    """
    if kind not in ("model", "experiment"):
        raise ValueError(f"kind: expected 'model' or 'experiment'; got {kind!r}")
    return dict(_topic_edges(kind))


def builds_on(number: str) -> tuple[str, ...]:
    """The topics that topic ``number``'s model file imports, in catalog order."""
    return topic_edges()[number]


def built_upon_by(number: str) -> tuple[str, ...]:
    """The topics whose model files import topic ``number``'s, in catalog order."""
    return tuple(n for n, sources in topic_edges().items() if number in sources)
