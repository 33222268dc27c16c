import pytest

from impl.__main__ import main


def test_cli_lists_topics(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "1.1" in out and "dnn" in out and "5.6" in out


def test_cli_rejects_unknown_topic(capsys):
    with pytest.raises(SystemExit):
        main(["nope"])
    assert "topic: expected a topic number or name" in capsys.readouterr().err


@pytest.mark.claim
def test_cli_runs_a_topic_and_saves_its_figure(tmp_path, capsys):
    out = tmp_path / "dnn.png"
    assert main(["1.1", "--out", str(out), "--no-progress"]) == 0
    assert out.exists() and out.stat().st_size > 10_000
    assert "figure saved to" in capsys.readouterr().out


def test_cli_lists_the_essay_chapters_under_names_that_are_not_topic_numbers(capsys):
    from impl import catalog, essay

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "essay:size" in out and "essay:future" in out
    chapters = {c.number for c in catalog.CHAPTERS}
    topics = {t.number for t in catalog.TOPICS} | {t.name for t in catalog.TOPICS}
    for name, entry in essay.RUNS.items():
        assert name.startswith("essay:") and name not in topics
        assert entry.chapter in chapters, name
        figures = [run.figure for run in entry.runs]
        assert len(set(figures)) == len(figures), name
    # every chapter whose page runs code has a command-line name
    assert {e.chapter for e in essay.RUNS.values()} == chapters


def test_every_essay_target_names_a_function_the_cli_can_call():
    import importlib
    import inspect

    from impl import essay

    for entry in essay.RUNS.values():
        for run in entry.runs:
            module_name, function_name = run.target.split(":")
            module = importlib.import_module(module_name)
            function = getattr(module, function_name)
            parameters = inspect.signature(function).parameters
            if "seed" not in parameters and any(p.default is p.empty for p in parameters.values()):
                assert callable(getattr(module, "load", None)), (
                    f"{run.target} needs the module's load()"
                )


@pytest.mark.parametrize(
    ("query", "name"),
    [("essay:size", "essay:size"), ("essay:2.2", "essay:size"), ("essay:scaling", "essay:size"),
     ("ESSAY:Ablation", "essay:optimization"), ("essay:inductive_bias", "essay:architecture")],
)  # fmt: skip
def test_cli_finds_a_chapter_by_name_number_or_experiment_module(query, name):
    from impl.__main__ import find_essay_run

    assert find_essay_run(query)[0] == name


def test_cli_rejects_unknown_chapter(capsys):
    with pytest.raises(SystemExit):
        main(["essay:nope"])
    assert "essay: expected a chapter name" in capsys.readouterr().err


def test_cli_names_several_figures_after_out():
    from impl.__main__ import _figure_path

    assert _figure_path(None, "scaling", True) == "scaling.png"
    assert _figure_path("figs/x.svg", "scaling", False) == "figs/x.svg"
    assert _figure_path("figs/x.svg", "scaling", True) == "figs/x-scaling.svg"


def test_cli_runs_an_essay_chapter_and_saves_its_figures(tmp_path, capsys):
    assert main(["essay:leverage", "--out", str(tmp_path / "leverage.svg"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "finished in" in out and "figure saved to" in out
    assert (tmp_path / "leverage.svg").stat().st_size > 10_000
    assert main(["essay:inspiration", "--out", str(tmp_path / "inspiration.png")]) == 0
    assert (tmp_path / "inspiration.png").stat().st_size > 10_000


def test_cli_points_from_a_topic_number_to_the_chapter_of_the_same_number():
    from impl.__main__ import chapter_hint

    assert "python -m impl essay:size" in chapter_hint("2.2") and "ReLU" in chapter_hint("2.2")
    assert chapter_hint("3.7") is None
