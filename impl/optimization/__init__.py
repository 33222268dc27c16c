"""Section 2 — optimization & regularization: the tricks that made deep networks trainable.

Optimizers here are written by hand as Optax ``GradientTransformation``s (an ``init``/``update``
pair with a ``NamedTuple`` state), so they compose with Optax's own pieces and every model in
the project trains with them.
"""
