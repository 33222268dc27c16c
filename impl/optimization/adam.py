"""2.8 Adam — and the gradient-descent family it grew from, written by hand as Optax transformations.

Kingma & Ba, *Adam: a method for stochastic optimization*, ICLR 2015.
https://arxiv.org/abs/1412.6980

Every optimizer here is an ``optax.GradientTransformation``: a pure ``init(params) -> state``
and ``update(grads, state, params) -> (updates, state)``, with the state a ``NamedTuple``.
Public optimizers are ``optax.chain``s of small ``scale_by_*`` blocks, exactly as in Optax, so
they mix freely with Optax's own transformations.

This file currently holds stochastic gradient descent with momentum (Rumelhart, Hinton &
Williams 1986, eq. 9), which topic 1.1 trains with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from impl import checks

__all__ = ["ScalarOrSchedule", "scale_by_learning_rate", "sgd", "trace"]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far


class TraceState(NamedTuple):
    trace: optax.Params  # same tree as params: the momentum buffer


def _check_learning_rate(learning_rate: ScalarOrSchedule) -> None:
    if callable(learning_rate):
        return
    checks.in_range("learning_rate", learning_rate, 0.0, float("inf"))


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Multiply updates by ``-learning_rate`` (a float or a schedule ``count -> rate``)."""
    _check_learning_rate(learning_rate)

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
        return updates, ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def trace(decay: float, nesterov: bool = False) -> optax.GradientTransformation:
    r"""Momentum: keep a decaying sum of past gradients, $v_t = g_t + \mu\, v_{t-1}$.

    With ``nesterov=True`` the step uses $g_t + \mu\, v_t$ (Sutskever et al., 2013).
    """
    checks.in_range("decay", decay, 0.0, 1.0, high_inclusive=False)

    def init(params):
        return TraceState(trace=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        new_trace = jax.tree.map(lambda g, v: g + decay * v, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, v: g + decay * v, updates, new_trace)
        else:
            updates = new_trace
        return updates, TraceState(trace=new_trace)

    return optax.GradientTransformation(init, update)


def sgd(learning_rate: ScalarOrSchedule, momentum: float | None = None, nesterov: bool = False):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    $$\Delta w(t) = -\varepsilon\, \frac{\partial E}{\partial w}(t) + \alpha\, \Delta w(t-1)$$

    is eq. 9 of Rumelhart, Hinton & Williams (1986), with ``learning_rate`` $=\varepsilon$
    and ``momentum`` $=\alpha$. (Written as Optax does, the buffer accumulates gradients and
    the learning rate scales it afterwards; for a constant rate the two are identical.)
    """
    _check_learning_rate(learning_rate)
    if momentum is None:
        return scale_by_learning_rate(learning_rate)
    return optax.chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))
