from pathlib import Path

import pytest

from impl.data import corpus
from impl.data.corpus import load_corpus, main, markdown_to_text

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code

ROOT = Path(__file__).resolve().parents[2]


def test_snapshot_loads_and_is_large_enough():
    text = load_corpus()
    assert isinstance(text, str) and text.endswith("\n")
    assert len(text.split()) >= 40_000
    assert "back-propagat" in text  # real prose from the pages
    for machinery in ("```", "--8<--", "$$", "exec=", "](http", "<div", "[^"):
        assert machinery not in text, machinery


def test_write_is_deterministic(tmp_path, capsys):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    assert main(["--write", "--output", str(first)]) == 0
    assert main(["--write", "--output", str(second), "--root", str(ROOT)]) == 0
    assert first.read_text(encoding="utf-8") == second.read_text(encoding="utf-8")
    assert len(first.read_text(encoding="utf-8").split()) >= 40_000
    assert "words" in capsys.readouterr().out


def test_markdown_to_text_keeps_prose_and_drops_machinery():
    page = "\n".join(
        [
            "# 1.1 Title — a subtitle",
            "",
            '!!! abstract "In short"',
            "",
            "    - First **point**, with *emphasis*",
            "      that wraps.",
            "",
            "A paragraph with `code`, a [link](https://example.com) and math $x^2$ here[^a].",
            "It continues.",
            "",
            "$$E = mc^2$$",
            "",
            "```python",
            "print('dropped')",
            "```",
            "",
            '=== "Functional (Linen)"',
            "",
            "    ```python",
            '    --8<-- "impl/x.py:core"',
            "    ```",
            "",
            "| a | b |",
            "|---|---|",
            "| 1 | 2 |",
            "",
            "<!-- a comment -->",
            "[^a]: A. Author, *A title*, 2020. [arXiv:1](https://arxiv.org/abs/1)",
        ]
    )
    assert markdown_to_text(page).split("\n\n") == [
        "1.1 Title — a subtitle",
        "First point, with emphasis that wraps.",
        "A paragraph with code, a link and math here. It continues.",
        "A. Author, A title, 2020. arXiv:1",
    ]


def test_corpus_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="markdown: expected a str"):
        markdown_to_text(b"# bytes")
    with pytest.raises(ValueError, match="root: expected a directory"):
        corpus.build_corpus(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="root: no essays"):
        corpus.build_corpus(tmp_path)
