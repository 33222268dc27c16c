"""2.8 Adam — and the gradient-descent family it grew from, written by hand as Optax
transformations.

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

Signatures, defaults and state structures are Optax's (``eps`` keeps Optax's name), so each
is a drop-in for its namesake and composes with Optax's wrappers (``inject_hyperparams``,
``masked``, ``MultiSteps``, ``apply_if_finite``). Updates keep the gradient's dtype, complex
gradients are squared as $|g|^2$, and settings that would silently give NaN (``b1 >= 1``,
``eps < 0``, an ``eps`` that rounds to zero in float16) raise a ``ValueError`` naming them.
``docs/performance.md`` lists every remaining difference.

Shapes: parameters, gradients, updates and every moment are pytrees of the same structure (any
shapes, any float or complex dtype); ``count`` is an ``int32[]`` scalar. The experiment lives in
:mod:`impl.optimization.adam_experiment`.
"""

from __future__ import annotations

import functools
import math
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
    "scale_by_stddev",
    "sgd",
    "trace",
]

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far (read by the schedule)


class TraceState(NamedTuple):
    trace: optax.Params  # same tree as params: the momentum buffer


class ScaleByRssState(NamedTuple):
    sum_of_squares: optax.Params  # same tree as params: sum of |g|^2 over all steps so far


class ScaleByRmsState(NamedTuple):
    nu: optax.Params  # same tree as params: running mean of |g|^2


class ScaleByRmsWithCountState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far (read by the bias correction)
    nu: optax.Params  # same tree as params: running mean of |g|^2


class ScaleByRStdDevState(NamedTuple):
    mu: optax.Params  # same tree as params: running mean of g
    nu: optax.Params  # same tree as params: running mean of |g|^2


class ScaleByRStdDevWithCountState(NamedTuple):
    count: jax.Array  # int32[], number of updates so far (read by the bias correction)
    mu: optax.Params  # same tree as params: running mean of g
    nu: optax.Params  # same tree as params: running mean of |g|^2


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # int32[], t: number of updates so far
    mu: optax.Params  # same tree as params: m_t, the first-moment estimate
    nu: optax.Params  # same tree as params: v_t, the second raw-moment estimate


def _squared_magnitude(g: jax.Array) -> jax.Array:
    """$|g|^2$ elementwise: ``g * g`` for real ``g``; for complex ``g``, the real
    ``conj(g) * g``."""
    return (jnp.conj(g) * g).real if jnp.iscomplexobj(g) else g * g


@functools.partial(jax.jit, inline=True)
def _bias_correction(decay: float, count: jax.Array) -> jax.Array:
    """$1 - \\beta^t$ as ``float32[]``. Compiled even when called eagerly: op-by-op ``pow`` with an
    integer exponent loses about $10^{-5}$ relative accuracy, the compiled one does not."""
    return 1 - decay**count


def _debias(moment: optax.Updates, decay: float, count: jax.Array) -> optax.Updates:
    """Divide every leaf by $1 - \\beta^t$, computed in float32 and cast to the leaf's dtype (so
    that a bfloat16 moment stays bfloat16, and $\\beta^t$ is not rounded to 1 first)."""
    correction = _bias_correction(decay, count)
    return jax.tree.map(lambda t: t / correction.astype(t.dtype), moment)


def _check_learning_rate(learning_rate: ScalarOrSchedule) -> None:
    if not callable(learning_rate):  # any finite number: a negative rate ascends, as in Optax
        hyperparameter(
            "learning_rate",
            learning_rate,
            -math.inf,
            math.inf,
            low_inclusive=False,
            high_inclusive=False,
        )


def _check_dtype(name: str, dtype):
    """``None`` or a dtype, canonicalised as Optax does (float64 means float32 unless x64 is on)."""
    if dtype is None:
        return None
    try:
        return jax.dtypes.canonicalize_dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{name}: expected a dtype or None, got {dtype!r}") from error


def _check_denominator(params: optax.Params, eps, floor, floor_name: str) -> None:
    """At ``init``: raise if ``eps`` and ``floor`` both round to 0 in a leaf's dtype (float16 and
    ``eps=1e-8``, say), where a zero gradient would divide 0 by 0 (Optax returns NaN there)."""
    if any(isinstance(v, jax.core.Tracer) for v in (eps, floor)):
        return
    for leaf in jax.tree.leaves(params):
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.inexact) and not (
            jnp.asarray(eps, dtype) or jnp.asarray(floor, dtype)
        ):
            raise ValueError(
                f"eps: {eps} rounds to 0 in {dtype} (and so does "
                f"{floor_name}={floor}): a zero gradient would give 0/0 = NaN. Use an "
                f"eps that {dtype} can hold (at least {float(jnp.finfo(dtype).tiny):g})"
            )


def _check_adam(b1, b2, eps, eps_root) -> None:
    hyperparameter("b1", b1, 0.0, 1.0, high_inclusive=False)
    hyperparameter("b2", b2, 0.0, 1.0, high_inclusive=False)
    hyperparameter("eps", eps, 0.0)
    hyperparameter("eps_root", eps_root, 0.0)


# --8<-- [start:sgd]
def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Multiply updates by ``-learning_rate`` (a number, or a schedule ``count -> rate``).

    A constant rate keeps no state (``optax.EmptyState``); a schedule keeps the update count.
    """
    _check_learning_rate(learning_rate)
    if not callable(learning_rate):
        return optax.GradientTransformation(
            lambda params: optax.EmptyState(),
            lambda updates, state, params=None: (
                jax.tree.map(lambda g: -learning_rate * g, updates),
                state,
            ),
        )

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        lr = learning_rate(state.count)

        # in g's dtype if it has a fraction; an integer g is promoted, not the rate truncated
        def scale(g):
            return -jnp.asarray(lr, g.dtype if jnp.issubdtype(g.dtype, jnp.inexact) else None) * g

        return jax.tree.map(scale, updates), ScaleByScheduleState(
            count=optax.safe_increment(state.count)
        )

    return optax.GradientTransformation(init, update)


def trace(
    decay: float, nesterov: bool = False, accumulator_dtype=None
) -> optax.GradientTransformation:
    r"""Momentum: keep a decaying sum of past gradients, $v_t = g_t + \mu\, v_{t-1}$.

    With ``nesterov=True`` the step uses $g_t + \mu\, v_t$ (Sutskever et al., 2013).
    ``decay`` $=\mu \in [-1, 1]$ (1 sums every gradient, a negative value is "negative momentum");
    ``accumulator_dtype`` stores $v$ in another dtype (``None``: the parameters').
    """
    hyperparameter("decay", decay, -1.0, 1.0)
    accumulator_dtype = _check_dtype("accumulator_dtype", accumulator_dtype)

    def init(params):
        return TraceState(
            trace=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=accumulator_dtype), params)
        )

    def update(updates, state, params=None):
        del params
        new_trace = jax.tree.map(lambda g, v: g + decay * v, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, v: g + decay * v, updates, new_trace)
        else:
            updates = new_trace
        if accumulator_dtype is not None:
            new_trace = jax.tree.map(lambda v: v.astype(accumulator_dtype), new_trace)
        return updates, TraceState(trace=new_trace)

    return optax.GradientTransformation(init, update)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype=None,
):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    $$\Delta w(t) = -\varepsilon\, \frac{\partial E}{\partial w}(t) + \alpha\, \Delta w(t-1)$$

    is eq. 9 of Rumelhart, Hinton & Williams (1986), with ``learning_rate`` $=\varepsilon$
    and ``momentum`` $=\alpha$. (Written as Optax does, the buffer accumulates gradients and
    the learning rate scales it afterwards; for a constant rate the two are identical.)
    """
    _check_learning_rate(learning_rate)
    if momentum is not None:
        hyperparameter("momentum", momentum, -1.0, 1.0)
    first = optax.identity() if momentum is None else trace(momentum, nesterov, accumulator_dtype)
    return optax.chain(first, scale_by_learning_rate(learning_rate))


# --8<-- [end:sgd]


# --8<-- [start:adagrad]
def scale_by_rss(
    initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> optax.GradientTransformation:
    """Divide by the root of the *sum* of all squared gradients so far (AdaGrad's diagonal)."""
    hyperparameter("initial_accumulator_value", initial_accumulator_value, 0.0)
    hyperparameter("eps", eps, 0.0)

    def init(params):
        return ScaleByRssState(
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        )

    def update(updates, state, params=None):
        del params
        # G_t
        sums = jax.tree.map(lambda g, s: _squared_magnitude(g) + s, updates, state.sum_of_squares)
        updates = jax.tree.map(
            lambda g, s: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * g, updates, sums
        )
        return updates, ScaleByRssState(sum_of_squares=sums)

    return optax.GradientTransformation(init, update)


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7
):
    r"""AdaGrad (Duchi, Hazan & Singer 2011), diagonal form.

    $$G_t = G_{t-1} + g_t^2, \qquad
      \theta_t = \theta_{t-1} - \alpha_t\, g_t / \sqrt{G_t + \epsilon},$$

    with $G_0$ = ``initial_accumulator_value``. The step only ever shrinks: good for sparse
    features, too cautious for long non-convex runs.
    """
    _check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate)
    )


# --8<-- [end:adagrad]


# --8<-- [start:rmsprop]
def _rms_scaling(eps: float, eps_in_sqrt: bool):
    """``v -> 1 / sqrt(v + eps)`` or ``v -> 1 / (sqrt(v) + eps)``."""
    return (
        (lambda v: jax.lax.rsqrt(v + eps)) if eps_in_sqrt else (lambda v: 1 / (jnp.sqrt(v) + eps))
    )


def _check_rms(decay, eps, initial_scale) -> None:
    hyperparameter("decay", decay, 0.0, 1.0, high_inclusive=False)
    hyperparameter("eps", eps, 0.0)
    hyperparameter("initial_scale", initial_scale, 0.0)


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> optax.GradientTransformation:
    """Divide by a running root-mean-square of the gradient (RMSProp)."""
    _check_rms(decay, eps, initial_scale)
    scaling = _rms_scaling(eps, eps_in_sqrt)

    def init(params):
        _check_denominator(params, eps, 0.0, "the second moment")
        nu = jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params)
        return (
            ScaleByRmsWithCountState(jnp.zeros([], jnp.int32), nu)
            if bias_correction
            else ScaleByRmsState(nu)
        )

    def update(updates, state, params=None):
        del params
        # E[|g|^2]
        nu = jax.tree.map(
            lambda g, v: (1 - decay) * _squared_magnitude(g) + decay * v, updates, state.nu
        )
        if not bias_correction:
            return jax.tree.map(lambda g, v: scaling(v) * g, updates, nu), ScaleByRmsState(nu)
        count = optax.safe_increment(state.count)
        updates = jax.tree.map(lambda g, v: scaling(v) * g, updates, _debias(nu, decay, count))
        return updates, ScaleByRmsWithCountState(count, nu)

    return optax.GradientTransformation(init, update)


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> optax.GradientTransformation:
    """Centered RMSProp: divide by a running standard deviation, $\\sqrt{E[|g|^2] - |E[g]|^2}$."""
    _check_rms(decay, eps, initial_scale)
    scaling = _rms_scaling(eps, eps_in_sqrt)

    def init(params):
        _check_denominator(params, eps, 0.0, "the variance")
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params)
        if bias_correction:
            return ScaleByRStdDevWithCountState(jnp.zeros([], jnp.int32), mu, nu)
        return ScaleByRStdDevState(mu, nu)

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda g, m: (1 - decay) * g + decay * m, updates, state.mu)  # E[g]
        # E[|g|^2]
        nu = jax.tree.map(
            lambda g, v: (1 - decay) * _squared_magnitude(g) + decay * v, updates, state.nu
        )
        mu_hat, nu_hat = mu, nu
        if bias_correction:
            count = optax.safe_increment(state.count)
            mu_hat, nu_hat = _debias(mu, decay, count), _debias(nu, decay, count)

        # E|g|^2 - |E g|^2, clipped at 0: in bfloat16 rounding can make it negative (NaN in Optax)
        def variance(m, v):
            var = v - _squared_magnitude(m)
            return jnp.maximum(var.real, 0).astype(var.dtype)

        updates = jax.tree.map(lambda g, m, v: scaling(variance(m, v)) * g, updates, mu_hat, nu_hat)
        if bias_correction:
            return updates, ScaleByRStdDevWithCountState(count, mu, nu)
        return updates, ScaleByRStdDevState(mu, nu)

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
    if momentum is not None:
        hyperparameter("momentum", momentum, -1.0, 1.0)
    scale_by = scale_by_stddev if centered else scale_by_rms
    return optax.chain(
        scale_by(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        optax.identity() if momentum is None else trace(momentum, nesterov),
    )


# --8<-- [end:rmsprop]


# --8<-- [start:adam]
def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
) -> optax.GradientTransformation:
    r"""Adam's direction $\hat m_t / (\sqrt{\hat v_t + \epsilon_{\text{root}}} + \epsilon)$
    (Algorithm 1).

    ``mu_dtype`` stores $m$ in another dtype; ``nesterov=True`` is NAdam (Dozat 2016), as in
    Optax. ``bias_correction=False`` (ours only) drops the division by $1-\beta^t$, to show what
    it is for.
    """
    _check_adam(b1, b2, eps, eps_root)
    mu_dtype = _check_dtype("mu_dtype", mu_dtype)
    debias = _debias if bias_correction else lambda moment, decay, count: moment

    def init(params):
        _check_denominator(params, eps, eps_root, "eps_root")
        mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype), params)
        nu = jax.tree.map(jnp.zeros_like, params)  # a buffer of its own: states may be donated
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)  # m_t
        # v_t
        nu = jax.tree.map(lambda g, v: (1 - b2) * _squared_magnitude(g) + b2 * v, updates, state.nu)
        count = optax.safe_increment(state.count)  # t
        if nesterov:  # NAdam's look-ahead: b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)
            mu_hat = jax.tree.map(
                lambda m, g: b1 * m + (1 - b1) * g,
                debias(mu, b1, optax.safe_increment(count)),
                debias(updates, b1, count),
            )
        else:
            mu_hat = debias(mu, b1, count)  # m_t / (1 - beta_1^t)
        nu_hat = debias(nu, b2, count)  # v_t / (1 - beta_2^t)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
        if mu_dtype is not None:
            mu = jax.tree.map(lambda m: m.astype(mu_dtype), mu)
        nu = jax.tree.map(lambda v, old: v.astype(old.dtype), nu, state.nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
):
    r"""Adam (Kingma & Ba 2015, Algorithm 1).

    $$\begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, &
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, |g_t|^2, \\
    \hat m_t &= m_t / (1-\beta_1^t), &
    \hat v_t &= v_t / (1-\beta_2^t), \\
    \theta_t &= \theta_{t-1} - \alpha_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon).
    \end{aligned}$$

    ``learning_rate`` $=\alpha_t$ (a number or a schedule), ``b1``, ``b2`` $=\beta_1, \beta_2$.
    As in the paper and in Optax, $\epsilon$ sits outside the square root (``eps_root``, 0 by
    default, adds a term inside it).
    """
    _check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask=None,
    *,
    nesterov: bool = False,
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
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --8<-- [end:adam]
