"""Every page as a notebook and a script (``hooks/notebooks.py``), and the Reproduce lines.

The notebooks are generated from the pages' own text and code here, as the site's build does;
each must be a valid nbformat 4 notebook, each script valid Python, and a sample of them must
run end to end in a fresh Python process, cells in page order.
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

try:
    import nbformat
except ImportError:  # not a dependency: the structural checks below stand in for its schema
    nbformat = None

ROOT = Path(__file__).resolve().parent.parent


def _load_hook():
    spec = importlib.util.spec_from_file_location(
        "notebooks_hook_under_test", ROOT / "hooks" / "notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()
PAGES = hook.content_pages()


@pytest.fixture(scope="module")
def notebooks() -> dict[str, dict]:
    return {rel: json.loads(hook.notebook_json(rel)) for rel in PAGES}


def test_every_page_of_the_essay_and_part_2_gets_a_notebook():
    assert len(PAGES) >= 30
    assert (
        "papers/01-deep-neural-networks/01-dnn.md" in PAGES
        and "essays/02-constraints/02-size.md" in PAGES
    )


def _check_notebook(nb: dict) -> None:
    """The required structure of nbformat 4 (https://nbformat.readthedocs.io, v4 schema)."""
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert set(nb) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["language_info"]["name"] == "python"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        assert isinstance(cell["metadata"], dict) and isinstance(cell["source"], list)
        assert all(isinstance(line, str) for line in cell["source"])
        assert 1 <= len(cell["id"]) <= 64
        if cell["cell_type"] == "code":
            assert set(cell) == {
                "cell_type",
                "id",
                "metadata",
                "source",
                "execution_count",
                "outputs",
            }
            assert cell["execution_count"] is None and cell["outputs"] == []
            ast.parse("".join(cell["source"]))  # every code cell is valid Python
        else:
            assert set(cell) == {"cell_type", "id", "metadata", "source"}


def test_every_notebook_is_valid_nbformat_4(notebooks):
    for rel, nb in notebooks.items():
        try:
            _check_notebook(nb)
        except AssertionError as error:
            raise AssertionError(f"{rel}: {error}") from error
    if nbformat is not None:  # the official schema too, where nbformat is installed
        for rel in notebooks:
            nbformat.validate(nbformat.reads(hook.notebook_json(rel), as_version=4))


def test_the_checker_rejects_a_broken_notebook(notebooks):
    nb = json.loads(json.dumps(notebooks[PAGES[0]]))
    nb["cells"].append({"cell_type": "code", "id": "x", "metadata": {}, "source": ["1 +"]})
    with pytest.raises((AssertionError, KeyError, SyntaxError)):
        _check_notebook(nb)


def test_every_script_is_python_and_holds_the_pages_code(notebooks):
    for rel, nb in notebooks.items():
        script = hook.script_text(rel)
        ast.parse(script)
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert "".join(cell["source"]).rstrip() in script, rel


def test_a_page_becomes_text_executed_blocks_and_resolved_snippets(notebooks):
    cells = notebooks["papers/01-deep-neural-networks/01-dnn.md"]["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "--8<--" not in "\n".join(code)  # snippets are resolved to their real code
    assert any("class LinenMLP(nn.Module)" in c for c in code) and any(
        "class NnxMLP" in c for c in code
    )
    # experiment() itself, not only loss_fn and fit
    assert any("def experiment(" in c for c in code)
    assert any("dnn_experiment.experiment(seed=0)" in c for c in code)
    assert "## The claim, reproduced" in text and "**Functional (Linen)**" in text
    assert "python -m impl 1.1 --seed 0" in text and "{ .dl-reproduce }" not in text
    assert 'exec="on"' not in text and "=== " not in text


def test_snippet_cells_carry_the_imports_their_code_needs():
    source = hook.resolve_snippets(["impl/deep_networks/dnn.py:linen"])
    assert "from flax import linen as nn" in source or "import flax.linen as nn" in source
    assert "init_mlp" in source.split("class LinenMLP")[0]  # imported from its module, not pasted
    namespace = {"__name__": "__notebook__"}
    exec(compile(source, "<cell>", "exec"), namespace)
    assert "LinenMLP" in namespace


@pytest.mark.slow
def test_every_snippet_cell_runs_on_its_own(notebooks):
    failures = []
    for rel, nb in notebooks.items():
        for cell in nb["cells"]:
            if "snippet" in cell["metadata"].get("tags", []):
                try:
                    exec(
                        compile("".join(cell["source"]), rel, "exec"), {"__name__": "__notebook__"}
                    )
                except Exception as error:  # report every failing cell at once
                    failures.append(f"{rel}: {type(error).__name__}: {error}")
    assert failures == []


def test_topic_pages_and_chapters_with_code_get_a_reproduce_line():
    from impl import catalog

    for topic in catalog.TOPICS:
        if (ROOT / topic.page).exists():
            line = hook.reproduce_line(topic.page)
            assert (
                f"`python -m impl {topic.number} --seed 0`" in line
                and f"`{topic.name}.png`" in line
            )
            text = hook.with_reproduce((ROOT / topic.page).read_text(encoding="utf-8"), topic.page)
            after = text.split(f"python -m impl {topic.number} --seed 0")[0]
            # right under it
            assert ".experiment(seed=0)" in after.rsplit('exec="on"', 1)[1], topic.page
    for chapter in catalog.CHAPTERS:
        text = (ROOT / chapter.path).read_text(encoding="utf-8")
        if 'exec="on"' in text:
            assert "python -m impl essay:" in hook.with_reproduce(text, chapter.path), chapter.path
    assert (
        hook.reproduce_line("essays/02-constraints/02-size.md").count(
            "python -m impl essay:size --seed 0"
        )
        == 1
    )
    assert hook.reproduce_line("papers/index.md") is None


def test_every_topic_page_shows_experiment_and_the_code_that_runs_it():
    from impl import catalog

    for topic in catalog.TOPICS:
        if not (ROOT / topic.page).exists():
            continue
        text = (ROOT / topic.page).read_text(encoding="utf-8")
        snippet = f'--8<-- "{topic.experiment_module_name.replace(".", "/")}.py:run"'
        assert snippet in text, f"{topic.page} does not include experiment() itself"
        source = (ROOT / f"{topic.experiment_module_name.replace('.', '/')}.py").read_text(
            encoding="utf-8"
        )
        assert "# --8<-- [start:run]\ndef experiment(" in source, topic.experiment_module_name
        fences = [
            line for line in text.splitlines() if 'exec="on"' in line and 'result="text"' in line
        ]
        runs = [f for f in fences if f'session="{topic.name.replace("_", "-")}"' in f]
        assert runs and all('source="above"' in f for f in runs), topic.page


def test_the_reproduce_line_is_added_once():
    rel = "papers/01-deep-neural-networks/01-dnn.md"
    once = hook.with_reproduce((ROOT / rel).read_text(encoding="utf-8"), rel)
    assert hook.with_reproduce(once, rel) == once


_RUNNER = textwrap.dedent(
    """
    import json, sys
    nb = json.load(open(sys.argv[1], encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), cell["id"], "exec"), namespace)
    print("ran", sum(c["cell_type"] == "code" for c in nb["cells"]), "code cells")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel",
    [
        "papers/01-deep-neural-networks/01-dnn.md",
        "essays/02-constraints/08-constraints-and-leverage.md",
    ],
)
def test_a_sample_of_notebooks_runs_end_to_end(rel, tmp_path):
    path = tmp_path / Path(rel).with_suffix(".ipynb").name
    path.write_text(hook.notebook_json(rel), encoding="utf-8")
    env = {**os.environ, "IMPL_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    env.pop("IMPL_SITE_BUILD", None)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ran" in result.stdout
    assert list(tmp_path.glob("*.png")), "the notebook's show() saves its figures as PNG files"
    print(f"{rel}: ran end to end in {seconds:.1f} s")
