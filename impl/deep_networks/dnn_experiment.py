"""1.1 DNN, the experiment: a hidden layer solves what a linear model cannot.

Two tasks no straight line separates — noisy XOR and two spirals — each learned by a linear
model and by an MLP with one hidden layer of 64 tanh units, trained with the hand-written
SGD with momentum of topic 2.8; then hand-written back-propagation checked against
``jax.grad``. The model and the math live in `impl.deep_networks.dnn`.

Run it: ``python -m impl 1.1`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import (
    accuracy,
    backprop,
    cross_entropy,
    init_mlp,
    max_relative_difference,
    mlp,
)
from impl.optimization.adam import sgd
from impl.report import Report
from impl.training import Progress, progress_enabled, train

__all__ = ["OPTIMIZER", "experiment", "fit", "loss_fn"]


# --8<-- [start:experiment]
def loss_fn(params, batch, key):
    """Mean cross-entropy of the MLP on a batch ``{"x": [b, d_in], "y": int[b]}``; ``key``
    unused."""
    del key  # a deterministic model: no dropout
    logits = mlp(params, batch["x"])
    return cross_entropy(logits, batch["y"]), {"accuracy": accuracy(logits, batch["y"])}


OPTIMIZER = sgd(learning_rate=0.1, momentum=0.9)  # eq. 9; built once so fits share one compile


def fit(key, x, y, sizes: Sequence[int], *, steps: int):
    """Train an MLP of ``sizes`` on ``(x, y)``, full batch, with hand-written SGD + momentum."""
    k_init, k_train = jax.random.split(key)
    params = init_mlp(k_init, sizes)
    return train(
        loss_fn, params, OPTIMIZER, {"x": x, "y": y}, key=k_train, steps=steps, progress=False
    )


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 3000) -> Report:
    """Linear model vs one-hidden-layer MLP on XOR and two spirals; backprop vs ``jax.grad``.

    Returns a `impl.report.Report` whose metrics hold test accuracies of each model on
    each task and the largest relative difference between hand-written and automatic gradients.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed)
    k_data, k_models, k_grad = jax.random.split(key, 3)
    tasks = {
        "XOR": lambda k, n: data.xor(k, n, noise=0.25),
        "two spirals": lambda k, n: data.two_spirals(k, n, noise=0.04, turns=1.5),
    }
    models = {"linear": [2, 2], "hidden layer (64 tanh)": [2, 64, 2]}
    metrics, runs = {}, {}
    tick = _Ticker(len(tasks) * len(models), progress)
    for t, (task, make) in enumerate(tasks.items()):
        k_train, k_test = jax.random.split(jax.random.fold_in(k_data, t))
        x, y = make(k_train, 400)
        x_test, y_test = make(k_test, 400)
        for m, (model, sizes) in enumerate(models.items()):
            result = fit(jax.random.fold_in(k_models, 10 * t + m), x, y, sizes, steps=steps)
            test_acc = float(accuracy(mlp(result.params, x_test), y_test))
            slug = f"{'linear' if len(sizes) == 2 else 'mlp'}_{task.replace(' ', '_').lower()}"
            metrics[f"{slug}_test_accuracy"] = test_acc
            runs[(task, model)] = (result, x, y, test_acc)
            tick()
    tick.close()

    # Hand-written backprop vs jax.grad on a deeper net and a random batch.
    k_p, k_x, k_y = jax.random.split(k_grad, 3)
    params = init_mlp(k_p, [2, 16, 16, 3])
    xb, yb = jax.random.normal(k_x, (64, 2)), jax.random.randint(k_y, (64,), 0, 3)
    _, by_hand = backprop(params, xb, yb)
    by_jax = jax.grad(lambda p: cross_entropy(mlp(p, xb), yb))(params)
    metrics["backprop_max_rel_diff"] = max_relative_difference(by_hand, by_jax)

    lines = [f"{'task':<12} {'model':<24} {'train loss':>10} {'test acc':>9}"]
    for (task, model), (result, *_, test_acc) in runs.items():
        lines.append(f"{task:<12} {model:<24} {result.history['loss'][-1]:>10.4f} {test_acc:>9.1%}")
    lines.append(
        "hand-written backprop vs jax.grad: max relative difference "
        f"{metrics['backprop_max_rel_diff']:.1e}"
    )
    fig = _figure(runs, tasks)
    return Report(
        "1.1 DNN — linear model vs one hidden layer",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


class _Ticker:
    """Progress over whole runs (each run is already one fast compiled loop)."""

    def __init__(self, total: int, progress: bool | None):
        self.bar = Progress(total, "1.1 dnn", progress_enabled(progress))
        self.done = 0

    def __call__(self):
        self.done += 1
        self.bar.update(self.done)

    def close(self):
        self.bar.close()


def _figure(runs, tasks):
    fig, axes = plotting.figure(3, 2, height=5.6)
    grid = np.linspace(-1.6, 1.6, 160, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for row, task in enumerate(tasks):
        for col, model in enumerate(["linear", "hidden layer (64 tanh)"]):
            result, x, y, test_acc = runs[(task, model)]
            ax = axes[row, col]
            pred = np.asarray(jnp.argmax(mlp(result.params, points), axis=-1)).reshape(gx.shape)
            ax.contourf(
                gx, gy, pred, levels=[-0.5, 0.5, 1.5], colors=plotting.PALETTE[:2], alpha=0.25
            )
            ax.scatter(*np.asarray(x).T, c=[plotting.PALETTE[int(c)] for c in np.asarray(y)], s=6)
            ax.set(title=f"{task}: {model}\ntest accuracy {test_acc:.0%}", xticks=[], yticks=[])
            ax.set_aspect("equal")
            ax.grid(False)
        ax = axes[row, 2]
        for model in ["linear", "hidden layer (64 tanh)"]:
            ax.plot(runs[(task, model)][0].history["loss"], label=model.split(" (")[0])
        ax.set(title=f"{task}: training loss", xlabel="step", yscale="log")
        ax.legend()
    return fig
