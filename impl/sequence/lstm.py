"""3.2 LSTM — a memory cell whose error flows back unchanged, guarded by input and output gates.

Hochreiter & Schmidhuber, *Long short-term memory*, Neural Computation 9(8), 1735–1780 (1997).
https://doi.org/10.1162/neco.1997.9.8.1735

The idea: in a plain recurrent net (topic 3.1) the error sent back ``k`` steps is multiplied
``k`` times by the recurrent weights and the units' slopes, so it vanishes (or explodes)
exponentially and long time lags cannot be learned. LSTM gives each unit a linear *memory cell*
with a fixed self-connection of weight 1 — the *constant error carousel* — so the error that
reaches the cell's state flows back through time unchanged. Two multiplicative gates learn when
the cell may be written (the *input gate*) and when it may be read (the *output gate*), so that
unrelated inputs cannot overwrite the memory and the memory does not disturb the rest of the net
while it is not needed. This is the 1997 cell: there is no forget gate (topic 3.3 adds it).

Layout: pure functions hold the math (`lstm_step` is one tick, `lstm` runs it over time with
``scan_over_time`` from 3.1); `LinenLSTM` and `NnxLSTM` hold the tree that `init_lstm` declares
and call them. The experiment (recall across 100 steps, against tanh RNNs) lives in
`impl.sequence.lstm_experiment`.

Shapes: ``xs`` is ``float32[batch, T, d_in]`` (batch-major); the carry is ``(c, h)``, two
``float32[batch, H]`` arrays — cell states and cell outputs, in Flax's order; outputs are
``hs: float32[batch, T, H]``. Parameters are ``{gate: {"kernel": [d_in + H, H], "bias": [H]}}``
for the gates in `GATES`: every gate sees the current input and all cell outputs of the
previous step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import dense, init_layer
from impl.sequence.rnn import scan_over_time

__all__ = [
    "GATES",
    "IN_BIAS",
    "LinenLSTM",
    "NnxLSTM",
    "check_inputs",
    "gate",
    "init_gate",
    "init_lstm",
    "join",
    "lstm",
    "lstm_step",
    "lstm_trace",
]

Carry = tuple[jax.Array, jax.Array]  # (c, h), each [batch, H]
GATES = ("cell", "in_gate", "out_gate")  # net_c, net_in, net_out of the paper's section 4
IN_BIAS = -2.0  # input gates start mostly shut: the paper's remedy for internal state drift


# --8<-- [start:core]
def init_gate(key: jax.Array, d_in: int, d_hidden: int, bias: float = 0.0) -> dict:
    """One gate's weights from the input and the previous outputs:
    ``{"kernel": [d_in + H, H], "bias": [H]}``."""
    layer = init_layer(key, d_in + d_hidden, d_hidden)  # LeCun-scaled, as in 1.1
    return {"kernel": layer["kernel"], "bias": jnp.full((d_hidden,), bias)}


def init_lstm(key: jax.Array, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS) -> dict:
    """Parameters of a 1997 LSTM layer of ``d_hidden`` cells:
    ``{"cell", "in_gate", "out_gate"}``."""
    checks.positive_int("d_in", d_in)
    checks.positive_int("d_hidden", d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))
    keys = jax.random.split(checks.prng_key("key", key), len(GATES))
    biases = {"in_gate": in_bias}
    return {
        name: init_gate(k, d_in, d_hidden, biases.get(name, 0.0)) for name, k in zip(GATES, keys)
    }


def join(x: jax.Array, h: jax.Array) -> jax.Array:
    """What every gate sees: the input and the previous outputs,
    ``[b, d_in] + [b, H] -> [b, d_in + H]``."""
    return jnp.concatenate([x, h], axis=-1)


def gate(layer: dict, xh: jax.Array) -> jax.Array:
    """A gate's activation in (0, 1): ``sigmoid(net)``, ``net = sum_u w_u y^u(t-1)``.
    ``[b, d_in + H] -> [b, H]``."""
    return jax.nn.sigmoid(dense(layer, xh))


def lstm_step(params: dict, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
    """One tick of the 1997 cell (section 4). ``carry = (c, h)`` of ``[b, H]``; ``x [b, d_in]``.

    Returns ``((c, h), h)``: the new carry and the output, as ``scan_over_time`` expects.
    """
    c_prev, h_prev = carry
    xh = join(x, h_prev)  # [b, d_in + H]: the units every gate listens to
    i = gate(params["in_gate"], xh)  # y^in(t): may the cell be written?
    o = gate(params["out_gate"], xh)  # y^out(t): may the cell be read?
    g = jnp.tanh(dense(params["cell"], xh))  # g(net_c(t)): what would be written
    c = c_prev + i * g  # s_c(t) = s_c(t-1) + y^in(t) g(net_c(t)): the constant error carousel
    h = o * jnp.tanh(c)  # y^c(t) = y^out(t) h(s_c(t))
    return (c, h), h


def lstm(
    params: dict, xs: jax.Array, carry0: Carry | None = None, *, step: Callable = lstm_step
) -> jax.Array:
    """All cell outputs: ``xs [batch, T, d_in] -> hs [batch, T, H]``; the carry starts at zero by
    default.

    ``step`` is the tick to run (the forget-gate cell of topic 3.3 passes its own).
    """
    carry0 = check_inputs(params, xs, carry0)
    return scan_over_time(step, params, xs, carry0)


def lstm_trace(
    params: dict, xs: jax.Array, carry0: Carry | None = None, *, step: Callable = lstm_step
) -> tuple[jax.Array, jax.Array]:
    """Like `lstm`, but also returns the cell states: ``(hs, cs)``, both ``[batch, T, H]``.

    The final carry is ``(cs[:, -1], hs[:, -1])``.
    """
    carry0 = check_inputs(params, xs, carry0)

    def traced(p, carry, x):
        carry, h = step(p, carry, x)
        return carry, (h, carry[0])  # emit the output and the cell state

    return scan_over_time(traced, params, xs, carry0)


# --8<-- [end:core]


def check_inputs(params: dict, xs: Any, carry0: Any = None) -> Carry:
    """Check ``xs [batch, T, d_in]`` and ``carry0 = (c, h)`` against ``params``; return the carry
    (zeros if None)."""
    d_in_plus_h, hidden = params["in_gate"]["kernel"].shape
    d_in = d_in_plus_h - hidden
    checks.array_shape(
        "xs", xs, ("batch", "time", d_in), dims=f"[batch, time, d_in={d_in}] (batch-major)"
    )
    if xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(
            f"xs: expected at least one example and one time step, got shape {tuple(xs.shape)}"
        )
    batch = xs.shape[0]
    if carry0 is None:
        zeros = jnp.zeros((batch, hidden), xs.dtype)
        return zeros, zeros
    if not isinstance(carry0, tuple | list) or len(carry0) != 2:
        raise TypeError(
            f"carry0: expected a pair (c, h) of [batch, H] arrays, got {type(carry0).__name__}"
        )
    for name, part in zip(("carry0[0] (c)", "carry0[1] (h)"), carry0):
        checks.array_shape(name, part, (batch, hidden), dims=f"[batch={batch}, H={hidden}]")
    return tuple(carry0)


def _check_sizes(d_hidden: int, in_bias: float, name: str = "features") -> None:
    checks.positive_int(name, d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))


# --8<-- [start:linen]
class LinenLSTM(nn.Module):
    """Functional twin: ``variables["params"]`` is `init_lstm`'s tree,
    ``{"cell", "in_gate", "out_gate"}``, each ``{"kernel": [d_in + H, H], "bias": [H]}``.

    ``features`` = number of cells ``H``; the input size is read from ``xs`` at ``init``.
    ``__call__(xs [batch, T, d_in], carry0=None) -> hs [batch, T, H]``.
    """

    features: int
    in_bias: float = IN_BIAS

    @nn.compact
    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        _check_sizes(self.features, self.in_bias)
        checks.array_shape(
            "xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)"
        )
        params = twins.declare(self, init_lstm, xs.shape[-1], self.features, in_bias=self.in_bias)
        return lstm(params, xs, carry0)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxLSTM(nnx.Module):
    """Object-oriented twin: one attribute per gate of `init_lstm`'s tree (``cell``, ``in_gate``,
    ``out_gate``), each holding ``kernel [d_in + H, H]`` and ``bias [H]`` as ``nnx.Param``s."""

    def __init__(self, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS, rngs: nnx.Rngs):
        checks.positive_int("d_in", d_in)
        _check_sizes(d_hidden, in_bias, "d_hidden")
        for name, layer in init_lstm(rngs.params(), d_in, d_hidden, in_bias=in_bias).items():
            setattr(self, name, twins.to_nnx(layer))

    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        # {gate: {"kernel", "bias"}}: the tree `lstm` takes
        return lstm(twins.pure(self), xs, carry0)


# --8<-- [end:nnx]
