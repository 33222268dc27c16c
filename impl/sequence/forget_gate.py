"""3.3 Learning to forget — a gate that lets an LSTM cell reset its own memory.

Gers, Schmidhuber & Cummins, *Learning to forget: continual prediction with LSTM*,
Neural Computation 12(10), 2451–2471 (2000). https://doi.org/10.1162/089976600300015015

The idea: the 1997 cell (topic 3.2) adds to its state and never takes away, so on an input
stream that is never cut into sequences — no reset between one piece of information and the
next — the state keeps drifting, the cell's squashed output saturates and the net stops
learning. A *forget gate* multiplies the old state by a learned factor in (0, 1) before the new
input is added: near 1 the cell remembers as before, near 0 it wipes itself clean when its
content is out of date. This module adds only that gate; everything else is 3.2's cell.

Layout: `forget_step` wraps 3.2's `lstm_step`; `LinenForgetLSTM` / `NnxForgetLSTM` hold the
parameters. With the same weights, this cell is Flax's own ``LSTMCell`` (the tests check it).

Shapes: as in 3.2 — ``xs [batch, T, d_in]``, carry ``(c, h)`` of ``[batch, H]``, outputs
``[batch, T, H]``; parameters are 3.2's three gates plus ``"forget_gate"``, each
``{"kernel": [d_in + H, H], "bias": [H]}``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, plotting
from impl.deep_networks.dnn import NnxLayer, cross_entropy, dense, init_layer
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.lstm import (
    GATES,
    IN_BIAS,
    Carry,
    NnxLSTM,
    gate,
    init_gate,
    init_lstm,
    join,
    lstm,
    lstm_step,
    lstm_trace,
)
from impl.training import train

__all__ = [
    "FORGET_BIAS",
    "LinenForgetLSTM",
    "NnxForgetLSTM",
    "ReberStream",
    "continual_reber",
    "experiment",
    "forget_lstm",
    "forget_step",
    "init_forget_lstm",
]

FORGET_BIAS = 1.0  # forget gates start mostly open (sigmoid(1) = 0.73): remember by default


# --8<-- [start:core]
def init_forget_lstm(
    key: jax.Array, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS, forget_bias: float = FORGET_BIAS
) -> dict:
    """3.2's parameters plus ``"forget_gate"``; the shared gates are drawn exactly as `init_lstm` draws them."""
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
    return lstm_step(params, (f * c_prev, h_prev), x)  # the 1997 tick adds y^in g to the scaled state


def forget_lstm(params: dict, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
    """All outputs of the forget-gate LSTM: ``xs [batch, T, d_in] -> hs [batch, T, H]``."""
    _check_params(params)
    return lstm(params, xs, carry0, step=forget_step)


# --8<-- [end:core]


def _check_params(params: Any) -> None:
    missing = [name for name in (*GATES, "forget_gate") if name not in params]
    if missing:
        raise ValueError(f"params: expected entries {[*GATES, 'forget_gate']}, missing {missing}")


def _check_sizes(d_hidden: int, in_bias: float, forget_bias: float, name: str = "features") -> None:
    checks.positive_int(name, d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))
    checks.in_range("forget_bias", forget_bias, -float("inf"), float("inf"))


# --8<-- [start:linen]
class LinenForgetLSTM(nn.Module):
    """Functional twin: 3.2's ``{"cell", "in_gate", "out_gate"}`` plus ``"forget_gate"`` under ``"params"``."""

    features: int
    in_bias: float = IN_BIAS
    forget_bias: float = FORGET_BIAS

    @nn.compact
    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        _check_sizes(self.features, self.in_bias, self.forget_bias)
        checks.array_shape("xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)")
        biases = {"in_gate": self.in_bias, "forget_gate": self.forget_bias}
        params = {
            name: self.param(name, init_gate, xs.shape[-1], self.features, biases.get(name, 0.0))
            for name in (*GATES, "forget_gate")
        }
        return forget_lstm(params, xs, carry0)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxForgetLSTM(nnx.Module):
    """Object-oriented twin: a 3.2 `NnxLSTM` and one more `NnxLayer`, the forget gate."""

    def __init__(
        self, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS, forget_bias: float = FORGET_BIAS, rngs: nnx.Rngs
    ):
        _check_sizes(d_hidden, in_bias, forget_bias, "d_hidden")
        self.lstm = NnxLSTM(d_in, d_hidden, in_bias=in_bias, rngs=rngs)
        self.forget_gate = NnxLayer(d_in + d_hidden, d_hidden, rngs=rngs)
        self.forget_gate.bias[...] = jnp.full((d_hidden,), forget_bias)

    def params(self) -> dict:
        return {**self.lstm.params(), "forget_gate": self.forget_gate.read()}

    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        return forget_lstm(self.params(), xs, carry0)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The data: the continual embedded Reber grammar (section 4 of the paper).
# ---------------------------------------------------------------------------------------
# --8<-- [start:data]
SYMBOLS = "BTPSXVE"
B, T, P, S, X, V, E = range(7)
# node -> ((symbol, next node), (symbol, next node)); a fair coin picks one. Nodes 2-8 are
# Reber's grammar; 0, 1, 9 and 10 embed it: B, then T or P, the inner string, the same T or P
# again (node 9, written from memory), then E. Node 11 = the string is over.
_REBER = (
    ((B, 1), (B, 1)),  # 0
    ((T, 2), (P, 2)),  # 1: the symbol the net must remember
    ((B, 3), (B, 3)),  # 2: inner string starts
    ((T, 4), (P, 5)),  # 3
    ((S, 4), (X, 6)),  # 4
    ((T, 5), (V, 7)),  # 5
    ((X, 5), (S, 8)),  # 6
    ((P, 6), (V, 8)),  # 7
    ((E, 9), (E, 9)),  # 8: inner string ends
    ((T, 10), (P, 10)),  # 9: repeats node 1's choice (overridden below)
    ((E, 11), (E, 11)),  # 10
)
_SYMBOL = np.array([[a[0], b[0]] for a, b in _REBER])  # [11, 2]
_NEXT = np.array([[a[1], b[1]] for a, b in _REBER])  # [11, 2]
_BRANCHING = _SYMBOL[:, 0] != _SYMBOL[:, 1]  # nodes whose symbol is a coin flip
_BRANCHING[9] = False  # ... except the repeat, which memory decides
_DONE = len(_REBER)


class ReberStream(NamedTuple):
    """``tokens int32[n, T]``; ``repeat bool[n, T]``: the token is the remembered T/P (node 9);
    ``branching bool[n, T]``: the token was a coin flip, so no predictor can know it in advance."""

    tokens: jax.Array
    repeat: jax.Array
    branching: jax.Array


def embedded_reber_strings(rng: np.random.Generator, n: int, max_len: int = 64) -> tuple[np.ndarray, ...]:
    """``n`` strings generated side by side, as rows of ``[n, max_len]`` grids.

    Returns ``(symbols, emitted, repeat, branching)``; rows still running after ``max_len``
    symbols (rare: the loops have probability 1/2) are marked unfinished by an all-False ``emitted``.
    """
    node = np.zeros(n, np.int64)
    memory = np.zeros(n, np.int64)
    grids = np.zeros((4, n, max_len), np.int64)  # symbol, emitted, repeat, branching
    for t in range(max_len):
        coin = rng.integers(0, 2, n)
        live = node < _DONE
        at = np.minimum(node, _DONE - 1)
        memory = np.where(at == 1, coin, memory)
        symbol = np.where(at == 9, T + memory, _SYMBOL[at, coin])  # node 9 writes the remembered symbol
        grids[:, :, t] = symbol, live, live & (at == 9), live & _BRANCHING[at]
        node = np.where(live, _NEXT[at, coin], node)
    grids[1:, node < _DONE] = 0  # drop unfinished strings
    return tuple(grids)


def continual_reber(key: jax.Array | int, n_streams: int, length: int) -> ReberStream:
    """``n_streams`` endless streams of embedded Reber strings back to back, cut to ``length`` tokens.

    Each stream starts at the beginning of a string; nothing marks where one string ends and
    the next begins except the symbols themselves.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n_streams", n_streams)
    checks.positive_int("length", length)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    rows = []
    for _ in range(n_streams):
        parts, have = [], 0
        while have < length:  # about 12 tokens per string
            symbols, emitted, repeat, branching = embedded_reber_strings(rng, length // 10 + 4)
            keep = emitted.astype(bool)
            parts.append(np.stack([symbols[keep], repeat[keep], branching[keep]]))  # row-major: strings in order
            have += int(keep.sum())
        rows.append(np.concatenate(parts, axis=1)[:, :length])  # [3, length]
    tokens, repeat, branching = np.stack(rows, axis=1)  # each [n_streams, length]
    return ReberStream(jnp.asarray(tokens, jnp.int32), jnp.asarray(repeat, bool), jnp.asarray(branching, bool))


# --8<-- [end:data]


# ---------------------------------------------------------------------------------------
# The experiment: predict the next symbol of a stream that is never reset.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
HIDDEN = 16
WINDOW = 40  # truncated back-propagation: gradients flow through 40 steps; the state flows on forever
STEPS = {"1997 LSTM (no forget gate)": lstm_step, "with forget gate": forget_step}


def init_models(key: jax.Array) -> dict:
    """Both nets from the same draw; the 1997 one simply has no forget gate."""
    k_net, k_out = jax.random.split(key)
    net = init_forget_lstm(k_net, len(SYMBOLS), HIDDEN)
    readout = init_layer(k_out, HIDDEN, len(SYMBOLS))
    no_forget = {name: net[name] for name in GATES}
    nets = {name: net if step is forget_step else no_forget for name, step in STEPS.items()}
    return {name: {"net": nets[name], "readout": readout} for name in STEPS}


def run(name: str, params: dict, tokens: jax.Array, carry0: Carry | None = None):
    """Next-symbol logits ``[b, T, 7]``, outputs and cell states ``[b, T, H]`` of model ``name``."""
    hs, cs = lstm_trace(params["net"], jax.nn.one_hot(tokens, len(SYMBOLS)), carry0, step=STEPS[name])
    return dense(params["readout"], hs), hs, cs


def loss_fn(params, state, batch, key):
    """Continual training: each step reads the next ``WINDOW`` tokens of every stream and
    starts from the state the previous step ended in — never from zero (only at step 0).

    ``batch["tokens"]`` is the whole stream, time-major ``int32[T_total, n_streams]``;
    ``state = {"window": int32, "carry": {name: (c, h)}}``.
    """
    del key
    tokens = jax.lax.dynamic_slice_in_dim(batch["tokens"], state["window"] * WINDOW, WINDOW + 1).T  # [n, W + 1]
    losses, carries, cells = {}, {}, {}
    for name, p in params.items():
        logits, hs, cs = run(name, p, tokens[:, :-1], state["carry"][name])
        losses[name] = cross_entropy(logits.reshape(-1, len(SYMBOLS)), tokens[:, 1:].reshape(-1))
        carries[name] = jax.lax.stop_gradient((cs[:, -1], hs[:, -1]))  # passed on, not differentiated
        cells[name] = jnp.mean(jnp.abs(cs[:, -1]))
    metrics = {**losses, "cell": cells}  # each model's own loss, and its mean |c| at the window's end
    return sum(losses.values()), (metrics, {"window": state["window"] + 1, "carry": carries})


OPTIMIZER = adam(learning_rate=1e-2)


def fit(key: jax.Array, streams: ReberStream, *, steps: int, progress: bool | None = None):
    zeros = jnp.zeros((streams.tokens.shape[0], HIDDEN))
    state = {"window": jnp.int32(0), "carry": {name: (zeros, zeros) for name in STEPS}}
    chunk = steps // 2 if steps % 2 == 0 else steps  # chunks of one length: one compiled loop
    return train(loss_fn, init_models(key), OPTIMIZER, {"tokens": streams.tokens.T}, key=key, steps=steps,
                 chunk=chunk, model_state=state, progress=progress, label="3.3 forget gate")  # fmt: skip


# --8<-- [end:experiment]


@jax.jit
def evaluate(params: dict, tokens: jax.Array, repeat: jax.Array, carry0: dict) -> dict:
    """Run each model over the test stream, starting from the state ``carry0[name]`` it was left in.

    Per model: ``correct bool[n, T-1]``, True where the next token is the remembered T/P and the
    model ranks it above the other one of the pair (False elsewhere); and the mean ``|c|`` over
    streams and cells at every step, ``[T-1]``.
    """
    out = {}
    for name, p in params.items():
        logits, _, cs = run(name, p, tokens[:, :-1], carry0[name])  # [n, T-1, 7]
        says_p = logits[..., P] > logits[..., T]  # which of the pair the model ranks higher
        hit = jnp.where(says_p, P, T) == tokens[:, 1:]
        out[name] = {"correct": hit & repeat[:, 1:], "cell": jnp.mean(jnp.abs(cs), axis=(0, 2))}
    return out


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 600, test_length: int = 4000) -> Report:
    """Both LSTMs learn to predict a continual embedded Reber stream, then read a fresh one.

    Metrics, per model (``plain`` = no forget gate, ``forget``): the final training loss (next
    to ``loss_floor``, a perfect predictor's); accuracy of predicting the remembered T/P over
    the whole test stream and over its last quarter (chance 50%); mean ``|c|`` at the end of
    training and over the first and the last tenth of the test stream.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("test_length", test_length)
    start = time.perf_counter()
    k_train, k_test = jax.random.split(jax.random.key(seed))
    streams = continual_reber(k_train, 32, steps * WINDOW + 1)
    test = continual_reber(k_test, 32, test_length + 1)
    result = fit(jax.random.key(seed, impl="rbg"), streams, steps=steps, progress=progress)
    carry = result.model_state["carry"]  # the test stream picks up where training left off: no reset at all
    scores = jax.tree.map(np.asarray, evaluate(result.params, test.tokens, test.repeat, carry))
    repeat = np.asarray(test.repeat[:, 1:])
    floor = float(np.log(2) * np.mean(np.asarray(streams.branching[:, 1:])))  # loss of a perfect predictor

    metrics, lines = {"loss_floor": floor}, []
    header = f"{'final loss':>10} {'T/P right: all':>15} {'last quarter':>13} {'mean |c|: start':>16} {'end':>8}"
    lines.append(f"{'model':<28} {header}")
    tenth, quarter = test_length // 10, test_length * 3 // 4
    for name, score in scores.items():
        slug = "forget" if STEPS[name] is forget_step else "plain"
        correct, cell = score["correct"], score["cell"]
        m = {
            "final_loss": float(np.mean(result.history[name][-50:])),
            "repeat_accuracy": float(correct.sum() / repeat.sum()),
            "repeat_accuracy_late": float(correct[:, quarter:].sum() / repeat[:, quarter:].sum()),
            "cell_start": float(cell[:tenth].mean()),
            "cell_end": float(cell[-tenth:].mean()),
            "cell_after_training": float(result.history[f"cell/{name}"][-1]),
        }
        metrics |= {f"{slug}_{k}": v for k, v in m.items()}
        accuracies = f"{m['repeat_accuracy']:>15.1%} {m['repeat_accuracy_late']:>13.1%}"
        lines.append(f"{name:<28} {m['final_loss']:>10.3f} {accuracies} {m['cell_start']:>16.1f} {m['cell_end']:>8.1f}")
    lines.append(f"loss of a perfect predictor (coin flips only): {floor:.3f}; chance for T/P: 50%")
    lines.append(f"trained on {steps} windows of {WINDOW} steps, never reset; then tested on {test_length} more")
    lines.append("mean |c| at the end of training: " + ", ".join(
        f"{name} {result.history[f'cell/{name}'][-1]:.1f}" for name in STEPS))  # fmt: skip
    fig = _figure(result, scores, repeat, floor)
    title = "3.3 Learning to forget — continual embedded Reber grammar, with and without a forget gate"
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


def _figure(result, scores, repeat, floor):
    fig, axes = plotting.figure(3, 1, width=11.0, height=3.4)
    ax = axes[0]
    for i, name in enumerate(STEPS):
        loss = result.history[name]
        smooth = np.convolve(loss, np.ones(20) / 20, mode="valid")  # 20-step running mean
        ax.plot(np.arange(len(smooth)) + 20, smooth, color=plotting.PALETTE[i], label=name)
    ax.axhline(floor, ls=":", color=plotting.PALETTE[3], label="perfect predictor")
    ax.set(xlabel="training window", ylabel="next-symbol cross-entropy", title="training (never reset)", yscale="log")
    ax.legend(fontsize=7)
    ax = axes[1]
    bins = np.array_split(np.arange(repeat.shape[1]), 20)
    centres = [b.mean() for b in bins]
    for i, (name, score) in enumerate(scores.items()):
        acc = [score["correct"][:, b].sum() / max(repeat[:, b].sum(), 1) for b in bins]
        ax.plot(centres, acc, "o-", ms=3, color=plotting.PALETTE[i], label=name)
    ax.axhline(0.5, ls=":", color=plotting.PALETTE[3], label="chance")
    ax.set(xlabel="step of the test stream", ylabel="T/P predicted right", ylim=(0, 1.05),
           title="the remembered symbol, along the stream")  # fmt: skip
    ax.legend(fontsize=7)
    ax = axes[2]
    trained = len(result.history["loss"]) * WINDOW  # tokens read during training
    for i, (name, score) in enumerate(scores.items()):
        during = result.history[f"cell/{name}"]  # at the end of each training window
        ax.plot(np.arange(1, len(during) + 1) * WINDOW, during, color=plotting.PALETTE[i], label=name)
        ax.plot(trained + np.arange(1, len(score["cell"]) + 1), score["cell"], color=plotting.PALETTE[i])
    ax.axvline(trained, ls=":", color=plotting.PALETTE[3], label="training ends, test begins")
    ax.set(xlabel="tokens read since the only reset", ylabel="mean |c|", yscale="log", title="cell state, never reset")
    ax.legend(fontsize=7)
    return fig
