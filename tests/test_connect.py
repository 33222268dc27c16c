"""The connected site (``hooks/connect.py``, `impl.history`): source pages, snippet and topic links,
footnote links, the history lists and graph."""

import importlib.util
import re
from pathlib import Path

import pytest

from impl import catalog, history

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location(
        "connect_hook_under_test", ROOT / "hooks" / "connect.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the import graph ------------------------------------------------------------------------


def test_topic_edges_follow_the_model_files_imports():
    edges = history.topic_edges()
    assert set(edges) == {t.number for t in catalog.TOPICS}
    assert "1.1" in edges["1.2"]  # the CNN imports the DNN's dense layer
    assert edges["1.1"] == ()  # the first topic builds on nothing
    assert "1.2" in history.built_upon_by("1.1")
    assert history.builds_on("1.2") == edges["1.2"]
    years = {t.number: t.year for t in catalog.TOPICS}
    for target, sources in edges.items():
        assert target not in sources
        assert all(years[s] <= years[target] for s in sources), target  # the arrow points forward


def test_topic_edges_read_experiments_on_request():
    models, experiments = history.topic_edges(), history.topic_edges("experiment")
    assert set(models) == set(experiments)
    assert experiments["1.1"] != ()  # 1.1's experiment trains with something it imports
    with pytest.raises(ValueError, match="kind"):
        history.topic_edges("tests")


def test_import_graph_sees_a_small_package(tmp_path, monkeypatch):
    package = tmp_path / "impl"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("import numpy\n")
    (package / "sub" / "b.py").write_text("from impl import a\nfrom impl.sub import c\n")
    (package / "sub" / "c.py").write_text("from . import b\n")
    monkeypatch.setattr(history, "ROOT", tmp_path)
    graph = history.import_graph(package)
    assert graph["impl.sub.b"] == {"impl.a", "impl.sub.c"}
    assert graph["impl.sub.c"] == {"impl.sub.b"}
    assert history.cycles(graph) == [["impl.sub.b", "impl.sub.c"]]


# -- source pages ----------------------------------------------------------------------------

SOURCE = """\
import jax


# --8<-- [start:core]
def f(x):
    '''A docstring
    over two lines.'''
    return x + 1
# --8<-- [end:core]
"""


def test_sections_give_the_lines_a_snippet_includes(hook):
    assert hook.sections(SOURCE) == {"core": (5, 8)}


def test_render_source_anchors_every_line_and_each_section(hook):
    block, ids = hook.render_source(SOURCE)
    assert {f"L{n}" for n in range(1, 10)} | {"L5-L8"} == ids
    assert block.count('<span id="L') == 9
    assert '<a class="source-lineno" href="#L5">5</a>' in block
    assert 'id="L5-L8"' in block and "nth-of-type(n+5):nth-of-type(-n+8)" in block
    # a multi-line docstring keeps its spans balanced line by line
    line6 = re.search(r'<span id="L6">(.*?)\n</span>', block).group(1)
    assert line6.count("<span") == line6.count("</span>")


def test_every_source_file_gets_a_page_out_of_search(hook):
    paths = hook.source_paths()
    assert "impl/deep_networks/dnn.py" in paths and "tests/test_connect.py" in paths
    assert not any("__pycache__" in p for p in paths)
    assert hook.source_uri("impl/deep_networks/dnn.py") == "source/impl/deep_networks/dnn.py.md"
    page = hook.source_page("impl/deep_networks/dnn.py")
    assert "search:\n  exclude: true" in page
    assert (
        "[1.1 DNN](../../../papers/01-deep-neural-networks/01-dnn.md) — this is its model" in page
    )
    assert "- **Imports:** [`impl.checks`](../checks.py.md)" in page
    assert "(../../tests/deep_networks/test_dnn.py.md)" in page  # its tests
    assert 'data-source="impl/deep_networks/dnn.py"' in page
    index = hook.source_index(paths)
    assert "[`dnn.py`](impl/deep_networks/dnn.py.md)" in index


# -- snippet links ---------------------------------------------------------------------------

PAGE = """\
Text.

=== "Functional (Linen)"

    ```python
    --8<-- "impl/deep_networks/dnn.py:core"
    ```

```python exec="on"
print(1)
```
"""


def test_snippet_includes_link_to_their_lines(hook):
    text, count = hook.link_snippets(PAGE, "papers/01-deep-neural-networks/01-dnn.md")
    first, last = hook.snippet_lines("impl/deep_networks/dnn.py:core")[1:]
    assert count == 1 and first < last
    link = (
        f"    [source: `impl/deep_networks/dnn.py`, lines {first}–{last}]"
        f"(../../source/impl/deep_networks/dnn.py.md#L{first}-L{last})\n    {{: .source-link }}"
    )
    assert link in text
    assert text.count("source:") == 1  # the executed block includes nothing


def test_snippet_lines_reads_whole_files_and_line_ranges(hook):
    path, first, last = hook.snippet_lines("impl/deep_networks/dnn.py")
    assert (path, first) == ("impl/deep_networks/dnn.py", 1) and last > 100
    assert hook.snippet_lines("impl/deep_networks/dnn.py:3:9") == (
        "impl/deep_networks/dnn.py",
        3,
        9,
    )
    assert hook.snippet_lines("impl/deep_networks/dnn.py:no_such_section") is None
    assert hook.snippet_lines("essays/milestones.csv") is None


# -- links in prose --------------------------------------------------------------------------

TOPICS = {"1.1": "papers/a/01-dnn/", "2.8": "papers/b/08-adam/", "3.5": "papers/c/05-ed/"}
SOURCES = {
    "impl/deep_networks/dnn.py": "source/impl/deep_networks/dnn.py/",
    "tests/t.py": "source/tests/t.py/",
}
MODULES = {"impl.deep_networks.dnn": "impl/deep_networks/dnn.py"}


def _link(hook, content, url="papers/c/07-attention/"):
    return hook.link_html(content, url, TOPICS, SOURCES, MODULES)


def test_topic_mentions_link_to_their_pages(hook):
    out, counts = _link(hook, "<p>the GRU of topic 3.5 and topics 1.1 and 2.8, topic 9.9.</p>")
    assert '<a class="topic-link" href="../05-ed/">topic 3.5</a>' in out
    assert (
        'topics <a class="topic-link" href="../../a/01-dnn/">1.1</a> and <a class="topic-link"'
        in out
    )
    assert "topic 9.9" in out and counts["topic"] == 3
    out, _ = _link(hook, "<p>Topic 3.5's model</p>")
    assert '<a class="topic-link" href="../05-ed/">Topic 3.5</a>' in out


def test_topic_mentions_are_left_alone_in_code_links_headings_and_on_their_own_page(hook):
    for content in (
        "<pre><code>topic 3.5</code></pre>",
        "<p><code>topic 3.5</code></p>",
        '<p><a href="x">see topic 3.5</a></p>',
        '<h2 id="t">From topic 3.5</h2>',
        "<p><math><mi>topic 3.5</mi></math></p>",
    ):
        assert _link(hook, content)[0] == content
    assert _link(hook, "<p>topic 3.5</p>", url="papers/c/05-ed/")[1]["topic"] == 0


def test_a_topic_already_linked_by_its_title_is_not_linked_twice(hook):
    content = '<p><a href="../../b/08-adam/">Adam</a> (topic 2.8) and topic 2.8</p>'
    out, counts = _link(hook, content)
    assert counts["topic"] == 1 and out.count('href="../../b/08-adam/"') == 2


def test_source_paths_and_modules_link_to_their_source_pages(hook):
    out, counts = _link(
        hook,
        "<p>see <code>impl/deep_networks/dnn.py</code>, tests/t.py and "
        "<code>impl.deep_networks.dnn.mlp</code></p>",
    )
    dnn = "../../../source/impl/deep_networks/dnn.py/"
    assert f'<a class="source-path" href="{dnn}"><code>impl/deep_networks/dnn.py</code></a>' in out
    assert '<a class="source-path" href="../../../source/tests/t.py/">tests/t.py</a>' in out
    assert out.count("impl/deep_networks/dnn.py/") == 2 and counts["path"] == 3
    untouched = (
        "<pre><code>impl/deep_networks/dnn.py</code></pre><p><code>impl/missing.py</code></p>"
    )
    assert _link(hook, untouched)[0] == untouched


# -- footnotes -------------------------------------------------------------------------------


def test_footnote_sources_become_links(hook):
    text = (
        "Body arXiv:1234.56789 stays.\n\n"
        "[^a]: A. Author, *Title*, ICLR 2015 (arXiv:1409.0473), section 1.\n"
        "[^b]: B. Author, Nature 1 (2000), doi:10.1038/323533a0.\n"
        "[^c]: C, see https://example.org/page, and arxiv.org/abs/2001.08361.\n"
        "[^d]: D, [arXiv:1502.05767](https://arxiv.org/abs/1502.05767), `10.1/x`.\n"
        "[^e]: E, no link here.\n"
        "    A continuation: 10.1145/3065386.\n"
    )
    out, count = hook.link_footnotes(text)
    assert "Body arXiv:1234.56789 stays." in out  # only footnotes
    assert "([arXiv:1409.0473](https://arxiv.org/abs/1409.0473))" in out
    assert "[doi:10.1038/323533a0](https://doi.org/10.1038/323533a0)." in out
    assert "<https://example.org/page>," in out
    assert "[arxiv.org/abs/2001.08361](https://arxiv.org/abs/2001.08361)." in out
    # already linked
    assert "[^d]: D, [arXiv:1502.05767](https://arxiv.org/abs/1502.05767), `10.1/x`." in out
    assert "[10.1145/3065386](https://doi.org/10.1145/3065386)." in out
    assert count == 4  # a, b, c, e


def test_adjacent_footnote_markers_are_separated(hook):
    two = (
        '<sup id="fnref:a"><a href="#fn:a">1</a></sup><sup id="fnref:b"><a href="#fn:b">2</a></sup>'
    )
    out = hook.separate_footnote_markers(two)
    assert '</sup><sup class="footnote-sep" aria-hidden="true">,</sup><sup id="fnref:b">' in out
    apart = (
        '<sup id="fnref:a"><a href="#fn:a">1</a></sup> text '
        '<sup id="fnref:b"><a href="#fn:b">2</a></sup>'
    )
    assert hook.separate_footnote_markers(apart) == apart


# -- history ---------------------------------------------------------------------------------


def test_history_section_lists_what_a_topic_builds_on_and_what_builds_on_it(hook):
    text = hook.history_section("1.2", "papers/01-deep-neural-networks/02-cnn.md")
    assert "## Builds on, built upon by" in text and "Computed from the code" in text
    assert "- **Builds on:** [1.1 DNN](01-dnn.md)" in text
    assert "[1.3 AlexNet](03-alexnet.md)" in text.split("**Built upon by:**")[1]
    assert "(../../source/impl/deep_networks/cnn.py.md)" in text


def test_history_svg_draws_every_topic_and_every_import(hook):
    edges = history.topic_edges()
    urls = {t.number: f"papers/{t.number}/" for t in catalog.TOPICS if t.number.startswith("1.")}
    svg = hook.history_svg(catalog.TOPICS, edges, urls)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="history-node"') == len(urls)
    assert svg.count("history-coming") == len(catalog.TOPICS) - len(urls)
    assert svg.count('class="history-edge') == sum(len(v) for v in edges.values())
    assert '<a id="h1-1" class="history-node" href="papers/1.1/">' in svg
    for year in {t.year for t in catalog.TOPICS}:
        assert f">{year}</text>" in svg
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    assert len(sizes) == svg.count("<text") and min(sizes) >= 10  # readable labels
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
