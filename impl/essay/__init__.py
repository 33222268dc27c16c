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
* :mod:`impl.essay.energy` — chapter 2.7 *Energy*: the energy of a small training run on
  this machine (from the processor's counters where readable, else estimated), scaled up to
  the milestones by their compute and the hardware file's joules per operation.
* :mod:`impl.essay.leverage` — chapter 2.8 *Constraints & leverage*: the growth of training
  compute split between better chips and more spending, from the milestone and hardware files.
* :mod:`impl.essay.links` — keeps the chapters' links to Part 2 in step with the pages that
  exist (``python -m impl.essay.links``).

Each experiment follows the project's contract,
``experiment(seed: int = 0, *, progress: bool | None = None) -> Report``, and trains with
:func:`impl.training.train` and the project's own optimizers. The runs of one experiment
train *side by side*: their parameters are stacked along a leading "run" axis and one
compiled loop updates all of them at once (:mod:`impl.essay.side_by_side`). The runs never
interact — each one's loss depends only on its own parameters — so this is exactly the same
as training them one after another, only faster. Two chapters differ: 2.7 trains a single
network (and times it), and 2.8's :func:`~impl.essay.leverage.analysis` trains nothing — it
fits trends to the two sourced tables.
"""
