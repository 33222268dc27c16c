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
    assert out.startswith(
        '<div class="dl-figure" data-name="figure"><svg aria-label="a &quot;quoted&quot; label"'
    )
    monkeypatch.setenv("IMPL_SITE_BUILD", "0")
    monkeypatch.chdir(tmp_path)
    fig, _ = plotting.figure()
    plotting.show(fig, name="demo")
    assert (tmp_path / "demo.png").exists()
    assert "figure saved to demo.png" in capsys.readouterr().out
    assert os.environ["IMPL_SITE_BUILD"] == "0"


# ---------------------------------------------------------------------------------------
# Readable figures (issue #19): 1:1 in the column, at most three panels in a row, text >= 8 pt.
# ---------------------------------------------------------------------------------------
import ast  # noqa: E402
import importlib.util  # noqa: E402
import itertools  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_figure_refuses_more_than_three_panels_in_a_row_or_a_wider_figure():
    with pytest.raises(ValueError, match="ncols"):
        plotting.figure(4)
    with pytest.raises(ValueError, match="width"):
        plotting.figure(2, width=plotting.WIDTH + 0.5)
    fig, axes = plotting.figure(3, 2)  # six panels on two rows is fine
    assert fig.get_figwidth() == plotting.WIDTH and axes.shape == (2, 3)
    plotting.check(fig)
    plt.close(fig)


def test_check_refuses_small_text_wide_figures_and_four_panels_side_by_side():
    fig, ax = plotting.figure()
    ax.text(0.5, 0.5, "tiny", fontsize=plotting.MIN_FONT_PT - 1)
    with pytest.raises(ValueError, match="tiny"):
        plotting.check(fig)
    fig, _ = plt.subplots(1, 4, figsize=(plotting.WIDTH, 3))
    with pytest.raises(ValueError, match="4 panels side by side"):
        plotting.check(fig)
    fig, _ = plt.subplots(figsize=(plotting.WIDTH + 1, 3))
    with pytest.raises(ValueError, match="wide"):
        plotting.check(fig)
    plt.close("all")


def test_twin_axes_insets_and_colour_bars_are_not_extra_panels():
    fig, axes = plotting.figure(3)
    axes[0].twinx()
    axes[1].inset_axes([0.6, 0.6, 0.3, 0.3])
    fig.colorbar(axes[2].imshow([[0, 1], [1, 0]]), ax=axes[2])
    plotting.check(fig)
    plt.close(fig)


def test_svg_shrinks_no_further_than_10px_text():
    fig, ax = plotting.figure(height=2.0)
    ax.plot([0, 1], [0, 1])
    ax.set_title("title", fontsize=12)  # the tick labels (9 pt) are the smallest text
    svg = plotting.to_svg(fig)
    width_pt = 72 * plotting.WIDTH
    assert f'width="{width_pt:g}pt"' in svg  # drawn 1:1: 504 pt = 672 CSS px
    floor = float(re.search(r"min-width:(\d+)px", svg).group(1))
    # 9 pt text -> 10 px
    assert floor == pytest.approx(plotting.MIN_TEXT_PX * width_pt / 9, abs=0.5)
    assert 9 * 4 / 3 >= 12  # and at 1:1 (a desktop window) that same text is 12 CSS px


def test_show_names_the_figure_for_the_standalone_file(capsys, monkeypatch):
    monkeypatch.setenv("IMPL_SITE_BUILD", "1")
    fig, _ = plotting.figure()
    plotting.show(fig, alt="x", name="dnn")
    assert capsys.readouterr().out.startswith('<div class="dl-figure" data-name="dnn"><svg ')


def _text_box(note, renderer):
    """The box of a label's text alone, without its leader line."""
    if hasattr(note, "update_positions"):
        note.update_positions(renderer)
    return Text.get_window_extent(note, renderer)


def _overlaps(boxes):
    return [
        (i, j)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
        if min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5
    ]


def test_label_points_keeps_crowded_labels_apart_and_inside_the_axes():
    fig, ax = plotting.figure(height=3)
    points = [(2020 + (i % 3), 10.0 ** (1 + 0.15 * i), f"system {i}") for i in range(10)]
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    ax.set(yscale="log", xlim=(2015, 2026))
    notes = plotting.label_points(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [_text_box(n, renderer) for n in notes]
    assert len(notes) == 10 and _overlaps(boxes) == []
    frame = ax.get_window_extent(renderer)
    assert all(
        frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        for b in boxes
    )
    plt.close(fig)


def test_milestone_charts_have_no_overlapping_labels_and_pass_the_checks():
    from impl.essay import hardware, milestones

    rows = milestones.load()
    figures = [
        milestones.parameters_figure(rows),
        milestones.compute_figure(rows),
        milestones.data_figure(rows),
    ]
    figures += [hardware.throughput_figure(hardware.load()), hardware.ridge_figure(hardware.load())]
    for fig in figures:
        plotting.check(fig)
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            boxes = [_text_box(t, renderer) for t in ax.texts if t.get_text().strip()]
            assert _overlaps(boxes) == [], [
                ax.texts[i].get_text() for pair in _overlaps(boxes) for i in pair
            ]
        plt.close(fig)


def _calls_to_figure():
    for path in sorted((ROOT / "impl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                yield path, node


def test_every_figure_in_impl_fits_the_column_with_readable_text():
    """A static check of every figure function, without running the experiments."""
    found = 0
    for path, call in _calls_to_figure():
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "figure"
            and getattr(func.value, "id", "") == "plotting"
        ):
            found += 1
            if call.args and isinstance(call.args[0], ast.Constant):
                assert call.args[0].value <= plotting.MAX_COLUMNS, where
            width = [k.value for k in call.keywords if k.arg == "width"]
            assert not width or (
                isinstance(width[0], ast.Constant) and width[0].value <= plotting.WIDTH
            ), where
        for keyword in call.keywords:
            if keyword.arg in ("fontsize", "title_fontsize", "labelsize") and isinstance(
                keyword.value, ast.Constant
            ):
                size = keyword.value.value
                assert not isinstance(size, (int, float)) or size >= plotting.MIN_FONT_PT, where
                assert size not in ("xx-small", "x-small"), where
    assert found >= 30


def _figures_hook():
    spec = importlib.util.spec_from_file_location("figures_hook", ROOT / "hooks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_writes_each_figure_as_a_standalone_svg_and_links_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMPL_SITE_BUILD", "1")
    for name in ("dnn", "dnn"):  # two figures with one name: the second file is dnn-2.svg
        fig, ax = plotting.figure()
        ax.plot([0, 1], [1, 0])
        plotting.show(fig, alt='a "quoted" label', name=name)
    html = "<p>text</p>" + capsys.readouterr().out
    page = SimpleNamespace(file=SimpleNamespace(dest_path="papers/x/01-dnn/index.html"))
    out = _figures_hook().on_post_page(html, page, {"site_dir": str(tmp_path)})
    assert out.count('class="dl-figure-open" href="dnn.svg"') == 1 and 'href="dnn-2.svg"' in out
    assert out.count("<svg") == 2  # the inline figures stay
    written = tmp_path / "papers/x/01-dnn/dnn.svg"
    root = ET.fromstring(written.read_bytes())  # well-formed XML on its own
    assert root.tag.endswith("svg") and "width" not in root.attrib and "viewBox" in root.attrib
    assert "color:#000" in root.attrib["style"] and root.find(
        "{http://www.w3.org/2000/svg}title"
    ).text == ('a "quoted" label')
    assert (tmp_path / "papers/x/01-dnn/dnn-2.svg").exists()
