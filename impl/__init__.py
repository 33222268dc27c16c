"""deep-learning: working, tested JAX code for the papers that moved the field.

One subpackage per section of Part 2 — :mod:`impl.deep_networks`, :mod:`impl.optimization`,
:mod:`impl.sequence`, :mod:`impl.transformers`, :mod:`impl.generation` — one module per topic,
plus the shared pieces: :mod:`impl.data` (toy data), :mod:`impl.training` (the training loop),
:mod:`impl.plotting` (figures), :mod:`impl.report` (what an experiment returns),
:mod:`impl.checks` (argument validation) and :mod:`impl.catalog` (the map of topics).
"""

__version__ = "0.1.0"
