"""The built site: strict build, math rendered to MathML, and nothing fetched from another host."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = re.compile(
    r"""(?:<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:<link\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*["']?[^>]*>)"""
    r"""|(?:@import\s+(?:url\()?["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)""",
    re.IGNORECASE,
)


def external_assets(site: Path) -> list[str]:
    """Every reference to an asset on another host in the built HTML and CSS."""
    found = []
    for path in site.rglob("*"):
        if path.suffix not in {".html", ".css"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in EXTERNAL.finditer(text):
            snippet = match.group(0)
            if snippet.lower().startswith("<link") and not re.search(
                r"rel=[\"']?(stylesheet|preload|icon|modulepreload|manifest)", snippet
            ):
                continue  # a plain hyperlink-like <link rel="canonical"> is not an asset
            found.append(f"{path.relative_to(site)}: {snippet[:120]}")
    return found


def test_detector_catches_external_assets(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example.com/x.js"></script><a href="https://arxiv.org">ok</a>'
    )
    (tmp_path / "b.css").write_text("@font-face { src: url(https://fonts.example.com/f.woff2) }")
    (tmp_path / "c.html").write_text('<link rel="stylesheet" href="//fonts.example.com/css">')
    assert len(external_assets(tmp_path)) == 3


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "IMPL_EXAMPLES": "skip", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return site


@pytest.mark.site
def test_site_references_no_external_asset(built_site):
    assert external_assets(built_site) == []


@pytest.mark.site
def test_site_renders_math_as_mathml_and_has_every_page(built_site):
    page = (built_site / "papers/01-deep-neural-networks/01-dnn/index.html").read_text()
    assert page.count("<math") >= 5 and "arithmatex" not in page
    assert "8&lt;" not in page and "--8<--" not in page  # every snippet was included
    assert "ACTIVATIONS" in page and "NnxMLP" in page and "LinenMLP" in page
    home = (built_site / "index.html").read_text()
    assert "papers/01-deep-neural-networks/01-dnn/" in home  # the map links the topic
    for md in list((ROOT / "essays").rglob("*.md")) + list((ROOT / "papers").rglob("*.md")):
        rel = md.relative_to(ROOT).with_suffix("")
        target = built_site / (rel.parent if rel.name == "index" else rel) / "index.html"
        assert target.exists(), target
