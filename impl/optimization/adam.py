"""2.8 Adam — and the gradient-descent family it grew from, written by hand as Optax transformations.

Kingma & Ba, *Adam: a method for stochastic optimization*, ICLR 2015.
https://arxiv.org/abs/1412.6980

The idea: keep, for every parameter, a running mean of its gradient (momentum) and a running
mean of its squared gradient, and step by their ratio. The step's size is then set by the
learning rate alone, whatever the scale of that parameter's gradient, so parameters with tiny
and huge gradients learn at comparable speeds. Dividing each running mean by
$1 - \\beta^t$ removes the bias towards zero that their zero start leaves in the first steps.

Every optimizer here is an ``optax.GradientTransformation``: a pure ``init(params) -> state``
and ``update(grads, state, params) -> (updates, state)``, with the state a ``NamedTuple``.
Public optimizers are ``optax.chain``s of small ``scale_by_*`` blocks, exactly as in Optax, so
they mix freely with Optax's own transformations. The family, in order of history:

* :func:`sgd` with (Nesterov) momentum — Rumelhart, Hinton & Williams 1986, eq. 9;
* :func:`adagrad` — Duchi, Hazan & Singer 2011;
* :func:`rmsprop` — Tieleman & Hinton 2012 (lecture 6.5 of *Neural Networks for Machine Learning*);
* :func:`adam` and :func:`adamw` — Kingma & Ba 2015; Loshchilov & Hutter 2019.

Shapes: parameters, gradients, updates and every moment are pytrees of the same structure
(any shapes); ``count`` is an ``int32[]`` scalar. The experiment lives in
:mod:`impl.optimization.adam_experiment`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from impl.checks import hyperparameter
from impl.optimization.weight_decay import add_decayed_weights

__all__ = [
    "ScalarOrSchedule",
    "adagrad",
    "adam",
    "adamw",
    "rmsprop",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "sgd",
    "trace",
]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far


class TraceState(NamedTuple):
    trace: optax.Params  # same tree as params: the momentum buffer


class ScaleByRssState(NamedTuple):
    sum_of_squares: optax.Params  # same tree as params: sum of g^2 over all steps so far


class ScaleByRmsState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far (read only by the bias correction)
    mu: optax.Params | None  # same tree as params: running mean of g (None unless centered)
    nu: optax.Params  # same tree as params: running mean of g^2


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # int32[], t: number of updates so far
    mu: optax.Params  # same tree as params: m_t, the first-moment estimate
    nu: optax.Params  # same tree as params: v_t, the second raw-moment estimate


@functools.partial(jax.jit, inline=True)
def _bias_correction(decay: float, count: jax.Array) -> jax.Array:
    """$1 - \\beta^t$ as ``float32[]``. Compiled even when called eagerly: op-by-op ``pow`` with an
    integer exponent loses about $10^{-5}$ relative accuracy, the compiled one does not."""
    return 1 - decay**count


def _check_learning_rate(learning_rate: ScalarOrSchedule) -> None:
    if callable(learning_rate):
        return
    hyperparameter("learning_rate", learning_rate, 0.0)


def _check_eps(eps: float) -> None:
    hyperparameter("eps", eps, 0.0, low_inclusive=False)


def _check_adam(b1: float, b2: float, eps: float) -> None:
    hyperparameter("b1", b1, 0.0, 1.0, high_inclusive=False)
    hyperparameter("b2", b2, 0.0, 1.0, high_inclusive=False)
    _check_eps(eps)


# --8<-- [start:sgd]
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
    hyperparameter("decay", decay, 0.0, 1.0, high_inclusive=False)

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


# --8<-- [end:sgd]


# --8<-- [start:adagrad]
def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> optax.GradientTransformation:
    """Divide by the root of the *sum* of all squared gradients so far (AdaGrad's diagonal)."""
    hyperparameter("initial_accumulator_value", initial_accumulator_value, 0.0)
    _check_eps(eps)

    def init(params):
        return ScaleByRssState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        del params
        sums = jax.tree.map(lambda g, s: g * g + s, updates, state.sum_of_squares)  # G_t
        updates = jax.tree.map(lambda g, s: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * g, updates, sums)
        return updates, ScaleByRssState(sum_of_squares=sums)

    return optax.GradientTransformation(init, update)


def adagrad(learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7):
    r"""AdaGrad (Duchi, Hazan & Singer 2011), diagonal form.

    $$G_t = G_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \alpha_t\, g_t / \sqrt{G_t + \epsilon},$$

    with $G_0$ = ``initial_accumulator_value``. The step only ever shrinks: good for sparse
    features, too cautious for long non-convex runs.
    """
    _check_learning_rate(learning_rate)
    return optax.chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


# --8<-- [end:adagrad]


# --8<-- [start:rmsprop]
def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    centered: bool = False,
) -> optax.GradientTransformation:
    """Divide by a running root-mean-square of the gradient (RMSProp); ``centered`` subtracts the mean."""
    hyperparameter("decay", decay, 0.0, 1.0, high_inclusive=False)
    _check_eps(eps)
    hyperparameter("initial_scale", initial_scale, 0.0)

    def init(params):
        mu = jax.tree.map(jnp.zeros_like, params) if centered else None  # no buffer unless used
        nu = jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params)
        return ScaleByRmsState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update(updates, state, params=None):
        del params
        nu = jax.tree.map(lambda g, v: (1 - decay) * (g * g) + decay * v, updates, state.nu)  # E[g^2]
        mu = jax.tree.map(lambda g, m: (1 - decay) * g + decay * m, updates, state.mu) if centered else None
        count = optax.safe_increment(state.count) if bias_correction else state.count
        correction = _bias_correction(decay, count) if bias_correction else 1.0  # float32[] or 1

        def scale(g, v, m=None):
            v = v / correction if bias_correction else v
            if centered:  # variance instead of raw second moment
                m = m / correction if bias_correction else m
                v = v - m * m
            return g * (jax.lax.rsqrt(v + eps) if eps_in_sqrt else 1 / (jnp.sqrt(v) + eps))

        updates = jax.tree.map(scale, updates, nu, *([mu] if centered else []))
        return updates, ScaleByRmsState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
):
    r"""RMSProp (Tieleman & Hinton 2012): AdaGrad with a *forgetting* average of $g^2$.

    $$\nu_t = \rho\, \nu_{t-1} + (1-\rho)\, g_t^2, \qquad
    \theta_t = \theta_{t-1} - \alpha_t\, g_t / \sqrt{\nu_t + \epsilon},$$

    with $\rho$ = ``decay``. As in Optax, ``momentum`` (if given) is applied *after* the
    learning rate, and ``centered`` divides by the running standard deviation instead.
    """
    _check_learning_rate(learning_rate)
    parts = [
        scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered),
        scale_by_learning_rate(learning_rate),
    ]
    if momentum is not None:
        parts.append(trace(momentum, nesterov))
    return optax.chain(*parts)


# --8<-- [end:rmsprop]


# --8<-- [start:adam]
def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *, bias_correction: bool = True
) -> optax.GradientTransformation:
    r"""Adam's direction $\hat m_t / (\sqrt{\hat v_t} + \epsilon)$ (Algorithm 1 of the paper).

    ``bias_correction=False`` drops the division by $1-\beta^t$, to show what it is for.
    """
    _check_adam(b1, b2, eps)

    def init(params):
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(jnp.zeros_like, params)  # a buffer of its own: states may be donated
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)  # m_t
        nu = jax.tree.map(lambda g, v: (1 - b2) * (g * g) + b2 * v, updates, state.nu)  # v_t
        count = optax.safe_increment(state.count)  # t
        c1 = _bias_correction(b1, count) if bias_correction else jnp.ones([])  # 1 - beta_1^t, float32[]
        c2 = _bias_correction(b2, count) if bias_correction else jnp.ones([])  # 1 - beta_2^t, float32[]
        updates = jax.tree.map(
            # m_hat / (sqrt(v_hat) + eps), with m_hat = m_t / c1 and v_hat = v_t / c2
            lambda m, v: (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps),
            mu,
            nu,
        )
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    r"""Adam (Kingma & Ba 2015, Algorithm 1).

    $$\begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, &
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \\
    \hat m_t &= m_t / (1-\beta_1^t), &
    \hat v_t &= v_t / (1-\beta_2^t), \\
    \theta_t &= \theta_{t-1} - \alpha_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon).
    \end{aligned}$$

    ``learning_rate`` $=\alpha_t$ (a float or a schedule), ``b1``, ``b2`` $=\beta_1, \beta_2$.
    As in the paper and in Optax, $\epsilon$ sits outside the square root.
    """
    _check_learning_rate(learning_rate)
    return optax.chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask=None,
):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2).

    $$\theta_t = \theta_{t-1} - \alpha_t \left( \hat m_t / (\sqrt{\hat v_t} + \epsilon)
    + \lambda\, \theta_{t-1} \right),$$

    with $\hat m_t, \hat v_t$ as in :func:`adam` and $\lambda$ = ``weight_decay`` applied to
    the leaves ``mask`` selects (a pytree of bools or a function of the parameters). As in
    Optax and PyTorch, $\lambda$ is multiplied by the learning rate; the paper multiplies it by
    the schedule only.
    """
    _check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_adam(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --8<-- [end:adam]
