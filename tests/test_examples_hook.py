"""The site's executed-examples hook: page-scoped sessions, the cache, replay and failures."""

import importlib.util
import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hook(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "examples_hook_under_test", ROOT / "hooks" / "examples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("IMPL_EXAMPLES", raising=False)
    monkeypatch.delenv("IMPL_EXAMPLES_CACHE", raising=False)
    module.on_pre_build(config=None)
    return module


def _page(hook, name):
    hook._state["page"] = name


def test_sessions_are_scoped_to_the_page(hook):
    _page(hook, "a.md")
    hook._run("x = 1", session="main")
    _page(hook, "b.md")
    with pytest.raises(hook.ExecutionError):
        hook._run("print(x)", session="main")  # page b's "main" is not page a's


def test_output_includes_prints_from_library_code(hook):
    _page(hook, "a.md")
    out = hook._run(
        "import sys\nprint('from block')\nsys.stdout.write('from library\\n')", session="s"
    )
    assert out == "from block\nfrom library\n"


def test_cache_hits_on_rebuild_and_replays_earlier_blocks_on_a_miss(hook):
    _page(hook, "a.md")
    assert hook._run("counter = [41]", session="s") == ""
    assert hook._run("counter[0] += 1\nprint(counter[0])", session="s") == "42\n"
    assert hook._stats == {"ran": 2, "cached": 0}

    hook.on_pre_build(config=None)  # a rebuild: fresh sessions, warm cache
    _page(hook, "a.md")
    hook._run("counter = [41]", session="s")
    assert hook._run("counter[0] += 1\nprint(counter[0])", session="s") == "42\n"
    assert hook._stats == {"ran": 0, "cached": 2}
    # A new third block misses the cache: the two cached blocks are replayed first.
    assert hook._run("print(counter[0] * 2)", session="s") == "84\n"
    assert hook._stats == {"ran": 1, "cached": 2}


def test_cache_key_changes_with_the_code_and_with_impl_sources(hook, monkeypatch):
    _page(hook, "a.md")
    hook._run("print(1)")
    hook._run("print(2)")
    assert len(list(hook.CACHE_DIR.iterdir())) == 2
    digest = hook._impl_digest("from impl.deep_networks import dnn")
    assert digest != hook._impl_digest("from impl.data import points")
    assert digest == hook._impl_digest("from impl.deep_networks import dnn")
    # dnn_experiment imports impl.training, so the digest covers training.py's source too
    modules = hook._imports_of(ROOT / "impl" / "deep_networks" / "dnn_experiment.py")
    assert "impl.training" in modules and "impl.optimization.adam" in modules


def test_a_failing_example_names_the_page_and_the_error(hook, caplog):
    _page(hook, "papers/x.md")
    with (
        caplog.at_level(logging.WARNING, logger="mkdocs.plugins.examples"),
        pytest.raises(hook.ExecutionError, match="ZeroDivisionError"),
    ):
        hook._run("1 / 0", session="s")
    assert "papers/x.md: example failed: ZeroDivisionError" in caplog.text
    assert not list(hook.CACHE_DIR.glob("*")) or all(
        p.read_text() != "" for p in hook.CACHE_DIR.iterdir()
    )


def test_skip_mode_runs_nothing(hook, monkeypatch):
    monkeypatch.setenv("IMPL_EXAMPLES", "skip")
    _page(hook, "a.md")
    assert hook._run("raise SystemExit('should not run')") == ""


def test_the_cache_key_follows_the_data_files_a_module_reads(hook, tmp_path, monkeypatch):
    package = tmp_path / "impl"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "reader.py").write_text('PATH = "table.csv"\n')
    (package / "sub" / "table.csv").write_text("a,b\n1,2\n")
    monkeypatch.setattr(hook, "ROOT", tmp_path)
    code = "from impl import reader"
    before = hook._impl_digest(code)
    assert hook._impl_digest(code) == before
    (package / "sub" / "table.csv").write_text("a,b\n1,3\n")
    assert hook._impl_digest(code) != before
    assert hook._data_files_of(package / "reader.py") == {(package / "sub" / "table.csv").resolve()}


def test_the_milestone_data_is_part_of_the_essay_pages_keys(hook):
    from impl.essay import milestones

    assert (ROOT / "essays" / "milestones.csv").resolve() in hook._data_files_of(
        Path(milestones.__file__)
    )
