"""3.3 Learning to forget — a gate that lets an LSTM cell reset its own memory.

Gers, Schmidhuber & Cummins, *Learning to forget: continual prediction with LSTM*,
Neural Computation 12(10), 2451–2471 (2000). https://doi.org/10.1162/089976600300015015

The idea: the 1997 cell (topic 3.2) adds to its state and never takes away, so on an input
stream that is never cut into sequences — no reset between one piece of information and the
next — the state keeps drifting, the cell's squashed output saturates and the net stops
learning. A *forget gate* multiplies the old state by a learned factor in (0, 1) before the new
input is added: near 1 the cell remembers as before, near 0 it wipes itself clean when its
content is out of date. This module adds only that gate; everything else is 3.2's cell.

Layout: `forget_step` wraps 3.2's `lstm_step`; `LinenForgetLSTM` / `NnxForgetLSTM` hold the tree
that `init_forget_lstm` declares. With the same weights, this cell is Flax's own ``LSTMCell``
(the tests check it). The experiment (the continual embedded Reber grammar, with and without the
gate) lives in `impl.sequence.forget_gate_experiment`.

Shapes: as in 3.2 — ``xs [batch, T, d_in]``, carry ``(c, h)`` of ``[batch, H]``, outputs
``[batch, T, H]``; parameters are 3.2's three gates plus ``"forget_gate"``, each
``{"kernel": [d_in + H, H], "bias": [H]}``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from impl import checks, twins
from impl.sequence.lstm import (
    GATES,
    IN_BIAS,
    Carry,
    gate,
    init_gate,
    init_lstm,
    join,
    lstm,
    lstm_step,
)

__all__ = [
    "FORGET_BIAS",
    "FORGET_GATES",
    "LinenForgetLSTM",
    "NnxForgetLSTM",
    "forget_lstm",
    "forget_step",
    "init_forget_lstm",
]

FORGET_BIAS = 1.0  # forget gates start mostly open (sigmoid(1) = 0.73): remember by default
FORGET_GATES = (*GATES, "forget_gate")  # the entries of `init_forget_lstm`'s tree


# --8<-- [start:core]
def init_forget_lstm(
    key: jax.Array,
    d_in: int,
    d_hidden: int,
    *,
    in_bias: float = IN_BIAS,
    forget_bias: float = FORGET_BIAS,
) -> dict:
    """3.2's parameters plus ``"forget_gate"``; the shared gates are drawn exactly as `init_lstm`
    draws them."""
    checks.in_range("forget_bias", forget_bias, -float("inf"), float("inf"))
    k_lstm, k_forget = jax.random.split(checks.prng_key("key", key))
    params = init_lstm(k_lstm, d_in, d_hidden, in_bias=in_bias)
    return {**params, "forget_gate": init_gate(k_forget, d_in, d_hidden, forget_bias)}


def forget_step(params: dict, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
    """One tick of the cell with a forget gate: scale the old state, then run the 1997 tick.

    ``s_c(t) = y^phi(t) s_c(t-1) + y^in(t) g(net_c(t))`` (section 3): with ``y^phi = 1`` this is
    3.2's constant error carousel. ``carry = (c, h)`` of ``[b, H]``, ``x [b, d_in]``.
    """
    c_prev, h_prev = carry
    f = gate(params["forget_gate"], join(x, h_prev))  # y^phi(t) in (0, 1), [b, H]
    # the 1997 tick adds y^in g to the scaled state
    return lstm_step(params, (f * c_prev, h_prev), x)


def forget_lstm(params: dict, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
    """All outputs of the forget-gate LSTM: ``xs [batch, T, d_in] -> hs [batch, T, H]``."""
    _check_params(params)
    return lstm(params, xs, carry0, step=forget_step)


# --8<-- [end:core]


def _check_params(params: Any) -> None:
    missing = [name for name in FORGET_GATES if name not in params]
    if missing:
        raise ValueError(f"params: expected entries {list(FORGET_GATES)}, missing {missing}")


def _check_sizes(d_hidden: int, in_bias: float, forget_bias: float, name: str = "features") -> None:
    checks.positive_int(name, d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))
    checks.in_range("forget_bias", forget_bias, -float("inf"), float("inf"))


# --8<-- [start:linen]
class LinenForgetLSTM(nn.Module):
    """Functional twin: ``variables["params"]`` is `init_forget_lstm`'s tree — 3.2's
    ``{"cell", "in_gate", "out_gate"}`` plus ``"forget_gate"``."""

    features: int
    in_bias: float = IN_BIAS
    forget_bias: float = FORGET_BIAS

    @nn.compact
    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        _check_sizes(self.features, self.in_bias, self.forget_bias)
        checks.array_shape(
            "xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)"
        )
        params = twins.declare(
            self,
            init_forget_lstm,
            xs.shape[-1],
            self.features,
            in_bias=self.in_bias,
            forget_bias=self.forget_bias,
        )
        return forget_lstm(params, xs, carry0)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxForgetLSTM(nnx.Module):
    """Object-oriented twin: the four gates of `init_forget_lstm`'s tree as attributes — 3.2's
    ``cell``, ``in_gate``, ``out_gate`` and the new ``forget_gate``."""

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        *,
        in_bias: float = IN_BIAS,
        forget_bias: float = FORGET_BIAS,
        rngs: nnx.Rngs,
    ):
        checks.positive_int("d_in", d_in)
        _check_sizes(d_hidden, in_bias, forget_bias, "d_hidden")
        tree = init_forget_lstm(
            rngs.params(), d_in, d_hidden, in_bias=in_bias, forget_bias=forget_bias
        )
        for name, layer in tree.items():
            setattr(self, name, twins.to_nnx(layer))  # {"kernel": [d_in + H, H], "bias": [H]}

    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        # the four gates: the tree `forget_lstm` takes
        return forget_lstm(twins.pure(self), xs, carry0)


# --8<-- [end:nnx]
