"""Command line: list the topics and chapters, or run one's experiment and save its figures.

python -m impl                 # the map: every topic (marked if implemented), the essay's chapters
python -m impl 1.1             # run topic 1.1 (or: python -m impl dnn), save dnn.png
python -m impl dnn --seed 3 --out figures/dnn.svg
python -m impl essay:size      # chapter 2.2 of the essay: its figures and experiment
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

from impl import catalog, essay, plotting
from impl.report import Report


def _list() -> str:
    lines = []
    for section in catalog.SECTIONS:
        lines.append(f"{section.number}. {section.title}")
        for t in (t for t in catalog.TOPICS if t.section is section):
            mark = "✓" if t.implemented else " "
            lines.append(f"  {mark} {t.number:<5} {t.name:<20} {t.title}")
    lines.append("\nPart 1, the essay: each chapter's experiments and figures")
    chapters = {c.number: c for c in catalog.CHAPTERS}
    for name, entry in essay.RUNS.items():
        chapter = chapters[entry.chapter]
        figures = ", ".join(run.figure for run in entry.runs)
        lines.append(f"    {name:<20} {chapter.number:<4} {chapter.title:<30} figures: {figures}")
    lines.append(
        "\n✓ = implemented. Run one with: python -m impl "
        "<number or name>, or python -m impl essay:<chapter>"
    )
    return "\n".join(lines)


def find_essay_run(query: str) -> tuple[str, essay.EssayRun]:
    """Look a chapter up by its command-line name (``essay:size``), its number (``essay:2.2``)
    or the module of its experiment (``essay:scaling``)."""
    wanted = query.strip().lower().replace("_", "-")
    for name, entry in essay.RUNS.items():
        modules = {
            run.target.split(":")[0].rsplit(".", 1)[1].replace("_", "-")
            for run in entry.runs
            if run.target.endswith((":experiment", ":analysis"))
        }
        if wanted in (name, f"essay:{entry.chapter}") or wanted in {f"essay:{m}" for m in modules}:
            return name, entry
    names = ", ".join(essay.RUNS)
    raise ValueError(
        f"essay: expected a chapter name ({names}) or essay:<chapter number>; got {query!r}"
    )


def chapter_hint(number: str) -> str | None:
    """Where a topic number is also a chapter number of the essay, the chapter's own command."""
    chapters = {c.number: c for c in catalog.CHAPTERS}
    if number not in chapters:
        return None
    name = next(n for n, e in essay.RUNS.items() if e.chapter == number)
    topic = catalog.find_topic(number)
    return (
        f"(running topic {number}, {topic.title}; the essay's chapter {number}, "
        f"{chapters[number].title}, is: python -m impl {name})"
    )


def _figure_path(out: str | None, figure: str, several: bool) -> str:
    if out is None:
        return f"{figure}.png"
    if not several:
        return out
    path = Path(out)
    return str(path.with_name(f"{path.stem}-{figure}{path.suffix or '.png'}"))


def run_target(target: str, *, seed: int = 0, progress: bool | None = None):
    """Call ``"module:function"`` as the chapter's page does; returns a `Report` or a figure."""
    module_name, function_name = target.split(":")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    parameters = inspect.signature(function).parameters
    if "seed" in parameters:
        return function(seed=seed, progress=progress)
    required = [
        p for p in parameters.values() if p.default is p.empty and p.kind is not p.VAR_KEYWORD
    ]
    return function(module.load()) if required else function()


def _run_essay(query: str, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        _, entry = find_essay_run(query)
    except ValueError as error:
        parser.error(str(error))
    progress = False if args.no_progress else None
    several = len(entry.runs) > 1
    for run in entry.runs:
        result = run_target(run.target, seed=args.seed, progress=progress)
        figure = result.figure if isinstance(result, Report) else result
        if isinstance(result, Report):
            print(result)
        if figure is not None:
            path = _figure_path(args.out, run.figure, several)
            print(f"figure saved to {plotting.save(figure, path)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impl", description=__doc__.split("\n")[0])
    parser.add_argument(
        "topic",
        nargs="?",
        help="topic number (1.1) or name (dnn), or an essay chapter (essay:size); "
        "omit to list them",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0, as on the site)")
    parser.add_argument(
        "--out",
        help="where to save the figure (.png, .svg or .pdf); default <name>.png. "
        "A chapter with several figures saves <out stem>-<figure name><suffix>",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.topic is None:
        print(_list())
        return 0
    if args.topic.strip().lower().startswith("essay:"):
        return _run_essay(args.topic, args, parser)
    try:
        topic = catalog.find_topic(args.topic)
    except ValueError as error:
        parser.error(str(error))
    if not topic.implemented:
        print(f"topic {topic.number} ({topic.title}) is not implemented yet", file=sys.stderr)
        return 2
    hint = chapter_hint(topic.number)
    if hint:
        print(hint, file=sys.stderr)
    report = topic.load_experiment().experiment(
        seed=args.seed, progress=False if args.no_progress else None
    )
    print(report)
    if report.figure is not None:
        print(f"figure saved to {plotting.save(report.figure, args.out or f'{topic.name}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
