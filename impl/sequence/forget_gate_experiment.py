"""3.3 Learning to forget, the experiment: predict the next symbol of a stream that is never reset.

The data is the paper's benchmark, the continual embedded Reber grammar (section 4): embedded
Reber strings back to back, forever. Two LSTMs of 16 cells — 3.2's 1997 cell and the cell with a
forget gate, from the same draw of the gates they share — learn to predict the next symbol by
truncated back-propagation through time, side by side in one compiled loop (the hand-written Adam
of topic 2.8), and then read a fresh stream without any reset. The cell lives in
`impl.sequence.forget_gate`.

Run it: ``python -m impl 3.3`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.deep_networks.dnn import cross_entropy, dense, init_layer
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.forget_gate import forget_step, init_forget_lstm
from impl.sequence.lstm import GATES, Carry, lstm_step, lstm_trace
from impl.training import train

__all__ = [
    "OPTIMIZER",
    "STEPS",
    "SYMBOLS",
    "WINDOW",
    "ReberStream",
    "continual_reber",
    "embedded_reber_strings",
    "experiment",
    "fit",
    "init_models",
    "loss_fn",
]


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


def embedded_reber_strings(
    rng: np.random.Generator, n: int, max_len: int = 64
) -> tuple[np.ndarray, ...]:
    """``n`` strings generated side by side, as rows of ``[n, max_len]`` grids.

    Returns ``(symbols, emitted, repeat, branching)``; rows still running after ``max_len`` symbols
    (rare: the loops have probability 1/2) are marked unfinished by an all-False ``emitted``.
    """
    node = np.zeros(n, np.int64)
    memory = np.zeros(n, np.int64)
    grids = np.zeros((4, n, max_len), np.int64)  # symbol, emitted, repeat, branching
    for t in range(max_len):
        coin = rng.integers(0, 2, n)
        live = node < _DONE
        at = np.minimum(node, _DONE - 1)
        memory = np.where(at == 1, coin, memory)
        # node 9 writes the remembered symbol
        symbol = np.where(at == 9, T + memory, _SYMBOL[at, coin])
        grids[:, :, t] = symbol, live, live & (at == 9), live & _BRANCHING[at]
        node = np.where(live, _NEXT[at, coin], node)
    grids[1:, node < _DONE] = 0  # drop unfinished strings
    return tuple(grids)


def continual_reber(key: jax.Array | int, n_streams: int, length: int) -> ReberStream:
    """``n_streams`` endless streams of embedded Reber strings back to back, cut to ``length``
    tokens.

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
            # row-major: strings in order
            parts.append(np.stack([symbols[keep], repeat[keep], branching[keep]]))
            have += int(keep.sum())
        rows.append(np.concatenate(parts, axis=1)[:, :length])  # [3, length]
    tokens, repeat, branching = np.stack(rows, axis=1)  # each [n_streams, length]
    return ReberStream(
        jnp.asarray(tokens, jnp.int32), jnp.asarray(repeat, bool), jnp.asarray(branching, bool)
    )


# --8<-- [end:data]


# --8<-- [start:experiment]
HIDDEN = 16
WINDOW = (
    40  # truncated back-propagation: gradients flow through 40 steps; the state flows on forever
)
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
    hs, cs = lstm_trace(
        params["net"], jax.nn.one_hot(tokens, len(SYMBOLS)), carry0, step=STEPS[name]
    )
    return dense(params["readout"], hs), hs, cs


def loss_fn(params, state, batch, key):
    """Continual training: each step reads the next ``WINDOW`` tokens of every stream and
    starts from the state the previous step ended in — never from zero (only at step 0).

    ``batch["tokens"]`` is the whole stream, time-major ``int32[T_total, n_streams]``;
    ``state = {"window": int32, "carry": {name: (c, h)}}``.
    """
    del key
    tokens = jax.lax.dynamic_slice_in_dim(
        batch["tokens"], state["window"] * WINDOW, WINDOW + 1
    ).T  # [n, W + 1]
    losses, carries, cells = {}, {}, {}
    for name, p in params.items():
        logits, hs, cs = run(name, p, tokens[:, :-1], state["carry"][name])
        losses[name] = cross_entropy(logits.reshape(-1, len(SYMBOLS)), tokens[:, 1:].reshape(-1))
        # passed on, not differentiated
        carries[name] = jax.lax.stop_gradient((cs[:, -1], hs[:, -1]))
        cells[name] = jnp.mean(jnp.abs(cs[:, -1]))
    # each model's own loss, and its mean |c| at the window's end
    metrics = {**losses, "cell": cells}
    return sum(losses.values()), (metrics, {"window": state["window"] + 1, "carry": carries})


OPTIMIZER = adam(learning_rate=1e-2)


def fit(key: jax.Array, streams: ReberStream, *, steps: int, progress: bool | None = None):
    zeros = jnp.zeros((streams.tokens.shape[0], HIDDEN))
    state = {"window": jnp.int32(0), "carry": {name: (zeros, zeros) for name in STEPS}}
    chunk = steps // 2 if steps % 2 == 0 else steps  # chunks of one length: one compiled loop
    return train(
        loss_fn,
        init_models(key),
        OPTIMIZER,
        {"tokens": streams.tokens.T},
        key=key,
        steps=steps,
        chunk=chunk,
        model_state=state,
        progress=progress,
        label="3.3 forget gate",
    )


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


# --8<-- [start:run]
def experiment(
    seed: int = 0, *, progress: bool | None = None, steps: int = 1000, test_length: int = 4000
) -> Report:
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
    # the test stream picks up where training left off: no reset at all
    carry = result.model_state["carry"]
    scores = jax.tree.map(np.asarray, evaluate(result.params, test.tokens, test.repeat, carry))
    repeat = np.asarray(test.repeat[:, 1:])
    # loss of a perfect predictor
    floor = float(np.log(2) * np.mean(np.asarray(streams.branching[:, 1:])))

    metrics, lines = {"loss_floor": floor}, []
    header = (
        f"{'final loss':>10} {'T/P right: all':>15} {'last quarter':>13} "
        f"{'mean |c|: start':>16} {'end':>8}"
    )
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
        lines.append(
            f"{name:<28} {m['final_loss']:>10.3f} {accuracies} {m['cell_start']:>16.1f} "
            f"{m['cell_end']:>8.1f}"
        )
    lines.append(f"loss of a perfect predictor (coin flips only): {floor:.3f}; chance for T/P: 50%")
    lines.append(
        f"trained on {steps} windows of {WINDOW} steps, "
        f"never reset; then tested on {test_length} more"
    )
    lines.append("mean |c| at the end of training: " + ", ".join(
        f"{name} {result.history[f'cell/{name}'][-1]:.1f}" for name in STEPS))  # fmt: skip
    fig = _figure(result, scores, repeat, floor)
    title = (
        "3.3 Learning to forget — continual embedded Reber grammar, with and without a forget gate"
    )
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


# --8<-- [end:run]


def _figure(result, scores, repeat, floor):
    fig, axes = plotting.figure(3, 1, height=3.4)
    ax = axes[0]
    for i, name in enumerate(STEPS):
        loss = result.history[name]
        smooth = np.convolve(loss, np.ones(20) / 20, mode="valid")  # 20-step running mean
        ax.plot(np.arange(len(smooth)) + 20, smooth, color=plotting.PALETTE[i], label=name)
    ax.axhline(floor, ls=":", color=plotting.PALETTE[3], label="perfect predictor")
    ax.set(
        xlabel="training window",
        ylabel="next-symbol cross-entropy",
        title="training (never reset)",
        yscale="log",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    bins = np.array_split(np.arange(repeat.shape[1]), 20)
    centres = [b.mean() for b in bins]
    for i, (name, score) in enumerate(scores.items()):
        acc = [score["correct"][:, b].sum() / max(repeat[:, b].sum(), 1) for b in bins]
        ax.plot(centres, acc, "o-", ms=3, color=plotting.PALETTE[i], label=name)
    ax.axhline(0.5, ls=":", color=plotting.PALETTE[3], label="chance")
    ax.set(xlabel="step of the test stream", ylabel="T/P predicted right", ylim=(0, 1.05),
           title="the remembered symbol, along the stream")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[2]
    trained = len(result.history["loss"]) * WINDOW  # tokens read during training
    for i, (name, score) in enumerate(scores.items()):
        during = result.history[f"cell/{name}"]  # at the end of each training window
        ax.plot(
            np.arange(1, len(during) + 1) * WINDOW, during, color=plotting.PALETTE[i], label=name
        )
        ax.plot(
            trained + np.arange(1, len(score["cell"]) + 1), score["cell"], color=plotting.PALETTE[i]
        )
    ax.axvline(trained, ls=":", color=plotting.PALETTE[3], label="training ends, test begins")
    ax.set(
        xlabel="tokens read since the only reset",
        ylabel="mean |c|",
        yscale="log",
        title="cell state, never reset",
    )
    ax.legend(fontsize=8)
    return fig
