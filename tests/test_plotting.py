import os
import re

from impl import plotting


def test_svg_ink_follows_the_theme_and_has_no_external_references():
    fig, ax = plotting.figure()
    ax.plot([0, 1], [1, 0], label="line")
    ax.set(title="t", xlabel="x")
    ax.legend()
    svg = plotting.to_svg(fig)
    assert svg.startswith("<svg")
    assert "currentColor" in svg and "#010203" not in svg
    assert "<metadata>" not in svg
    assert not re.search(r"(href|src)=\"(https?:)?//", svg) and "url(http" not in svg


def test_svg_is_deterministic():
    def make():
        fig, ax = plotting.figure()
        ax.plot([0, 1, 2], [2, 0, 1])
        return plotting.to_svg(fig)

    assert make() == make()


def test_show_prints_svg_in_site_builds_and_saves_elsewhere(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPL_SITE_BUILD", "1")
    fig, _ = plotting.figure()
    plotting.show(fig, alt='a "quoted" label')
    out = capsys.readouterr().out
    assert out.startswith('<div class="dl-figure"><svg aria-label="a &quot;quoted&quot; label"')
    monkeypatch.setenv("IMPL_SITE_BUILD", "0")
    monkeypatch.chdir(tmp_path)
    fig, _ = plotting.figure()
    plotting.show(fig, name="demo")
    assert (tmp_path / "demo.png").exists()
    assert "figure saved to demo.png" in capsys.readouterr().out
    assert os.environ["IMPL_SITE_BUILD"] == "0"
