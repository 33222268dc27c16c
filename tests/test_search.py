"""The site's search index: no figure text or math in it, and a topic's own page first for its name.

Ranking is checked with Material's own search worker (lunr) run in Node, when Node is installed.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from material.plugins.search.plugin import Parser

from site_build import built_site

ROOT = Path(__file__).resolve().parent.parent
WORKERS = (
    Path(sys.modules["material"].__file__).parent
    / "templates"
    / "assets"
    / "javascripts"
    / "workers"
)

RANK_JS = r"""
const fs = require("fs"), vm = require("vm");
const [worker, indexPath, queriesPath] = process.argv.slice(2);
let handler = null; const replies = [];
globalThis.self = globalThis;
globalThis.addEventListener = (type, fn) => { handler = fn; };
globalThis.postMessage = (m) => replies.push(m);
globalThis.importScripts = () => {};
vm.runInThisContext(fs.readFileSync(worker, "utf8"));
(async () => {
  const index = JSON.parse(fs.readFileSync(indexPath, "utf8"));
  await handler({ data: { type: 0, data: { ...index, options: { suggest: false } } } });
  const out = {};
  for (const q of JSON.parse(fs.readFileSync(queriesPath, "utf8"))) {
    await handler({ data: { type: 2, data: q } });
    out[q] = replies.pop().data.items.map(group => group[0].location);
  }
  process.stdout.write(JSON.stringify(out));
})();
"""


def load_hook():
    spec = importlib.util.spec_from_file_location(
        "side_by_side_hook_under_test", ROOT / "hooks" / "side_by_side.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def indexed_text(html: str) -> str:
    """What Material's search indexer keeps of ``html`` (its own parser)."""
    parser = Parser()
    parser.feed(html)
    parser.close()
    return " ".join("".join(section.text) for section in parser.data if not section.is_excluded())


FIGURE = (
    '<p>Prose about the gates.</p><div class="dl-figure"><svg viewBox="0 0 10 '
    '10"><g><text>0.25</text>'
    "<text>tick label</text></g></svg></div>"
    '<p>Inline <span class="math math-inline"><math alttext="\\hat '
    'm"><mover><mi>m</mi><mo>^</mo></mover>'
    "</math></span> math.</p><p>After.</p>"
)


def test_exclude_from_search_keeps_prose_and_drops_figure_text_and_math():
    hook = load_hook()
    before = indexed_text(FIGURE)
    assert "tick label" in before and "^" in before  # what Material would index without the hook
    after = indexed_text(hook.exclude_from_search(FIGURE))
    assert "tick label" not in after and "0.25" not in after and "^" not in after
    assert "Prose about the gates." in after and "Inline" in after and "After." in after


def test_exclude_from_search_marks_each_element_once():
    hook = load_hook()
    once = hook.exclude_from_search('<svg data-search-exclude x="1"></svg><math></math>')
    assert once.count("data-search-exclude") == 2
    assert hook.exclude_from_search(once) == once


def test_page_tags_name_topics_and_chapters():
    hook = load_hook()
    assert hook.page_tags("papers/03-sequence-modeling/03-forget-gate.md") == [
        "Learning to forget",
        "Forget gate",
    ]
    assert hook.page_tags("papers/02-optimization-and-regularization/07-gelu.md") == ["GELU"]
    assert hook.page_tags("papers/03-sequence-modeling/05-encoder-decoder.md") == [
        "Encoder-decoder"
    ]
    assert hook.page_tags("essays/02-constraints/01-data.md") == ["Data"]
    assert hook.page_tags("docs/performance.md") == []


@pytest.fixture(scope="module")
def search_index():
    return json.loads((built_site() / "search" / "search_index.json").read_text(encoding="utf-8"))


def _topic_queries():
    from impl.catalog import TOPICS

    hook = load_hook()
    queries = {}
    for topic in TOPICS:
        if topic.implemented:
            url = topic.page.removesuffix(".md") + "/"
            for name in hook.page_tags(topic.page):
                queries[name] = url
    return queries


@pytest.mark.site
def test_search_index_holds_no_math_or_figure_text(search_index):
    text = " ".join(doc["text"] + " " + doc["title"] for doc in search_index["docs"])
    for char in ("\u2061", "\u2062"):  # MathML's invisible operators (function application, times)
        assert char not in text, f"math in the search index: {char!r}"
    assert "data-search-exclude" not in text
    forget = [
        d
        for d in search_index["docs"]
        if d["location"].startswith("papers/03-sequence-modeling/03-forget-gate/")
    ]
    assert forget and all(d.get("tags") == ["Learning to forget", "Forget gate"] for d in forget)


@pytest.mark.site
@pytest.mark.skipif(
    shutil.which("node") is None, reason="needs Node to run Material's search worker"
)
def test_search_ranks_each_topic_page_first_for_its_name(search_index, tmp_path):
    queries = _topic_queries()
    assert "Forget gate" in queries and "GELU" in queries
    (tmp_path / "rank.js").write_text(RANK_JS)
    (tmp_path / "queries.json").write_text(json.dumps(list(queries)))
    worker = next(WORKERS.glob("search.*.min.js"))
    result = subprocess.run(
        [
            "node",
            str(tmp_path / "rank.js"),
            str(worker),
            str(built_site() / "search" / "search_index.json"),
            str(tmp_path / "queries.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ranked = json.loads(result.stdout)
    wrong = {q: ranked[q][:2] for q, url in queries.items() if not ranked[q] or ranked[q][0] != url}
    assert not wrong, wrong
