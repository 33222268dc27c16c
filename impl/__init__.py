"""deep-learning: working, tested JAX code for the papers that moved the field.

One subpackage per section of Part 2 — `impl.deep_networks`, `impl.optimization`,
`impl.sequence`, `impl.transformers`, `impl.generation` — one module per topic,
plus the shared pieces: `impl.data` (toy data), `impl.training` (the training loop),
`impl.plotting` (figures), `impl.report` (what an experiment returns),
`impl.checks` (argument validation) and `impl.catalog` (the map of topics).
"""

__version__ = "0.1.0"
