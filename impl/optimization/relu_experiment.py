"""2.2 ReLU, the experiment: gradients through 20 layers, training, and sparsity.

Three stacks of 20 hidden layers of 64 units on the standardised digits, differing only in the
activation and its standard initialisation (sigmoid and tanh with Glorot's, ReLU with He's): the
weight-gradient norm of every layer at initialisation, 1,000 steps of the same SGD with momentum
(topic 2.8's hand-written one), and the fraction of exact zeros in the ReLU stack before and after
training. The model and the math live in `impl.optimization.relu`.

Run it: ``python -m impl 2.2`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impl import checks, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy
from impl.optimization.adam import sgd
from impl.optimization.relu import (
    ACTIVATIONS,
    deep_mlp,
    digits_standardized,
    hidden_activations,
    init_deep_mlp,
    layer_gradient_norms,
    sparsity,
)
from impl.report import Report
from impl.training import train

__all__ = ["DEPTH", "LOSSES", "OPTIMIZER", "RUNS", "WIDTH", "experiment", "make_loss"]


# --8<-- [start:experiment]
RUNS = {"sigmoid": "glorot", "tanh": "glorot", "relu": "he"}  # activation -> its standard init
DEPTH, WIDTH = 20, 64


def make_loss(activation_name: str):
    """``loss_fn(params, batch, key)`` for `impl.training.train`: cross-entropy of the stack."""

    def loss_fn(params, batch, key):
        del key  # deterministic model
        logits = deep_mlp(params, batch["x"], activation_name)
        return cross_entropy(logits, batch["y"]), {"accuracy": accuracy(logits, batch["y"])}

    return loss_fn


LOSSES = {name: make_loss(name) for name in ACTIVATIONS}  # built once: one compile per activation
# the same plain optimizer for every stack (0.01 sits at the edge of stability: 2 of 10 seeds
# diverged)
OPTIMIZER = sgd(learning_rate=0.005, momentum=0.9)


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1000) -> Report:
    """Sigmoid vs tanh vs ReLU stacks of 20 hidden layers on the digits.

    Metrics: for each activation the ratio of the input layer's weight-gradient norm to the top
    hidden layer's at initialisation (``<act>_grad_ratio``) and the final training loss
    (``<act>_train_loss``); for ReLU the fraction of exactly-zero hidden activations on the test set
    at initialisation and after training (``relu_sparsity_init``, ``relu_sparsity_trained``).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    x, y, x_test, y_test = digits_standardized()
    probe_x, probe_y = x[:512], y[:512]  # a fixed batch for the gradient norms
    metrics, norms, histories, sparsities = {}, {}, {}, {}
    for i, (name, init) in enumerate(RUNS.items()):
        k_init, k_train = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
        params = init_deep_mlp(k_init, x.shape[1], WIDTH, DEPTH, 10, init_scheme=init)
        norms[name] = np.asarray(layer_gradient_norms(params, probe_x, probe_y, name))
        result = train(
            LOSSES[name],
            params,
            OPTIMIZER,
            {"x": x, "y": y},
            key=k_train,
            steps=steps,
            batch_size=128,
            progress=progress,
            label=f"2.2 relu: {name}",
        )
        histories[name] = result.history["loss"]
        metrics[f"{name}_grad_ratio"] = float(norms[name][0] / norms[name][-2])
        metrics[f"{name}_grad_factor_per_layer"] = metrics[f"{name}_grad_ratio"] ** (
            1 / (DEPTH - 1)
        )
        metrics[f"{name}_train_loss"] = float(np.mean(result.history["loss"][-100:]))
        metrics[f"{name}_test_accuracy"] = float(
            accuracy(deep_mlp(result.params, x_test, name), y_test)
        )
        if name == "relu":
            for when, p in (("init", params), ("trained", result.params)):
                sparsities[when] = np.array(
                    [float(sparsity(h)) for h in hidden_activations(p, x_test, name)]
                )
                metrics[f"relu_sparsity_{when}"] = float(sparsities[when].mean())

    lines = [
        f"{DEPTH} hidden layers of {WIDTH} units; SGD + momentum, {steps} steps of 128 digits",
        f"{'activation':<10} {'init':<7} {'|grad W_1| / |grad W_20|':>24} "
        f"{'train loss':>11} {'test acc':>9}",
    ]
    for name, init in RUNS.items():
        lines.append(
            f"{name:<10} {init:<7} {metrics[f'{name}_grad_ratio']:>24.1e} "
            f"{metrics[f'{name}_train_loss']:>11.2e} {metrics[f'{name}_test_accuracy']:>9.1%}"
        )
    lines.append(
        "backward pass through a sigmoid layer: gradient norm x "
        f"{metrics['sigmoid_grad_factor_per_layer']:.3f} "
        "per layer (f' <= 1/4)"
    )
    lines.append(
        f"ReLU activations exactly zero: {metrics['relu_sparsity_init']:.1%} at initialisation, "
        f"{metrics['relu_sparsity_trained']:.1%} after training (test set, mean over layers)"
    )
    fig = _figure(norms, histories, sparsities)
    return Report(
        "2.2 ReLU — gradients through 20 layers", metrics, lines, fig, time.perf_counter() - start
    )


# --8<-- [end:run]


def _figure(norms, histories, sparsities):
    fig, axes = plotting.figure(3, 1, height=3.4)
    for name, init in RUNS.items():
        layers = np.arange(1, len(norms[name]) + 1)
        axes[0].plot(layers, norms[name], marker="o", ms=3, label=f"{name} ({init} init)")
        axes[1].plot(np.convolve(histories[name], np.ones(20) / 20, mode="valid"), label=name)
    top = len(norms["sigmoid"]) - 1  # the last hidden layer
    layers = np.arange(1, top + 1)
    axes[0].plot(
        layers,
        norms["sigmoid"][top - 1] * 0.25 ** (top - layers),
        ls=":",
        color="grey",
        label="x 1/4 per layer",
    )
    axes[0].set(
        title="gradient norm per layer, at init", xlabel="layer (1 = input side)", yscale="log"
    )
    axes[0].set_ylabel(r"$\|\partial E / \partial W_l\|$")
    axes[0].legend()
    axes[1].set(title="training loss (moving average)", xlabel="step", yscale="log")
    axes[1].legend()
    layers = np.arange(1, len(sparsities["init"]) + 1)
    relu_colour = plotting.PALETTE[list(RUNS).index("relu")]
    axes[2].plot(
        layers, sparsities["init"], marker="o", ms=3, ls="--", color=relu_colour, label="at init"
    )
    axes[2].plot(
        layers, sparsities["trained"], marker="o", ms=3, color=relu_colour, label="trained"
    )
    axes[2].set(title="ReLU: fraction of exact zeros", xlabel="hidden layer", ylim=(0, 1))
    axes[2].legend()
    return fig
