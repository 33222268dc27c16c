"""3.1 RNN — a fully recurrent network, run over time with ``lax.scan`` and trained through time.

Williams & Zipser, *A learning algorithm for continually running fully recurrent neural
networks*, Neural Computation 1(2), 270–280 (1989). https://doi.org/10.1162/neco.1989.1.2.270

The idea: give a layer of units connections to *itself*, one time step late, and the same
weights process a sequence of any length while a hidden state ``h_t`` carries what the network
has seen so far. The gradient of an error at time ``T`` with respect to a weight collects a
contribution from every earlier step. Williams & Zipser computed it *forwards* in time, as
the network runs ("real-time recurrent learning", `rtrl`); unrolling the network and running
backprop backwards through the unrolled copies ("backprop through time", `backprop_through_time`)
gives the same numbers at a fraction of the cost. Both are written out here by hand and tested
against ``jax.grad``. The backward recursion also shows why plain RNNs forget: every step back
multiplies the error signal by ``W_hh^T diag(1 - h_t^2)``, so it shrinks exponentially when
that matrix is contractive — the problem the LSTM (topic 3.2) was built to fix.

Layout: pure functions hold the math; `LinenRNN` and `NnxRNN` hold the tree that `init_rnn`
declares and call `rnn`. `scan_over_time` is the generic recurrence that later topics (the LSTM,
the GRU) reuse with their own step functions. The experiment (delayed recall, the gradient
measurement, the figure) lives in `impl.sequence.rnn_experiment`.

Shapes: inputs ``xs`` are batch-major ``float32[batch, T, d_in]``; hidden states
``hs [batch, T, H]``; parameters ``{"w_xh": [d_in, H], "w_hh": [H, H], "b_h": [H]}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import cross_entropy, dense, init_layer

__all__ = [
    "DecayFit",
    "LinenRNN",
    "NnxRNN",
    "backprop_through_time",
    "bptt",
    "check_inputs",
    "classify",
    "decay_factor",
    "init_classifier",
    "init_rnn",
    "input_jacobian_norms",
    "rnn",
    "rnn_step",
    "rtrl",
    "scan_over_time",
]

PyTree = Any


# --8<-- [start:core]
def init_rnn(key: jax.Array, d_in: int, d_hidden: int, *, gain: float = 1.0) -> dict:
    """Parameters of a tanh RNN: ``{"w_xh": [d_in, H], "w_hh": [H, H], "b_h": [H]}``.

    ``w_xh ~ N(0, 1/d_in)`` (LeCun scaling, as in 1.1); ``w_hh ~ N(0, gain^2/H)``, so the
    recurrent matrix's spectral radius is about ``gain``; ``b_h = 0``.
    """
    checks.positive_int("d_in", d_in)
    checks.positive_int("d_hidden", d_hidden)
    checks.in_range("gain", gain, 0.0, float("inf"))
    k_x, k_h = jax.random.split(checks.prng_key("key", key))
    return {
        "w_xh": jax.random.normal(k_x, (d_in, d_hidden)) / jnp.sqrt(d_in),  # [d_in, H]
        "w_hh": gain * jax.random.normal(k_h, (d_hidden, d_hidden)) / jnp.sqrt(d_hidden),  # [H, H]
        "b_h": jnp.zeros((d_hidden,)),  # [H]
    }


def rnn_step(params: dict, h: jax.Array, x: jax.Array) -> jax.Array:
    """One tick: ``h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)``. ``h [b, H], x [b, d_in] -> [b, H]``.

    The paper's net input ``s_k(t)`` sums weighted inputs and unit outputs alike; the new
    output is ``f(s_k(t))`` one step later (Section 2). Here ``f = tanh``.
    """
    # net input s(t), [b, H]
    s = x @ params["w_xh"] + h @ params["w_hh"] + params["b_h"].reshape(1, -1)
    return jnp.tanh(s)


def scan_over_time(step: Callable, params: PyTree, xs: jax.Array, h0: PyTree) -> PyTree:
    """Run ``step(params, carry, x_t) -> (carry, h_t)`` over the time axis with ``lax.scan``.

    ``xs [batch, T, d_in]`` is batch-major outside and turned time-major inside, because
    ``scan`` walks the leading axis. ``h0`` is the initial carry (any pytree: ``h`` for the
    RNN, ``(h, c)`` for an LSTM). Returns the stacked outputs ``h_t`` as ``[batch, T, ...]``
    (each leaf, if ``h_t`` is a pytree).
    """
    checks.array_shape(
        "xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)"
    )
    # [T, b, ...]
    _, hs = jax.lax.scan(lambda carry, x_t: step(params, carry, x_t), h0, jnp.swapaxes(xs, 0, 1))
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), hs)  # [b, T, ...]


def _rnn_tick(params: dict, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = rnn_step(params, h, x)
    return h, h  # the carry is the output


def rnn(params: dict, xs: jax.Array, h0: jax.Array | None = None) -> jax.Array:
    """All hidden states: ``xs [batch, T, d_in]`` -> ``hs [batch, T, H]`` (``h0 [batch, H]``,
    default 0)."""
    h0 = check_inputs(params, xs, h0)
    return scan_over_time(_rnn_tick, params, xs, h0)


# --8<-- [end:core]


def check_inputs(params: dict, xs: Any, h0: Any = None) -> jax.Array:
    """Validate ``xs [batch, T, d_in]`` and ``h0 [batch, H]`` against ``params``; return ``h0``
    (zeros if ``None``)."""
    d_in, hidden = params["w_xh"].shape
    checks.array_shape(
        "xs", xs, ("batch", "time", d_in), dims=f"[batch, time, d_in={d_in}] (batch-major)"
    )
    if xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(
            f"xs: expected at least one example and one time step, got shape {tuple(xs.shape)}"
        )
    if h0 is None:
        return jnp.zeros((xs.shape[0], hidden), xs.dtype)
    if (
        hasattr(h0, "shape")
        and h0.ndim == 2
        and h0.shape[1] == hidden
        and h0.shape[0] != xs.shape[0]
    ):
        raise ValueError(
            f"h0: expected shape [batch={xs.shape[0]}, H={hidden}], got "
            f"{tuple(h0.shape)}; xs must be batch-major [batch, time, "
            "d_in] (was a time-major [time, batch, d_in] array passed?)"
        )
    checks.array_shape("h0", h0, (xs.shape[0], hidden), dims=f"[batch={xs.shape[0]}, H={hidden}]")
    return h0


# --8<-- [start:bptt]
def backprop_through_time(
    params: dict, xs: jax.Array, hs: jax.Array, dhs: jax.Array, h0: jax.Array | None = None
) -> tuple[dict, jax.Array, jax.Array]:
    """The chain rule run backwards through the unrolled network, written out by hand.

    Given the forward pass ``hs = rnn(params, xs, h0)`` and ``dhs [b, T, H]``, the gradient
    of the loss with respect to each ``h_t`` *directly* (zero where no error is injected),
    returns ``(grads, dxs, dh0)``: the gradient for every parameter, for every input
    ``[b, T, d_in]`` and for ``h0 [b, H]`` — what ``jax.vjp(rnn, ...)`` returns.
    """
    h0 = check_inputs(params, xs, h0)
    checks.array_shape("hs", hs, (xs.shape[0], xs.shape[1], params["w_hh"].shape[0]))
    checks.array_shape("dhs", dhs, hs.shape)
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)  # h_{t-1} for every t, [b, T, H]

    def back(dh_future, inputs):  # dh_future: error reaching h_t from step t + 1, [b, H]
        h_t, dh_t = inputs
        delta = (dh_t + dh_future) * (1.0 - h_t**2)  # dL/ds_t: through tanh' = 1 - h^2
        return delta @ params["w_hh"].T, delta  # to h_{t-1}: one more factor W_hh^T diag(1 - h^2)

    time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    dh0, deltas = jax.lax.scan(
        back, jnp.zeros_like(h0), (time_major(hs), time_major(dhs)), reverse=True
    )
    deltas = time_major(deltas)  # dL/ds_t for every t, [b, T, H]
    # a weight's gradient: its error signal times the activity through it, summed over b and t
    grads = {
        "w_xh": jnp.einsum("btd,bth->dh", xs, deltas),  # [d_in, H]
        "w_hh": jnp.einsum("btg,bth->gh", h_prev, deltas),  # [H, H]
        "b_h": deltas.sum(axis=(0, 1)),  # [H]
    }
    return grads, deltas @ params["w_xh"].T, dh0  # dxs [b, T, d_in], dh0 [b, H]


def init_classifier(
    key: jax.Array, d_in: int, d_hidden: int, n_classes: int, *, gain: float = 1.0
) -> dict:
    """An RNN read out at its last step:
    ``{"rnn": init_rnn(...), "out": {"kernel": [H, C], "bias": [C]}}``."""
    checks.positive_int("n_classes", n_classes)
    k_rnn, k_out = jax.random.split(checks.prng_key("key", key))
    return {
        "rnn": init_rnn(k_rnn, d_in, d_hidden, gain=gain),
        "out": init_layer(k_out, d_hidden, n_classes),
    }


def classify(model: dict, xs: jax.Array) -> jax.Array:
    """Logits from the last hidden state: ``xs [b, T, d_in] -> [b, C]``."""
    return dense(model["out"], rnn(model["rnn"], xs)[:, -1])


def bptt(model: dict, xs: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
    """Loss and gradients of `classify` + cross-entropy, by hand: the output layer as in 1.1, then
    BPTT."""
    hs = rnn(model["rnn"], xs)  # [b, T, H]
    logits = dense(model["out"], hs[:, -1])  # [b, C]
    # [b, C]
    dlogits = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1])) / xs.shape[0]
    d_out = {"kernel": hs[:, -1].T @ dlogits, "bias": dlogits.sum(axis=0)}
    # error enters at t = T only
    dhs = jnp.zeros_like(hs).at[:, -1].set(dlogits @ model["out"]["kernel"].T)
    d_rnn, _, _ = backprop_through_time(model["rnn"], xs, hs, dhs)
    return cross_entropy(logits, labels), {"rnn": d_rnn, "out": d_out}


# --8<-- [end:bptt]


# --8<-- [start:rtrl]
def rtrl(params: dict, xs: jax.Array, dhs: jax.Array, h0: jax.Array | None = None) -> dict:
    """The paper's algorithm: the same gradient as `backprop_through_time`, computed *forwards*.

    Carries the sensitivities ``p^k_w(t) = dh_k(t)/dw`` of every unit ``k`` to every weight
    ``w`` along with the state (the paper's ``p^k_ij``, Section 2), starting from 0 and
    updated each tick by ``p(t) = f'(s(t)) [W_hh^T p(t-1) + (direct effect of w at t)]``.
    The error injected at step ``t`` (``dhs[:, t]``) turns into a weight gradient at once,
    so learning can happen while the network runs, with no stored history — at a cost of
    ``H^2`` numbers per weight per example (``O(H^4)`` work per step for ``H^2`` weights).
    """
    h0 = check_inputs(params, xs, h0)
    checks.array_shape("dhs", dhs, (xs.shape[0], xs.shape[1], params["w_hh"].shape[0]))
    b, hidden = h0.shape
    eye = jnp.eye(hidden)  # delta_jk: weight w_ij feeds unit j directly

    def tick(carry, inputs):
        h_prev, p, grads = carry
        x_t, dh_t = inputs  # [b, d_in], [b, H]
        h = rnn_step(params, h_prev, x_t)
        slope = (1.0 - h**2)[:, :, None, None]  # f'(s_k(t)), [b, H, 1, 1]

        def through(q):  # sum_l w_lk p^l
            return jnp.einsum("blij,lk->bkij", q, params["w_hh"])

        p = {
            "w_xh": slope
            * (through(p["w_xh"]) + jnp.einsum("bi,kj->bkij", x_t, eye)),  # [b, H, d_in, H]
            "w_hh": slope
            * (through(p["w_hh"]) + jnp.einsum("bi,kj->bkij", h_prev, eye)),  # [b, H, H, H]
            "b_h": slope[..., 0]
            * (jnp.einsum("blj,lk->bkj", p["b_h"], params["w_hh"]) + eye[None]),  # [b, H, H]
        }
        grads = jax.tree.map(
            lambda g, q: g + jnp.tensordot(dh_t, q, axes=([0, 1], [0, 1])), grads, p
        )
        return (h, p, grads), None

    p0 = {
        "w_xh": jnp.zeros((b, hidden, *params["w_xh"].shape)),
        "w_hh": jnp.zeros((b, hidden, *params["w_hh"].shape)),
        "b_h": jnp.zeros((b, hidden, hidden)),
    }
    time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    zeros = jax.tree.map(jnp.zeros_like, params)
    (_, _, grads), _ = jax.lax.scan(tick, (h0, p0, zeros), (time_major(xs), time_major(dhs)))
    return grads


# --8<-- [end:rtrl]


def _check_hidden(name: str, hidden: int, gain: float) -> None:
    checks.positive_int(name, hidden)
    checks.in_range("gain", gain, 0.0, float("inf"))


# --8<-- [start:linen]
class LinenRNN(nn.Module):
    """Functional twin: ``variables["params"]`` is `init_rnn`'s tree, ``{"w_xh", "w_hh", "b_h"}``.

    ``__call__(xs [b, T, d_in], h0=None) -> hs [b, T, H]``; ``d_in`` is read from ``xs`` at
    ``init``.
    """

    hidden: int
    gain: float = 1.0

    @nn.compact
    def __call__(self, xs: jax.Array, h0: jax.Array | None = None) -> jax.Array:
        _check_hidden("hidden", self.hidden, self.gain)
        checks.array_shape(
            "xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)"
        )
        params = twins.declare(self, init_rnn, xs.shape[-1], self.hidden, gain=self.gain)
        return rnn(params, xs, h0)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxRNN(nnx.Module):
    """Object-oriented twin: `init_rnn`'s three arrays as attributes ``w_xh``, ``w_hh``, ``b_h``.

    ``model(xs, h0=None) -> hs``.
    """

    def __init__(self, d_in: int, hidden: int, *, gain: float = 1.0, rngs: nnx.Rngs):
        checks.positive_int("d_in", d_in)
        _check_hidden("hidden", hidden, gain)
        for name, value in init_rnn(rngs.params(), d_in, hidden, gain=gain).items():
            setattr(self, name, twins.to_nnx(value))  # nnx.Param [d_in, H], [H, H], [H]

    def __call__(self, xs: jax.Array, h0: jax.Array | None = None) -> jax.Array:
        return rnn(twins.pure(self), xs, h0)  # {"w_xh", "w_hh", "b_h"}: the tree `rnn` takes


# --8<-- [end:nnx]


# --8<-- [start:measure]
def input_jacobian_norms(params: dict, xs: jax.Array) -> jax.Array:
    """``||dh_T / dx_t||_F`` for every ``t``, averaged over the batch: ``[b, T, d_in] -> [T]``.

    One `backprop_through_time` per hidden unit of ``h_T`` (``vmap`` over the ``H`` basis
    cotangents) gives the whole Jacobian ``[H, b, T, d_in]``.
    """
    hs = rnn(params, xs)  # [b, T, H]
    hidden = hs.shape[-1]
    basis = (
        jnp.eye(hidden)[:, None, None, :]
        * (jnp.arange(xs.shape[1]) == xs.shape[1] - 1)[None, None, :, None]
    )

    def one_unit(dhs):  # dhs [1, T, H]: 1 at (t = T, unit k)
        # [b, T, d_in]
        return backprop_through_time(params, xs, hs, jnp.broadcast_to(dhs, hs.shape))[1]

    jac = jax.vmap(one_unit)(basis)  # [H, b, T, d_in]
    return jnp.mean(jnp.sqrt(jnp.sum(jac**2, axis=(0, 3))), axis=0)  # [T]


class DecayFit(NamedTuple):
    """``norm(k) ~ scale * rho**k``: the per-step factor, the fit's R^2 (of the logs) and the
    scale."""

    rho: float
    r2: float
    scale: float


def decay_factor(by_distance: np.ndarray, first: int = 1, last: int | None = None) -> DecayFit:
    """Least-squares fit of ``log norm(k) = log scale + k log rho`` over distances
    ``k = first..last``.

    ``by_distance [T]`` holds a norm per distance ``k = T - 1 - t`` (index 0 = the last input,
    i.e. ``input_jacobian_norms(...)[::-1]``).
    """
    by_distance = np.asarray(by_distance)
    if by_distance.ndim != 1 or np.any(by_distance <= 0):
        raise ValueError(
            f"by_distance: expected a 1-D array of positive norms, got shape {by_distance.shape}"
        )
    last = len(by_distance) - 1 if last is None else last
    if not 0 <= first < last < len(by_distance):
        raise ValueError(
            f"first, last: expected 0 <= first < last < {len(by_distance)}, got {first}, {last}"
        )
    k = np.arange(first, last + 1)
    y = np.log(by_distance[k])
    slope, intercept = np.polyfit(k, y, 1)
    r2 = 1.0 - np.sum((y - (slope * k + intercept)) ** 2) / np.sum((y - y.mean()) ** 2)
    return DecayFit(float(np.exp(slope)), float(r2), float(np.exp(intercept)))


# --8<-- [end:measure]
