"""Train several small networks at once: stack their parameters, vmap their loss, sum.

An essay experiment compares many runs of one model — different training-set sizes, label
noise, widths, seeds. Compiling and launching each run separately would spend most of the
time budget on overhead, so the runs share one compiled loop: the parameters of run ``r`` sit
at index ``r`` of every leaf (a leading "run" axis), and the training loss is the *sum* of the
runs' losses. Run ``r``'s loss depends only on run ``r``'s parameters, so the gradient of the
sum with respect to them is exactly that run's own gradient, and any element-wise optimizer
(SGD, momentum, Adam) updates each run exactly as if it were trained alone.

Shapes: a stacked tree has leaves ``[runs, ...]``; index vectors are ``int32[runs, batch]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks

__all__ = ["log_log_fit", "prefix_batches", "stack", "unstack"]


def stack(trees: Sequence) -> object:
    """Stack a list of identically-shaped pytrees along a new leading "run" axis."""
    if len(trees) == 0:
        raise ValueError("trees: expected at least one pytree to stack")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, index: int) -> object:
    """Run ``index`` of a stacked pytree (the inverse of :func:`stack` for one run)."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def prefix_batches(key: jax.Array, sizes: jax.Array, batch: int) -> jax.Array:
    """For each run ``r``, ``batch`` example indices drawn uniformly from ``[0, sizes[r])``.

    This is how a run sees only the first ``sizes[r]`` training examples while every run
    shares one array of data. ``sizes`` is ``int32[runs]``; returns ``int32[runs, batch]``.
    """
    checks.positive_int("batch", batch)
    sizes = jnp.asarray(sizes, jnp.int32)
    if sizes.ndim != 1:
        raise ValueError(f"sizes: expected a vector [runs], got shape {sizes.shape}")
    keys = jax.random.split(key, sizes.shape[0])
    return jax.vmap(lambda k, n: jax.random.randint(k, (batch,), 0, n))(keys, sizes)


def log_log_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through ``(log x, log y)``: returns ``(exponent, prefactor)``.

    ``y ≈ prefactor * x ** exponent`` — a power law is a straight line on log-log axes.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(
            f"x, y: expected two vectors of the same length >= 2, got {x.shape} and {y.shape}"
        )
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("x, y: a power-law fit needs strictly positive values")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(np.exp(intercept))
