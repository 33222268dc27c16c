"""Command line: list the topics, or run one topic's experiment and save its figure.

python -m impl                 # the map: every topic, marked where implemented
python -m impl 1.1             # run topic 1.1 (or: python -m impl dnn), save dnn.png
python -m impl dnn --seed 3 --out figures/dnn.svg
"""

from __future__ import annotations

import argparse
import sys

from impl import catalog, plotting


def _list() -> str:
    lines = []
    for section in catalog.SECTIONS:
        lines.append(f"{section.number}. {section.title}")
        for t in (t for t in catalog.TOPICS if t.section is section):
            mark = "✓" if t.implemented else " "
            lines.append(f"  {mark} {t.number:<5} {t.name:<20} {t.title}")
    lines.append("\n✓ = implemented. Run one with: python -m impl <number or name>")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impl", description=__doc__.split("\n")[0])
    parser.add_argument("topic", nargs="?", help="topic number (1.1) or name (dnn); omit to list topics")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0, as on the site)")
    parser.add_argument("--out", help="where to save the figure (.png, .svg or .pdf); default <name>.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.topic is None:
        print(_list())
        return 0
    try:
        topic = catalog.find_topic(args.topic)
    except ValueError as error:
        parser.error(str(error))
    if not topic.implemented:
        print(f"topic {topic.number} ({topic.title}) is not implemented yet", file=sys.stderr)
        return 2
    report = topic.load_experiment().experiment(seed=args.seed, progress=False if args.no_progress else None)
    print(report)
    if report.figure is not None:
        print(f"figure saved to {plotting.save(report.figure, args.out or f'{topic.name}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
