"""3.2 LSTM, the experiment: remember the first symbol across 100 distractors.

The 1997 LSTM of 16 cells against two tanh RNNs (topic 3.1) — one as wide, one with as many
weights — on delayed recall with a lag of 100 steps, trained side by side in one compiled loop
with the hand-written Adam of topic 2.8 and per-model gradient clipping. Also measured: how much
error reaches the first input at initialisation. The cell lives in `impl.sequence.lstm`.

Run it: ``python -m impl 3.2`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl import checks, data, plotting
from impl.data.sequences import FIRST_SYMBOL
from impl.deep_networks.dnn import accuracy, cross_entropy, dense, init_layer
from impl.optimization.adam import adam
from impl.optimization.schedules import clip_by_global_norm
from impl.report import Report
from impl.sequence.lstm import init_lstm, lstm
from impl.sequence.rnn import init_rnn, rnn
from impl.training import first_step, train

__all__ = [
    "DELAY",
    "MODELS",
    "OPTIMIZER",
    "experiment",
    "fit",
    "init_models",
    "loss_fn",
    "steps_to_solve",
]


# --8<-- [start:experiment]
DELAY = 100  # distractor steps between the symbol and the question
N_SYMBOLS, N_DISTRACTORS = 4, 4  # symbols to remember, symbols in between
VOCAB = FIRST_SYMBOL + N_SYMBOLS + N_DISTRACTORS  # delayed_recall's token ids, one-hot inputs
HIDDEN = 16  # LSTM cells
MODELS = {  # name -> (kind, hidden units)
    "LSTM, 16 cells": ("lstm", HIDDEN),
    "RNN, 16 units (same width)": ("rnn", HIDDEN),
    # 1,440 parameters vs the LSTM's 1,392 (readouts aside)
    "RNN, 32 units (same size)": ("rnn", 32),
}


def init_models(key: jax.Array, d_in: int, n_out: int) -> dict:
    """``{name: {"net": recurrent weights, "readout": dense layer}}`` for every entry of
    `MODELS`."""
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
    return train(
        loss_fn,
        params,
        OPTIMIZER,
        batch,
        key=k_train,
        steps=steps,
        batch_size=32,
        chunk=200,
        progress=progress,
        label="3.2 LSTM vs RNN",
    )


# --8<-- [end:experiment]


@jax.jit
def input_gradients(params: dict, xs: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``|dL/dx_t|`` averaged over a batch, ``[T]`` per model: how much error reaches each input
    step."""
    out = {}
    for name, p in params.items():
        # [b, T, d]
        grads = jax.grad(lambda x, p=p, name=name: cross_entropy(final_logits(name, p, x), labels))(
            xs
        )
        out[name] = jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0)  # [T]
    return out


@jax.jit
def evaluate(params: dict, xs: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Accuracy of every model on ``xs [n, T, vocab]`` with classes ``labels int[n]``."""
    return {name: accuracy(final_logits(name, p, xs), labels) for name, p in params.items()}


SMOOTH, SOLVED = 20, 0.95


def steps_to_solve(batch_accuracy: np.ndarray) -> int:
    """First step at which the running mean of ``batch_accuracy [steps]`` reaches `SOLVED`;
    ``steps + 1`` if never."""
    reached = first_step(batch_accuracy, SOLVED, window=SMOOTH, below=False)
    return len(batch_accuracy) + 1 if reached is None else reached


# --8<-- [start:run]
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

    header = (
        f"{'params':>8} {'test accuracy':>14} {'solved at step':>15} "
        f"{'error at t=0 / t=T (init)':>26}"
    )
    metrics, lines = {}, [f"{'model':<30} {header}"]
    for name, p in result.params.items():
        slug = name.split(",")[0].lower() + "_" + str(MODELS[name][1])
        acc = float(accuracies[name])
        weights = sum(int(a.size) for a in jax.tree.leaves(p["net"]))
        reach = float(grads[name][0] / grads[name][-1])
        solved = steps_to_solve(result.history[f"accuracy/{name}"])
        metrics |= {
            f"{slug}_test_accuracy": acc,
            f"{slug}_weights": weights,
            f"{slug}_error_reach": reach,
            f"{slug}_solved_at": solved,
        }
        when = f"{solved:,}" if solved <= steps else "not solved"
        lines.append(f"{name:<30} {weights:>8,} {acc:>14.1%} {when:>15} {reach:>26.1e}")
    lines.append(
        f"chance: {1 / N_SYMBOLS:.0%}; the symbol to recall comes {DELAY} steps before the question"
    )
    lines.append(
        f"solved: first step at which the {SMOOTH}-step "
        f"running mean of training accuracy is {SOLVED:.0%}"
    )
    fig = _figure(result, grads, accuracies)
    title = f"3.2 LSTM — recall a symbol across {DELAY} steps: LSTM vs tanh RNNs"
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


# --8<-- [end:run]


def _figure(result, grads, accuracies):
    fig, axes = plotting.figure(3, 1, height=3.4)
    ax = axes[0]
    for i, name in enumerate(MODELS):
        loss = result.history[name]
        smooth = np.convolve(loss, np.ones(SMOOTH) / SMOOTH, mode="valid")  # running mean
        ax.plot(np.arange(len(smooth)) + SMOOTH, smooth, color=plotting.PALETTE[i], label=name)
    ax.axhline(np.log(N_SYMBOLS), ls=":", color=plotting.PALETTE[3], label="chance (ln 4)")
    ax.set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[1]
    for i, name in enumerate(MODELS):
        g = grads[name]
        ax.plot(np.arange(len(g)), g / g[-1], color=plotting.PALETTE[i], label=name.split(" (")[0])
    ax.set(xlabel="input step t", ylabel="|dL/dx_t| / |dL/dx_T|", yscale="log",
           title="error reaching each input, at init")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[2]
    names = list(MODELS)
    ax.bar(
        range(len(names)),
        [float(accuracies[n]) for n in names],
        color=plotting.PALETTE[: len(names)],
    )
    ax.axhline(1 / N_SYMBOLS, ls=":", color=plotting.PALETTE[3])
    ax.text(len(names) - 0.5, 1 / N_SYMBOLS + 0.02, "chance", ha="right", fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1.05), title=f"recall after {DELAY} steps")
    return fig
