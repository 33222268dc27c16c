"""2.3 Residuals, the experiment: the degradation problem, and residual learning's answer to it.

Three fully connected ReLU nets of width 64 on the standardised digits (topic 2.2's
`digits_standardized`), trained alike with SGD and momentum: a shallow plain net (10 layers), a
deep plain net (42 layers) and its residual twin (42 layers, branches starting at zero). The
deep plain net trains worse than the shallow one; the residual one does not. The model and the
math live in `impl.optimization.residuals`.

Run it: ``python -m impl 2.3`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impl import checks, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy
from impl.optimization.adam import sgd
from impl.optimization.relu import digits_standardized
from impl.optimization.residuals import init_network, network
from impl.report import Report
from impl.training import train

__all__ = ["LOSSES", "MODELS", "OPTIMIZER", "WIDTH", "experiment", "make_loss"]


# --8<-- [start:experiment]
# name -> (blocks, residual?); a block is two layers, plus an input and an output layer.
MODELS = {
    "shallow plain (10 layers)": (4, False),
    "deep plain (42 layers)": (20, False),
    "deep residual (42 layers)": (20, True),
}
WIDTH = 64


def make_loss(residual: bool):
    """``loss_fn(params, batch, key)`` for `impl.training.train`: cross-entropy of `network`."""

    def loss_fn(params, batch, key):
        del key  # deterministic model
        logits = network(params, batch["x"], residual=residual)
        return cross_entropy(logits, batch["y"]), {"accuracy": accuracy(logits, batch["y"])}

    return loss_fn


# built once: one compile per kind and depth
LOSSES = {False: make_loss(False), True: make_loss(True)}
OPTIMIZER = sgd(learning_rate=0.003, momentum=0.9)  # the same optimizer and budget for all three


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1000) -> Report:
    """Shallow plain, deep plain and deep residual nets trained alike on the digits.

    Metrics, for ``<m>`` in ``shallow_plain``, ``deep_plain``, ``deep_residual``:
    ``<m>_train_loss`` (cross-entropy on the whole training set after training) and
    ``<m>_test_accuracy``.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    x, y, x_test, y_test = digits_standardized()
    metrics, histories = {}, {}
    for i, (name, (n_blocks, residual)) in enumerate(MODELS.items()):
        k_init, k_train = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
        params = init_network(k_init, x.shape[1], WIDTH, n_blocks, 10, residual=residual)
        result = train(
            LOSSES[residual],
            params,
            OPTIMIZER,
            {"x": x, "y": y},
            key=k_train,
            steps=steps,
            batch_size=128,
            progress=progress,
            label=f"2.3 residuals: {name.split(' (')[0]}",
        )
        slug = "_".join(name.split(" (")[0].split())
        histories[name] = result.history["loss"]
        metrics[f"{slug}_train_loss"] = float(
            cross_entropy(network(result.params, x, residual=residual), y)
        )
        metrics[f"{slug}_test_accuracy"] = float(
            accuracy(network(result.params, x_test, residual=residual), y_test)
        )

    lines = [
        f"fully connected, width {WIDTH}, ReLU; SGD + momentum, {steps} steps of 128 digits",
        f"{'model':<28} {'train loss':>11} {'test acc':>9}",
    ]
    for name in MODELS:
        slug = "_".join(name.split(" (")[0].split())
        lines.append(
            f"{name:<28} {metrics[f'{slug}_train_loss']:>11.2e} "
            f"{metrics[f'{slug}_test_accuracy']:>9.1%}"
        )
    fig, ax = plotting.figure(1, 1, height=3.6)
    for name, history in histories.items():
        ax.plot(np.convolve(history, np.ones(20) / 20, mode="valid"), label=name)
    ax.set(title="training loss (moving average of 20 steps)", xlabel="step", yscale="log")
    ax.legend()
    return Report(
        "2.3 Residuals — the degradation problem", metrics, lines, fig, time.perf_counter() - start
    )


# --8<-- [end:run]
