"""The import graph of ``impl/`` reads like the history.

* no cycles between ``impl`` modules, and no ``impl`` import hidden inside a function body
  (the old way of keeping a cycle alive);
* a topic's model file imports only shared pieces (`impl.checks`, `impl.twins`, `impl.data`)
  and the model files of topics published the same year or earlier (`impl.catalog` years);
* no module imports another topic's experiment module.

The graph itself is read by `impl.history` (the site draws it too).
"""

from __future__ import annotations

from functools import cache

import pytest

from impl import catalog, history

IMPL = history.IMPL
SHARED_FOR_MODELS = history.SHARED_FOR_MODELS
_imports = history.imports
_graph = cache(history.import_graph)  # parsed once per test run: every test reads the same graph
_cycles = history.cycles


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


@pytest.mark.parametrize(
    "topic", [t for t in catalog.TOPICS if t.implemented], ids=lambda t: t.number
)
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
            f"{topic.number} ({topic.year}) imports {other.number} "
            f"{other.title} ({other.year}), published later"
        )


def test_no_module_imports_another_topics_experiment():
    for name, imported in _graph().items():
        for module in imported & set(_EXPERIMENTS):
            assert name == module, (
                f"{name} imports the experiment {module}; import its model file instead"
            )


def test_the_checker_sees_cycles_and_nested_imports(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from impl import training\n    return training\n")
    top, nested = _imports(source, "impl.m")
    assert top == set()
    assert nested == ["impl", "impl.training"]
