"""2.1 Weight decay — pull every weight towards zero, a little, at every step.

Krogh & Hertz, *A simple weight decay can improve generalization*, NIPS 4, 1991.
https://papers.nips.cc/paper/1991/hash/8eefcfdf5990e441f0fb6f3fad709e21-Abstract.html

Two ways to write the same wish, and they agree only for plain gradient descent:

* **coupled** (Krogh & Hertz): add $\\tfrac{\\lambda}{2}\\lVert w\\rVert^2$ to the loss, so the
  gradient gains $\\lambda w$ *before* the optimizer sees it (:func:`l2_penalty`,
  :func:`add_l2_to_gradient`);
* **decoupled** (Loshchilov & Hutter, 2019): let the optimizer compute its step from the data
  gradient alone, then add $\\lambda w$ to that step (:func:`add_decayed_weights`).

Both are ``optax.GradientTransformation``s over parameter pytrees of any shape, with Optax's
signature and state: ``mask`` (a pytree of bools — Python, NumPy or JAX — or a function
``params -> pytree of bools``) picks which leaves decay, through ``optax.masked`` as in Optax.
The experiment (the U-shaped test error, L2 inside Adam vs AdamW) lives in
:mod:`impl.optimization.weight_decay_experiment`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl.checks import hyperparameter

__all__ = [
    "add_decayed_weights",
    "add_l2_to_gradient",
    "full_mask",
    "l2_penalty",
    "matrices_only",
]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]
Mask = Any  # a pytree of bools (a prefix of the params tree) or a callable params -> such a tree


class WeightDecaySchedule(NamedTuple):
    # int32[], number of updates so far (read by the schedule; a constant keeps no state)
    count: jax.Array


def _check_weight_decay(weight_decay: ScalarOrSchedule) -> None:
    if not callable(weight_decay):
        hyperparameter("weight_decay", weight_decay, 0.0)


def _check_mask(mask: Mask) -> None:
    if mask is None or callable(mask):
        return
    for leaf in jax.tree.leaves(mask):
        is_bool_scalar = (
            isinstance(leaf, jax.Array | np.ndarray | np.bool_)
            and leaf.shape == ()
            and leaf.dtype == bool
        )
        if not (isinstance(leaf, bool) or is_bool_scalar):
            raise ValueError(
                "mask: expected a pytree of bools (Python, "
                f"NumPy or JAX scalars), got a leaf {leaf!r}"
            )


def full_mask(mask: Mask, params: optax.Params) -> optax.Params:
    """Resolve ``mask`` against ``params``: a tree of bools with exactly the params' structure.

    ``mask`` may be ``None`` (all True), a prefix tree of bools, or a callable returning one.
    A tree that does not fit the parameters raises ``ValueError`` naming ``mask``.
    """
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    tree = mask(params) if callable(mask) else mask
    _check_mask(tree)
    try:  # broadcast each bool over the subtree it heads
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), tree, params)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"mask: its tree {jax.tree.structure(tree)} does not match the parameters' "
            f"tree {jax.tree.structure(params)}"
        ) from error


def matrices_only(params: optax.Params) -> optax.Params:
    """A mask that decays matrices and kernels (``ndim > 1``) and spares biases and scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


# --8<-- [start:core]
def l2_penalty(params: optax.Params, weight_decay: float, mask: Mask = None) -> jax.Array:
    r"""The penalty Krogh & Hertz add to the cost: $\frac{\lambda}{2} \sum_i w_i^2$, summed over
    every kept leaf.

    Its gradient is $\lambda w$, so gradient descent on ``loss + l2_penalty`` shrinks each
    weight by the factor $1 - \eta\lambda$ per step before the data gradient acts.
    """
    _check_weight_decay(weight_decay)
    keep = jax.tree.leaves(full_mask(mask, params))
    squares = [
        jnp.sum(jnp.square(p)) for p, k in zip(jax.tree.leaves(params), keep, strict=True) if k
    ]
    return 0.5 * weight_decay * sum(squares, jnp.zeros([]))


def _add_scaled_params(weight_decay: ScalarOrSchedule, mask: Mask) -> optax.GradientTransformation:
    """``updates + weight_decay * params`` on the leaves ``mask`` keeps; the shared engine."""
    _check_weight_decay(weight_decay)
    _check_mask(mask)

    def init(params):
        del params
        return (
            WeightDecaySchedule(count=jnp.zeros([], jnp.int32))
            if callable(weight_decay)
            else optax.EmptyState()
        )

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("params: weight decay needs the parameters, pass them to update()")
        if not callable(weight_decay):
            if isinstance(weight_decay, int | float) and weight_decay == 0.0:
                return updates, state  # nothing to add (as Optax: the parameters are not even read)
            return jax.tree.map(lambda u, p: u + weight_decay * p, updates, params), state
        lam = weight_decay(state.count)
        updates = jax.tree.map(lambda u, p: u + lam * p, updates, params)
        return updates, WeightDecaySchedule(count=optax.safe_increment(state.count))

    decay = optax.GradientTransformation(init, update)
    if mask is None:
        return decay
    # the decay sees only the kept leaves; the others pass through
    masked = optax.masked(decay, mask)

    def init_masked(params):
        full_mask(mask, params)  # a mask that does not fit fails here, naming it, not mid-training
        return masked.init(params)

    return optax.GradientTransformationExtraArgs(init_masked, masked.update)


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Mask = None
) -> optax.GradientTransformation:
    r"""Decoupled weight decay: add $\lambda\, w$ to the optimizer's *step*,
    $u \leftarrow u + \lambda w$.

    Placed after an adaptive scaling such as Adam's, the decay is not divided by
    $\sqrt{\hat v}$: every weight shrinks at the same relative rate (AdamW). ``weight_decay``
    is a float $\ge 0$ or a schedule ``count -> rate``.
    """
    return _add_scaled_params(weight_decay, mask)


def add_l2_to_gradient(
    weight_decay: ScalarOrSchedule = 0.0, mask: Mask = None
) -> optax.GradientTransformation:
    r"""Coupled L2: add $\lambda\, w$ to the *gradient*, exactly what ``l2_penalty`` on the loss
    does.

    Placed first in a chain, every later transformation (momentum, Adam's normalisation) sees
    the penalty's gradient as if it came from the data.
    """
    return _add_scaled_params(weight_decay, mask)


# --8<-- [end:core]
