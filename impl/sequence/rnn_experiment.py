"""3.1 RNN, the experiment: learn to recall a symbol a few steps back; watch the gradient fade.

Tanh RNNs of 32 units learn delayed recall (delays 2, 5 and 10) side by side in one compiled
loop, trained with the hand-written Adam of topic 2.8; then ``||dh_T/dx_t||`` is measured
against the distance ``T - t`` for untrained nets of three recurrent gains and for the trained
ones, and hand-written BPTT and RTRL are checked against ``jax.grad``. The model and the math
live in `impl.sequence.rnn`.

Run it: ``python -m impl 3.1`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy, max_relative_difference
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.rnn import (
    bptt,
    classify,
    decay_factor,
    init_classifier,
    init_rnn,
    input_jacobian_norms,
    rnn,
    rtrl,
)
from impl.training import train

__all__ = ["DELAYS", "GAINS", "OPTIMIZER", "experiment", "loss_fn", "recall_data"]


# --8<-- [start:experiment]
DELAYS = (2, 5, 10)  # the task: recall the first of 1 + delay tokens
GAINS = (0.5, 1.0, 2.0)  # recurrent weight scales at initialisation, for the gradient measurement
HIDDEN, N_SYMBOLS, N_DISTRACTORS = 32, 4, 4
# one-hot input size (reserved ids included)
VOCAB = data.sequences.FIRST_SYMBOL + N_SYMBOLS + N_DISTRACTORS
PROBE_LENGTH = 40  # gradients are measured on sequences of 1 + PROBE_LENGTH tokens
FIT = (1, 30)  # distances over which the per-step decay factor is fitted


def recall_data(key: jax.Array, n: int, delay: int) -> tuple[jax.Array, jax.Array]:
    """Delayed recall as one-hot inputs ``[n, 1 + delay, VOCAB]`` and classes ``int[n]`` in
    ``0..N_SYMBOLS-1``."""
    task = data.delayed_recall(
        key, n, delay=delay, n_symbols=N_SYMBOLS, n_distractors=N_DISTRACTORS
    )
    return jax.nn.one_hot(task.inputs, VOCAB), task.targets - data.sequences.FIRST_SYMBOL


def loss_fn(models, batch, key):
    """One RNN per delay, trained side by side: the summed loss of independent models."""
    del key  # deterministic models
    losses = {d: cross_entropy(classify(models[d], batch[f"x{d}"]), batch[f"y{d}"]) for d in DELAYS}
    return sum(losses.values()), {f"loss_delay_{d}": loss for d, loss in losses.items()}


OPTIMIZER = adam(learning_rate=3e-3)


# --8<-- [end:experiment]


@jax.jit
def _setup(key):
    """Train/test sets per delay, the probe sequences, the models (one start for all) and the
    untrained nets."""
    k_data, k_probe, k_model = jax.random.split(key, 3)
    train_set, test_set = {}, {}
    for d in DELAYS:
        x, y = recall_data(jax.random.fold_in(k_data, d), 2048 + 512, d)
        train_set[f"x{d}"], train_set[f"y{d}"] = x[:2048], y[:2048]
        test_set[d] = (x[2048:], y[2048:])
    probe, _ = recall_data(k_probe, 256, PROBE_LENGTH)
    models = {d: init_classifier(k_model, VOCAB, HIDDEN, N_SYMBOLS) for d in DELAYS}
    untrained = {f"init_gain_{g:g}": init_rnn(k_model, VOCAB, HIDDEN, gain=g) for g in GAINS}
    return train_set, test_set, probe, models, untrained


@jax.jit
def _measure(models, test_set, probe, untrained):
    """Test accuracy per delay, and ``||dh_T/dx_t||`` per distance (index 0 = the last input) for
    every net."""
    accuracies = {d: accuracy(classify(models[d], x), y) for d, (x, y) in test_set.items()}
    nets = untrained | {f"trained_delay_{d}": models[d]["rnn"] for d in DELAYS}
    return accuracies, {name: input_jacobian_norms(p, probe)[::-1] for name, p in nets.items()}


@jax.jit
def _gradients_three_ways(key, xs, ys):
    """On a small net: hand-written BPTT and ``jax.grad``; RTRL and ``jax.vjp`` for random output
    errors."""
    small = init_classifier(key, VOCAB, 8, N_SYMBOLS)
    _, by_hand = bptt(small, xs, ys)
    by_jax = jax.grad(lambda m: cross_entropy(classify(m, xs), ys))(small)
    hs, vjp = jax.vjp(lambda p: rnn(p, xs), small["rnn"])
    dhs = jax.random.normal(key, hs.shape)
    return (by_hand, by_jax), (rtrl(small["rnn"], xs, dhs), vjp(dhs)[0])


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 400) -> Report:
    """Train RNNs on delayed recall; measure how ``||dh_T/dx_t||`` falls with the distance
    ``T - t``.

    Metrics: test accuracy per delay (and chance); for each initial gain and each trained
    net, the fitted per-step decay factor ``rho`` of the input-gradient norm with its R^2 and
    the recurrent matrix's spectral radius; the largest relative differences of hand-written
    BPTT and of RTRL from ``jax.grad``.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # compiles faster than the default on CPU
    k_setup, k_train, k_check = jax.random.split(key, 3)
    train_set, test_set, probe, models, untrained = _setup(k_setup)
    result = train(
        loss_fn,
        models,
        OPTIMIZER,
        train_set,
        key=k_train,
        steps=steps,
        batch_size=128,
        chunk=steps,
        progress=progress,
        label="3.1 rnn",
    )
    accuracies, curves = jax.device_get(_measure(result.params, test_set, probe, untrained))
    metrics = {"chance": 1.0 / N_SYMBOLS} | {
        f"accuracy_delay_{d}": float(a) for d, a in accuracies.items()
    }
    nets = untrained | {f"trained_delay_{d}": result.params[d]["rnn"] for d in DELAYS}
    fits = {}
    for name, p in nets.items():
        fit = decay_factor(curves[name], *FIT)
        metrics[f"rho_{name}"], metrics[f"r2_{name}"] = fit.rho, fit.r2
        metrics[f"shrink_{FIT[1]}_vs_{FIT[0]}_{name}"] = float(
            curves[name][FIT[1]] / curves[name][FIT[0]]
        )
        fits[name] = fit
        metrics[f"spectral_radius_{name}"] = float(
            np.max(np.abs(np.linalg.eigvals(np.asarray(p["w_hh"]))))
        )
    xs, ys = test_set[DELAYS[0]]
    bptt_pair, rtrl_pair = jax.device_get(_gradients_three_ways(k_check, xs[:16], ys[:16]))
    metrics["bptt_max_rel_diff"] = max_relative_difference(*bptt_pair)
    metrics["rtrl_max_rel_diff"] = max_relative_difference(*rtrl_pair)

    lines = [
        f"delayed recall, {N_SYMBOLS} symbols (chance "
        f"{metrics['chance']:.0%}), tanh RNN with {HIDDEN} units:"
    ]
    lines += [f"  delay {d:>2}: test accuracy {metrics[f'accuracy_delay_{d}']:.1%}" for d in DELAYS]
    lines.append(
        f"||dh_T/dx_t|| vs distance T - t, fitted as C rho^(T-t) over distances {FIT[0]}-{FIT[1]}:"
    )
    lines.append(f"  {'network':<20} {'rho':>6} {'R^2':>6} {'spectral radius of W_hh':>24}")
    for name in nets:
        lines.append(
            f"  {name.replace('_', ' '):<20} {metrics[f'rho_{name}']:>6.3f} "
            f"{metrics[f'r2_{name}']:>6.3f}"
            f" {metrics[f'spectral_radius_{name}']:>24.2f}"
        )
    lines.append(
        f"hand-written BPTT vs jax.grad: max relative difference {metrics['bptt_max_rel_diff']:.1e}"
    )
    lines.append(
        "RTRL (forward in time) vs jax.vjp: max relative difference "
        f"{metrics['rtrl_max_rel_diff']:.1e}"
    )
    fig = _figure(result, fits, curves)
    return Report(
        "3.1 RNN — delayed recall, and gradients that fade with distance",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
        extra={"curves": curves},
    )


# --8<-- [end:run]


def _figure(result, fits, curves):
    fig, axes = plotting.figure(3, 1, height=3.5)
    ax = axes[0]
    for i, d in enumerate(DELAYS):
        ax.plot(
            result.history[f"loss_delay_{d}"], color=plotting.PALETTE[i], lw=1.2, label=f"delay {d}"
        )
    ax.axhline(np.log(N_SYMBOLS), ls=":", color=plotting.PALETTE[3], label="chance (log 4)")
    ax.set(yscale="log", xlabel="step", title="training loss")
    ax.legend(fontsize=8)
    ax = axes[1]
    distance = np.arange(PROBE_LENGTH + 1)
    k = np.arange(FIT[0], FIT[1] + 1)
    for i, g in enumerate(GAINS):
        name = f"init_gain_{g:g}"
        ax.semilogy(distance, curves[name], color=plotting.PALETTE[i], label=f"init, gain {g:g}")
        fit = fits[name].scale * fits[name].rho ** k
        ax.semilogy(k, fit, ":", color="0.5", lw=1.2)
        ax.annotate(
            f"ρ = {fits[name].rho:.2f}",
            (k[-1], fit[-1]),
            fontsize=8,
            xytext=(3, -10),
            textcoords="offset points",
        )
    ax.set(
        xlabel="distance T − t (steps)",
        ylabel="‖∂h_T / ∂x_t‖",
        title="at initialisation (dotted: fit C ρ^k)",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    for i, d in enumerate(DELAYS):
        ax.semilogy(
            distance,
            curves[f"trained_delay_{d}"],
            "--",
            color=plotting.PALETTE[i],
            label=f"trained, delay {d}",
        )
    ax.semilogy(
        distance, curves["init_gain_1"], color=plotting.PALETTE[4], alpha=0.5, label="init, gain 1"
    )
    ax.set(xlabel="distance T − t (steps)", title="after training")
    ax.legend(fontsize=8)
    return fig
