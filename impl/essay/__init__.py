"""Part 1, the essay: the milestone data behind its figures and one live experiment per chapter.

* :mod:`impl.essay.milestones` — ``essays/milestones.csv`` (notable systems, 1987 onwards,
  every figure with its source): loading, validation, doubling-time fits and the figures.
* :mod:`impl.essay.learning_curve` — chapter 2.1 *Data*: held-out accuracy against the
  number of training examples, with clean and with noisy labels.
* :mod:`impl.essay.scaling` — chapter 2.2 *Size*: test loss against parameter count across
  widths, with a power-law fit.
* :mod:`impl.essay.ablation` — chapter 2.3 *Optimization & regularization*: a deep network
  trained with each trick switched off in turn.
* :mod:`impl.essay.inductive_bias` — chapter 2.4 *Architecture*: a multi-layer perceptron
  against a convolutional network with the same number of parameters.
* :mod:`impl.essay.hardware` — ``essays/hardware.csv`` (accelerators and CPUs, 2006 onwards,
  every figure with its source): loading, validation, FLOP/s per watt and per dollar.
* :mod:`impl.essay.compute` — chapter 2.5 *Compute*: this machine's matrix-multiply throughput
  against size, and how long the milestones' training runs would take here.
* :mod:`impl.essay.efficiency` — chapter 2.6 *Compute efficiency*: one computation written
  several ways (a Python loop, ``vmap``, ``jit``; attention materialised or blocked; float32
  and bfloat16), timed side by side.
* :mod:`impl.essay.energy` — chapter 2.7 *Energy*: the energy of a small training run on
  this machine (from the processor's counters where readable, else estimated), scaled up to
  the milestones by their compute and the hardware file's joules per operation.
* :mod:`impl.essay.leverage` — chapter 2.8 *Constraints & leverage*: the growth of training
  compute split between better chips and more spending, from the milestone and hardware files.
* :mod:`impl.essay.investments` — chapter 3 *Narratives*: ``essays/investments.csv``,
  publicly reported investments and compute commitments, each with its source.
* :mod:`impl.essay.inspiration` — chapter 4 *Inspiration*: ``essays/inspiration.csv``, each
  topic's paper and the source of inspiration it states.
* :mod:`impl.essay.compression` — chapter 5 *Intelligence*: prediction is compression — a small
  language model's bits per character on held-out project text against gzip, bzip2 and xz.
* :mod:`impl.essay.future` — chapter 6 *Future*: the milestone trends extrapolated, with their
  uncertainty, against the limits the earlier chapters measured.
* :mod:`impl.essay.links` — keeps the chapters' links to Part 2 in step with the pages that
  exist (``python -m impl.essay.links``).

Each experiment follows the project's contract,
``experiment(seed: int = 0, *, progress: bool | None = None) -> Report``, and trains with
:func:`impl.training.train` and the project's own optimizers. The runs of one experiment
train *side by side*: their parameters are stacked along a leading "run" axis and one
compiled loop updates all of them at once (:mod:`impl.essay.side_by_side`). The runs never
interact — each one's loss depends only on its own parameters — so this is exactly the same
as training them one after another, only faster. Some chapters differ: 2.5 and 2.6 time
computations rather than train, 2.7 trains a single network (and times it), 5 trains one small
language model, and 2.8's :func:`~impl.essay.leverage.analysis`, 3, 4 and 6 train nothing —
they read and fit the sourced tables.
"""

from __future__ import annotations

from typing import NamedTuple


class Run(NamedTuple):
    """One thing a chapter runs: ``"module:function"`` and the file name of the figure it makes.

    The function is an experiment (``experiment(seed=0, *, progress=None) -> Report``), an
    analysis of the sourced tables (``analysis() -> Report``), or a figure of a table
    (``figure(rows)``, called with the module's ``load()``).
    """

    target: str
    figure: str


class EssayRun(NamedTuple):
    """A chapter's experiments and figures, as the command line runs them."""

    chapter: str  # the chapter's number in `impl.catalog.CHAPTERS`
    runs: tuple[Run, ...]


# The command-line names of the chapters (``python -m impl essay:size``). They start with
# ``essay:`` so that they never clash with a topic number: chapter 2.2 is *Size*, topic 2.2 ReLU.
# The figure names are the ones the chapters' pages give to `impl.plotting.show`.
RUNS: dict[str, EssayRun] = {
    "essay:intro": EssayRun("1", (Run("impl.essay.milestones:compute_figure", "compute"),)),
    "essay:data": EssayRun(
        "2.1",
        (
            Run("impl.essay.learning_curve:experiment", "learning-curve"),
            Run("impl.essay.milestones:data_figure", "data"),
        ),
    ),
    "essay:size": EssayRun(
        "2.2",
        (
            Run("impl.essay.milestones:parameters_figure", "parameters"),
            Run("impl.essay.scaling:experiment", "scaling"),
        ),
    ),
    "essay:optimization": EssayRun("2.3", (Run("impl.essay.ablation:experiment", "ablation"),)),
    "essay:architecture": EssayRun(
        "2.4", (Run("impl.essay.inductive_bias:experiment", "inductive-bias"),)
    ),
    "essay:compute": EssayRun(
        "2.5",
        (
            Run("impl.essay.milestones:compute_figure", "compute"),
            Run("impl.essay.hardware:throughput_figure", "hardware-throughput"),
            Run("impl.essay.compute:experiment", "compute-experiment"),
        ),
    ),
    "essay:efficiency": EssayRun(
        "2.6",
        (
            Run("impl.essay.hardware:ridge_figure", "ridge"),
            Run("impl.essay.efficiency:experiment", "efficiency"),
        ),
    ),
    "essay:energy": EssayRun("2.7", (Run("impl.essay.energy:experiment", "energy"),)),
    "essay:leverage": EssayRun("2.8", (Run("impl.essay.leverage:analysis", "leverage"),)),
    "essay:narratives": EssayRun("3", (Run("impl.essay.investments:figure", "investments"),)),
    "essay:inspiration": EssayRun("4", (Run("impl.essay.inspiration:figure", "inspiration"),)),
    "essay:intelligence": EssayRun("5", (Run("impl.essay.compression:experiment", "compression"),)),
    "essay:future": EssayRun("6", (Run("impl.essay.future:analysis", "future"),)),
}
