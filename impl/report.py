"""What every topic's experiment returns: headline numbers, a printable summary and a figure.

Each topic module defines ``experiment(seed=0, *, progress=None) -> Report``. The page prints
the report and shows its figure; the command line (``python -m impl <topic>``) prints it and
saves the figure; the claim test asserts on ``report.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

__all__ = ["Report"]


@dataclass
class Report:
    """The result of a topic's experiment.

    Attributes:
        title: one line naming the experiment.
        metrics: headline numbers, ``{"mlp_test_accuracy": 0.99, ...}`` (plain floats).
        lines: the human-readable summary, one string per line (a small table is fine).
        figure: the experiment's matplotlib figure.
        seconds: wall-clock time of the experiment, compilation included.
        extra: anything else a page may want to plot (histories, predictions).
    """

    title: str
    metrics: dict[str, float]
    lines: list[str]
    figure: Figure | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        body = "\n".join(self.lines)
        return f"{self.title}\n{body}\n(finished in {self.seconds:.1f} s, compilation included)"
