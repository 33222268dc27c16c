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
