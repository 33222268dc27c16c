"""Linen and NNX side by side: the line diff, the table it becomes, and a built page."""

import re

import pytest
from test_search import indexed_text, load_hook

from site_build import built_site

hook = load_hook()


def highlighted(lines: list[str], block: int = 0) -> str:
    """A code block as pymdownx.highlight renders it (line anchors, Pygments spans)."""
    anchor = '<a id="__codelineno-{0}" name="__codelineno-{0}" href="#__codelineno-{0}"></a>'
    body = "".join(anchor.format(f"{block}-{i}") + line + "\n" for i, line in enumerate(lines, 1))
    return f'<div class="highlight"><pre><span></span><code>{body}</code></pre></div>'


LINEN = [
    '<span class="k">class</span> <span class="nc">LinenMLP</span><span '
    'class="p">(</span>nn.Module<span class="p">):'
    "</span>",
    '    <span class="n">features</span>: <span class="nb">int</span>',
    "",
    '    <span class="k">def</span> <span class="fm">__call__</span>(self, x):',
    '        <span class="k">return</span> mlp(self.param(<span '
    'class="s2">&quot;layers&quot;</span>), x)',
]
NNX = [
    '<span class="k">class</span> <span class="nc">NnxMLP</span><span '
    'class="p">(</span>nnx.Module<span class="p">):'
    "</span>",
    '    <span class="k">def</span> <span class="fm">__init__</span>(self, sizes, *, rngs):',
    "        self.layers = to_nnx(init(rngs))",
    "",
    '    <span class="k">def</span> <span class="fm">__call__</span>(self, x):',
    '        <span class="k">return</span> mlp(pure(self.layers), x)',
]


def tabs(left: str, right: str, labels=hook.LABELS, n: int = 1) -> str:
    return (
        f'<div class="tabbed-set tabbed-alternate" data-tabs="{n}:2"><input '
        f'checked="checked" id="__tabbed_{n}_1" name="__tabbed_{n}" type="radio" '
        f'/><input id="__tabbed_{n}_2" name="__tabbed_{n}" type="radio" /><div '
        f'class="tabbed-labels"><label for="__tabbed_{n}_1">{labels[0]}</label><label '
        f'for="__tabbed_{n}_2">{labels[1]}</label></div>\n<div '
        f'class="tabbed-content">\n<div class="tabbed-block">\n{left}\n</div>\n<div '
        f'class="tabbed-block">\n{right}\n</div>\n</div>\n</div>'
    )


def test_code_lines_drop_anchors_and_close_tokens_across_lines():
    block = highlighted(['<span class="sd">"""Two', 'lines."""</span>', "x"])
    lines = hook.code_lines(block)
    assert lines == ['<span class="sd">"""Two</span>', '<span class="sd">lines."""</span>', "x"]
    assert [hook.text_of(line) for line in hook.code_lines(highlighted(LINEN))][4].endswith(
        'param("layers"), x)'
    )


def test_align_pairs_equal_lines_and_the_most_similar_changed_ones():
    left = ["class A:", "    a = 1", "", "    def f(self):", "        return a"]
    right = [
        "class B:",
        "    def __init__(self):",
        "        self.a = 1",
        "",
        "    def f(self):",
        "        return b",
    ]
    rows = hook.align(left, right)
    pairs = [(r.left, r.right, r.same) for r in rows]
    assert (2, 3, True) in pairs and (3, 4, True) in pairs  # blank line and `def f` line up
    assert (0, 0, False) in pairs  # the class lines face each other
    assert (1, 2, False) in pairs  # `a = 1` faces `self.a = 1`, its closest line
    assert (None, 1, False) in pairs  # `__init__` has no Linen counterpart: a gap faces it
    assert sorted(r.left for r in rows if r.left is not None) == list(range(len(left)))
    assert sorted(r.right for r in rows if r.right is not None) == list(range(len(right)))


def test_changed_spans_and_mark_wrap_only_the_words_that_differ():
    a, b = "return mlp(layers, x)", "return mlp(pure(self.layers), x)"
    spans_a, spans_b = hook.changed_spans(a, b)
    assert spans_a == []  # nothing of the Linen line is missing on the NNX side
    assert [b[s:e] for s, e in spans_b] == ["pure(self.", ")"]
    line = '<span class="k">return</span> mlp(<span class="n">pure</span>(self.layers), x&gt;'
    marked = hook.mark(line, [(11, 15)])
    assert marked.count("<mark") == 1 and '<mark class="sbs-word">pure</mark>' in marked
    assert hook.text_of(marked) == hook.text_of(line)
    assert hook.mark(line, []) == line


def test_add_side_by_side_builds_a_table_after_the_tabs():
    html = tabs(highlighted(LINEN), highlighted(NNX, 1))
    out = hook.add_side_by_side(html)
    assert out.startswith(
        html.replace(
            'class="tabbed-set tabbed-alternate"', 'class="tabbed-set tabbed-alternate sbs-tabs"'
        )
    )
    table = out[out.index('<table class="sbs highlight"') :]
    assert "data-search-exclude" in table and "__codelineno" not in table  # no duplicate ids
    assert re.findall(r"<th[^>]*>([^<]*)</th>", table) == list(hook.LABELS)
    rows = re.findall(r'<tr class="sbs-(same|diff)">', table)
    assert rows.count("same") == 2  # the blank line and `def __call__`: nothing else is equal
    assert (
        "sbs-gap" in table
        and '<span class="nc"><mark class="sbs-word">NnxMLP</mark></span>' in table
    )
    assert indexed_text(out).count("LinenMLP") == 1  # search sees the code once, from the tabs


def test_add_side_by_side_pairs_output_blocks_and_leaves_other_tabs_alone():
    source_and_output = highlighted(["print(1)"]) + "\n" + highlighted(["1"], 1)
    out = hook.add_side_by_side(tabs(source_and_output, source_and_output))
    assert out.count('<tbody class="sbs-block">') == 2
    other = tabs(highlighted(LINEN), highlighted(NNX, 1), labels=("pip", "conda"))
    assert hook.add_side_by_side(other) == other
    uneven = tabs(source_and_output, highlighted(["print(1)"]))
    assert hook.add_side_by_side(uneven) == uneven
    link = '<p class="source-link"><a href="#src">source: <code>impl/x.py</code></a></p>'
    with_link = hook.add_side_by_side(tabs(highlighted(LINEN) + "\n" + link, highlighted(NNX, 1)))
    assert f'<tbody class="sbs-notes"><tr><td>{link}</td><td></td></tr></tbody>' in with_link
    prose = tabs("<p>Linen</p>", "<p>NNX</p>")
    assert hook.add_side_by_side(prose) == prose


def test_indentation_of_each_line_is_passed_to_the_stylesheet():
    out = hook.add_side_by_side(tabs(highlighted(LINEN), highlighted(NNX, 1)))
    assert 'style="--indent:8ch"' in out and 'style="--indent:4ch"' in out


def test_map_tables_and_table_code():
    html = "<table>\n<thead>\n<tr>\n<th>#</th>\n<th>topic</th>\n<th>paper</th></tr></thead></table>"
    html += "<table><thead><tr><th>x</th>"
    assert hook.mark_map_tables(html).count("<table data-map>") == 1
    cell = (
        "<td><code>scale_by_adam(bias_correction=False)</code> and <code>sgd + momentum</code></td>"
    )
    out = hook.break_table_code(cell)
    assert "<code>scale_<wbr>by_<wbr>adam(<wbr>bias_<wbr>correction=<wbr>False)</code>" in out
    assert "<code>sgd + momentum</code>" in out
    assert hook.break_table_code("<p><code>a_b</code></p>") == "<p><code>a_b</code></p>"


@pytest.mark.site
def test_built_pages_show_every_twin_pair_side_by_side():
    site = built_site()
    page = (site / "papers/01-deep-neural-networks/01-dnn/index.html").read_text(encoding="utf-8")
    assert page.count("sbs-tabs") == page.count('<table class="sbs highlight"') == 2
    table = page[page.index('<table class="sbs highlight"') :]
    table = table[: table.index("</table>")]
    assert "LinenMLP" in table and "NnxMLP" in table and "sbs-diff" in table and "sbs-same" in table
    from impl.catalog import TOPICS

    for topic in (t for t in TOPICS if t.implemented):
        html = (site / topic.page.removesuffix(".md") / "index.html").read_text(encoding="utf-8")
        pairs = html.count('<label for="__tabbed_') // 2
        assert html.count('<table class="sbs highlight"') >= 1, topic.number
        assert html.count("sbs-tabs") == html.count('<table class="sbs highlight"') <= pairs
    css = (site / "assets" / "side-by-side.css").read_text(encoding="utf-8")
    assert "min-width: 76.25em" in css
