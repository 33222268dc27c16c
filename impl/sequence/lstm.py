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
``scan_over_time`` from 3.1); `LinenLSTM` and `NnxLSTM` hold the parameters and call them.

Shapes: ``xs`` is ``float32[batch, T, d_in]`` (batch-major); the carry is ``(c, h)``, two
``float32[batch, H]`` arrays — cell states and cell outputs, in Flax's order; outputs are
``hs: float32[batch, T, H]``. Parameters are ``{gate: {"kernel": [d_in + H, H], "bias": [H]}}``
for the gates in `GATES`: every gate sees the current input and all cell outputs of the
previous step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from impl import checks, data, plotting
from impl.data.sequences import FIRST_SYMBOL
from impl.deep_networks.dnn import NnxLayer, accuracy, cross_entropy, dense, init_layer
from impl.optimization.adam import adam
from impl.optimization.schedules import clip_by_global_norm
from impl.report import Report
from impl.sequence.rnn import init_rnn, rnn, scan_over_time
from impl.training import first_step, train

__all__ = [
    "GATES",
    "IN_BIAS",
    "LinenLSTM",
    "NnxLSTM",
    "check_inputs",
    "experiment",
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
    """One gate's weights from the input and the previous outputs: ``{"kernel": [d_in + H, H], "bias": [H]}``."""
    layer = init_layer(key, d_in + d_hidden, d_hidden)  # LeCun-scaled, as in 1.1
    return {"kernel": layer["kernel"], "bias": jnp.full((d_hidden,), bias)}


def init_lstm(key: jax.Array, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS) -> dict:
    """Parameters of a 1997 LSTM layer of ``d_hidden`` cells: ``{"cell", "in_gate", "out_gate"}``."""
    checks.positive_int("d_in", d_in)
    checks.positive_int("d_hidden", d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))
    keys = jax.random.split(checks.prng_key("key", key), len(GATES))
    biases = {"in_gate": in_bias}
    return {name: init_gate(k, d_in, d_hidden, biases.get(name, 0.0)) for name, k in zip(GATES, keys)}


def join(x: jax.Array, h: jax.Array) -> jax.Array:
    """What every gate sees: the input and the previous outputs, ``[b, d_in] + [b, H] -> [b, d_in + H]``."""
    return jnp.concatenate([x, h], axis=-1)


def gate(layer: dict, xh: jax.Array) -> jax.Array:
    """A gate's activation in (0, 1): ``sigmoid(net)``, ``net = sum_u w_u y^u(t-1)``. ``[b, d_in + H] -> [b, H]``."""
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


def lstm(params: dict, xs: jax.Array, carry0: Carry | None = None, *, step: Callable = lstm_step) -> jax.Array:
    """All cell outputs: ``xs [batch, T, d_in] -> hs [batch, T, H]``; the carry starts at zero by default.

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
    """Check ``xs [batch, T, d_in]`` and ``carry0 = (c, h)`` against ``params``; return the carry (zeros if None)."""
    d_in_plus_h, hidden = params["in_gate"]["kernel"].shape
    d_in = d_in_plus_h - hidden
    checks.array_shape("xs", xs, ("batch", "time", d_in), dims=f"[batch, time, d_in={d_in}] (batch-major)")
    if xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(f"xs: expected at least one example and one time step, got shape {tuple(xs.shape)}")
    batch = xs.shape[0]
    if carry0 is None:
        zeros = jnp.zeros((batch, hidden), xs.dtype)
        return zeros, zeros
    if not isinstance(carry0, tuple | list) or len(carry0) != 2:
        raise TypeError(f"carry0: expected a pair (c, h) of [batch, H] arrays, got {type(carry0).__name__}")
    for name, part in zip(("carry0[0] (c)", "carry0[1] (h)"), carry0):
        checks.array_shape(name, part, (batch, hidden), dims=f"[batch={batch}, H={hidden}]")
    return tuple(carry0)


def _check_sizes(d_hidden: int, in_bias: float, name: str = "features") -> None:
    checks.positive_int(name, d_hidden)
    checks.in_range("in_bias", in_bias, -float("inf"), float("inf"))


# --8<-- [start:linen]
class LinenLSTM(nn.Module):
    """Functional twin: ``{"params": {"cell": {"kernel", "bias"}, "in_gate": ..., "out_gate": ...}}``.

    ``features`` = number of cells ``H``; the input size is read from ``xs`` at ``init``.
    ``__call__(xs [batch, T, d_in], carry0=None) -> hs [batch, T, H]``.
    """

    features: int
    in_bias: float = IN_BIAS

    @nn.compact
    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        _check_sizes(self.features, self.in_bias)
        checks.array_shape("xs", xs, ("batch", "time", "d_in"), dims="[batch, time, d_in] (batch-major)")
        d_in, biases = xs.shape[-1], {"in_gate": self.in_bias}
        params = {name: self.param(name, init_gate, d_in, self.features, biases.get(name, 0.0)) for name in GATES}
        return lstm(params, xs, carry0)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxLSTM(nnx.Module):
    """Object-oriented twin: one `NnxLayer` (``kernel [d_in + H, H]``, ``bias [H]``) per gate."""

    def __init__(self, d_in: int, d_hidden: int, *, in_bias: float = IN_BIAS, rngs: nnx.Rngs):
        checks.positive_int("d_in", d_in)
        _check_sizes(d_hidden, in_bias, "d_hidden")
        self.cell = NnxLayer(d_in + d_hidden, d_hidden, rngs=rngs)
        self.in_gate = NnxLayer(d_in + d_hidden, d_hidden, rngs=rngs)
        self.out_gate = NnxLayer(d_in + d_hidden, d_hidden, rngs=rngs)
        self.in_gate.bias[...] = jnp.full((d_hidden,), in_bias)

    def params(self) -> dict:
        """The pure parameter dict that the functions take, read from the ``nnx.Param``s."""
        return {name: getattr(self, name).read() for name in GATES}

    def __call__(self, xs: jax.Array, carry0: Carry | None = None) -> jax.Array:
        return lstm(self.params(), xs, carry0)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: remember the first symbol across 100 distractors.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
DELAY = 100  # distractor steps between the symbol and the question
N_SYMBOLS, N_DISTRACTORS = 4, 4  # symbols to remember, symbols in between
VOCAB = FIRST_SYMBOL + N_SYMBOLS + N_DISTRACTORS  # delayed_recall's token ids, one-hot inputs
HIDDEN = 16  # LSTM cells
MODELS = {  # name -> (kind, hidden units)
    "LSTM, 16 cells": ("lstm", HIDDEN),
    "RNN, 16 units (same width)": ("rnn", HIDDEN),
    "RNN, 32 units (same size)": ("rnn", 32),  # 1,440 parameters vs the LSTM's 1,392 (readouts aside)
}


def init_models(key: jax.Array, d_in: int, n_out: int) -> dict:
    """``{name: {"net": recurrent weights, "readout": dense layer}}`` for every entry of `MODELS`."""
    params = {}
    for i, (name, (kind, hidden)) in enumerate(MODELS.items()):
        k_net, k_out = jax.random.split(jax.random.fold_in(key, i))
        net = init_lstm(k_net, d_in, hidden) if kind == "lstm" else init_rnn(k_net, d_in, hidden)
        params[name] = {"net": net, "readout": init_layer(k_out, hidden, n_out)}
    return params


def final_logits(name: str, params: dict, xs: jax.Array) -> jax.Array:
    """Read the answer from the last output: ``xs [b, T, d_in] -> logits [b, n_out]``."""
    run = lstm if MODELS[name][0] == "lstm" else rnn
    return dense(params["readout"], run(params["net"], xs)[:, -1])


def loss_fn(params, batch, key):
    """Every model of `MODELS` side by side on the same batch; the losses are summed.

    The models share nothing, so each one's gradient is its own: independent trainings in one
    compiled loop. ``batch = {"x": int[b, T] tokens, "y": int[b] classes}``; metrics: each
    model's loss and batch accuracy.
    """
    del key
    xs = jax.nn.one_hot(batch["x"], VOCAB)  # [b, T, vocab]
    logits = {name: final_logits(name, p, xs) for name, p in params.items()}  # each [b, N_SYMBOLS]
    losses = {name: cross_entropy(z, batch["y"]) for name, z in logits.items()}
    accuracies = {name: accuracy(z, batch["y"]) for name, z in logits.items()}
    return sum(losses.values()), {**losses, "accuracy": accuracies}


# Each model clips its own gradient (norm 1) before Adam: without a forget gate, a cell's
# gradient can spike and undo what it learned. Labels route each model's subtree.
OPTIMIZER = optax.multi_transform(
    {name: optax.chain(clip_by_global_norm(1.0), adam(learning_rate=5e-3)) for name in MODELS},
    {name: name for name in MODELS},
)


def fit(key: jax.Array, train_set: data.SeqTask, *, steps: int, progress: bool | None = None):
    k_init, k_train = jax.random.split(key)
    params = init_models(k_init, VOCAB, N_SYMBOLS)
    batch = {"x": train_set.inputs, "y": train_set.targets - FIRST_SYMBOL}  # classes 0..N_SYMBOLS-1
    return train(loss_fn, params, OPTIMIZER, batch, key=k_train, steps=steps, batch_size=32, chunk=200,
                 progress=progress, label="3.2 LSTM vs RNN")  # fmt: skip


# --8<-- [end:experiment]


@jax.jit
def input_gradients(params: dict, xs: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``|dL/dx_t|`` averaged over a batch, ``[T]`` per model: how much error reaches each input step."""
    out = {}
    for name, p in params.items():
        grads = jax.grad(lambda x, p=p, name=name: cross_entropy(final_logits(name, p, x), labels))(xs)  # [b, T, d]
        out[name] = jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0)  # [T]
    return out


@jax.jit
def evaluate(params: dict, xs: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Accuracy of every model on ``xs [n, T, vocab]`` with classes ``labels int[n]``."""
    return {name: accuracy(final_logits(name, p, xs), labels) for name, p in params.items()}


SMOOTH, SOLVED = 20, 0.95


def steps_to_solve(batch_accuracy: np.ndarray) -> int:
    """First step at which the running mean of ``batch_accuracy [steps]`` reaches `SOLVED`; ``steps + 1`` if never."""
    reached = first_step(batch_accuracy, SOLVED, window=SMOOTH, below=False)
    return len(batch_accuracy) + 1 if reached is None else reached


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 600) -> Report:
    """The LSTM and two tanh RNNs learn to recall the first of ``DELAY + 1`` symbols.

    Metrics, per model: test accuracy (chance 1/4), weight count, the step at which it solved
    the task (`steps_to_solve`; ``steps + 1`` if it did not), and the size of the error signal
    reaching the first input at initialisation relative to the last one.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    k_data, k_test = jax.random.split(jax.random.key(seed))
    k_fit = jax.random.key(seed, impl="rbg")  # compiles faster than threefry inside the loop on CPU
    kwargs = {"delay": DELAY, "n_symbols": N_SYMBOLS, "n_distractors": N_DISTRACTORS}
    train_set = data.delayed_recall(k_data, 4096, **kwargs)
    test_set = data.delayed_recall(k_test, 1024, **kwargs)
    x_test = jax.nn.one_hot(test_set.inputs, VOCAB)  # [n, T, vocab]

    y_test = test_set.targets - FIRST_SYMBOL
    before = init_models(jax.random.split(k_fit)[0], VOCAB, N_SYMBOLS)  # what fit starts from
    grads = jax.tree.map(np.asarray, input_gradients(before, x_test[:128], y_test[:128]))
    result = fit(k_fit, train_set, steps=steps, progress=progress)
    accuracies = evaluate(result.params, x_test, y_test)

    header = f"{'params':>8} {'test accuracy':>14} {'solved at step':>15} {'error at t=0 / t=T (init)':>26}"
    metrics, lines = {}, [f"{'model':<30} {header}"]
    for name, p in result.params.items():
        slug = name.split(",")[0].lower() + "_" + str(MODELS[name][1])
        acc = float(accuracies[name])
        weights = sum(int(a.size) for a in jax.tree.leaves(p["net"]))
        reach = float(grads[name][0] / grads[name][-1])
        solved = steps_to_solve(result.history[f"accuracy/{name}"])
        metrics |= {f"{slug}_test_accuracy": acc, f"{slug}_weights": weights, f"{slug}_error_reach": reach,
                    f"{slug}_solved_at": solved}  # fmt: skip
        when = f"{solved:,}" if solved <= steps else "not solved"
        lines.append(f"{name:<30} {weights:>8,} {acc:>14.1%} {when:>15} {reach:>26.1e}")
    lines.append(f"chance: {1 / N_SYMBOLS:.0%}; the symbol to recall comes {DELAY} steps before the question")
    lines.append(f"solved: first step at which the {SMOOTH}-step running mean of training accuracy is {SOLVED:.0%}")
    fig = _figure(result, grads, accuracies)
    title = f"3.2 LSTM — recall a symbol across {DELAY} steps: LSTM vs tanh RNNs"
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


def _figure(result, grads, accuracies):
    fig, axes = plotting.figure(3, 1, width=11.0, height=3.4)
    ax = axes[0]
    for i, name in enumerate(MODELS):
        loss = result.history[name]
        smooth = np.convolve(loss, np.ones(SMOOTH) / SMOOTH, mode="valid")  # running mean
        ax.plot(np.arange(len(smooth)) + SMOOTH, smooth, color=plotting.PALETTE[i], label=name)
    ax.axhline(np.log(N_SYMBOLS), ls=":", color=plotting.PALETTE[3], label="chance (ln 4)")
    ax.set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[1]
    for i, name in enumerate(MODELS):
        g = grads[name]
        ax.plot(np.arange(len(g)), g / g[-1], color=plotting.PALETTE[i], label=name.split(" (")[0])
    ax.set(xlabel="input step t", ylabel="|dL/dx_t| / |dL/dx_T|", yscale="log",
           title="error reaching each input, at init")  # fmt: skip
    ax.legend(fontsize=7)
    ax = axes[2]
    names = list(MODELS)
    ax.bar(range(len(names)), [float(accuracies[n]) for n in names], color=plotting.PALETTE[: len(names)])
    ax.axhline(1 / N_SYMBOLS, ls=":", color=plotting.PALETTE[3])
    ax.text(len(names) - 0.5, 1 / N_SYMBOLS + 0.02, "chance", ha="right", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    ax.set(ylabel="test accuracy", ylim=(0, 1.05), title=f"recall after {DELAY} steps")
    return fig
