"""The import graph of ``impl/`` reads like the history.

* no cycles between ``impl`` modules, and no ``impl`` import hidden inside a function body
  (the old way of keeping a cycle alive);
* a topic's model file imports only shared pieces (`impl.checks`, `impl.twins`, `impl.data`)
  and the model files of topics published the same year or earlier (`impl.catalog` years);
* no module imports another topic's experiment module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from impl import catalog

IMPL = catalog.ROOT / "impl"
SHARED_FOR_MODELS = ("impl.checks", "impl.twins", "impl.data")


def _module_name(path: Path) -> str:
    parts = path.relative_to(catalog.ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> tuple[set[str], list[str]]:
    """(impl modules imported at module level, impl imports found inside functions)."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    module = module or _module_name(path)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module

    def names(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:  # relative import
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        # `from impl.x import y` may name a module y: keep both candidates, resolved below
        return [base] + [f"{base}.{alias.name}" for alias in node.names]

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    nested += [n for n in names(inner) if n == "impl" or n.startswith("impl.")]
    for node in tree.body:
        stack = [node]
        while stack:  # module level, including under if/try, but not inside functions or classes' methods
            current = stack.pop()
            if isinstance(current, ast.Import | ast.ImportFrom):
                top |= {n for n in names(current) if n == "impl" or n.startswith("impl.")}
            elif not isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                stack.extend(ast.iter_child_nodes(current))
    return top, nested


def _graph() -> dict[str, set[str]]:
    """module -> the impl modules it imports at module level (packages' ``__init__`` left out
    where they import nothing: ``from impl.sequence import rnn`` is an edge to ``rnn`` only)."""
    files = {_module_name(p): p for p in IMPL.rglob("*.py")}
    empty_packages = {n for n, p in files.items() if p.name == "__init__.py" and not _imports(p, n)[0]}
    graph = {}
    for name, path in files.items():
        top, _ = _imports(path, name)
        graph[name] = {m for m in top if m in files and m != name and m not in empty_packages}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

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


def test_impl_has_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_impl_import_hides_inside_a_function():
    offenders = {}
    for path in IMPL.rglob("*.py"):
        _, nested = _imports(path)
        if nested:
            offenders[path.relative_to(catalog.ROOT).as_posix()] = sorted(set(nested))
    assert offenders == {}


_TOPICS_BY_MODULE = {t.module_name: t for t in catalog.TOPICS}
_EXPERIMENTS = {t.experiment_module_name: t for t in catalog.TOPICS}


@pytest.mark.parametrize("topic", [t for t in catalog.TOPICS if t.implemented], ids=lambda t: t.number)
def test_a_topic_model_imports_only_shared_pieces_and_earlier_topics(topic):
    graph = _graph()
    for imported in sorted(graph[topic.module_name]):
        if imported.startswith(SHARED_FOR_MODELS):
            continue
        assert imported in _TOPICS_BY_MODULE, (
            f"{topic.module_name} imports {imported}: a model file imports only "
            f"{', '.join(SHARED_FOR_MODELS)} and earlier topics' model files"
        )
        other = _TOPICS_BY_MODULE[imported]
        assert other.year <= topic.year, (
            f"{topic.number} ({topic.year}) imports {other.number} {other.title} ({other.year}), published later"
        )


def test_no_module_imports_another_topics_experiment():
    for name, imported in _graph().items():
        for module in imported & set(_EXPERIMENTS):
            assert name == module, f"{name} imports the experiment {module}; import its model file instead"


def test_the_checker_sees_cycles_and_nested_imports(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from impl import training\n    return training\n")
    top, nested = _imports(source, "impl.m")
    assert top == set()
    assert nested == ["impl", "impl.training"]
