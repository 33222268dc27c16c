"""2.4 Dropout, the experiment: an over-fitting net on noisy two moons, with and without dropout.

A ReLU MLP with about 17,000 weights learns 200 noisy points of two overlapping moons, full
batch, with the hand-written Adam of topic 2.8: once plain, once with dropout at rate 0.5 after
every hidden layer. Dropout narrows the gap between training and test accuracy; weight scaling
(one deterministic pass) is compared with averaging 100 thinned networks; and inverted dropout's
expected activation is measured. The model and the math live in `impl.optimization.dropout`.

Run it: ``python -m impl 2.4`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy, init_mlp
from impl.optimization.adam import adam
from impl.optimization.dropout import dropout, mlp_with_dropout
from impl.report import Report
from impl.training import train

__all__ = ["OPTIMIZER", "RATE", "SIZES", "experiment", "fit", "loss_for"]


# --8<-- [start:experiment]
@functools.cache
def loss_for(rate: float):
    """The training loss with dropout at ``rate`` (one function per rate, so each compiles once)."""

    def loss_fn(params, batch, key):
        logits = mlp_with_dropout(params, batch["x"], key, rate, deterministic=False)
        return cross_entropy(logits, batch["y"])

    return loss_fn


OPTIMIZER = adam(learning_rate=1e-3)  # the project's hand-written Adam (topic 2.8)
SIZES = [2, 128, 128, 2]  # ~17,000 weights for 200 noisy training points
RATE = 0.5  # the paper's usual rate for hidden units


def fit(key, x, y, x_test, y_test, rate: float, *, steps: int, progress=None):
    """Train the MLP full-batch on ``(x, y)``; evaluate train and test loss/accuracy every 100
    steps."""
    k_init, k_train = jax.random.split(key)

    def evaluate(params):  # evaluation: all units on, no rescaling (inverted dropout)
        out = {}
        for split, (xs, ys) in {"train": (x, y), "test": (x_test, y_test)}.items():
            logits = mlp_with_dropout(params, xs, k_train, rate, deterministic=True)
            out[f"{split}_loss"], out[f"{split}_accuracy"] = (
                cross_entropy(logits, ys),
                accuracy(logits, ys),
            )
        return out

    params = init_mlp(k_init, SIZES)
    return train(
        loss_for(rate), params, OPTIMIZER, {"x": x, "y": y}, key=k_train, steps=steps,
        chunk=100, eval_fn=evaluate, progress=progress, label=f"2.4 dropout rate={rate}",
    )  # fmt: skip


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 2000) -> Report:
    """Train/test gap of an over-fitting MLP with and without dropout; weight scaling vs averaging.

    Metrics: final train/test accuracy and loss of each net, the gaps (train minus test accuracy,
    test minus train loss), the test accuracy of a Monte-Carlo average over thinned networks,
    and the measured keep rate and mean of ``dropout(ones)``.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    k_data, k_test, k_model, k_mc, k_stat = jax.random.split(jax.random.key(seed), 5)
    # overlapping classes: a perfect fit means memorising
    x, y = data.moons(k_data, 200, noise=0.35)
    x_test, y_test = data.moons(k_test, 2000, noise=0.35)

    runs, metrics = {}, {}
    for name, rate in {"plain": 0.0, "dropout": RATE}.items():
        result = fit(k_model, x, y, x_test, y_test, rate, steps=steps, progress=progress)
        runs[name] = result
        final = {k: float(v[-1]) for k, v in result.evals.items() if k != "step"}
        metrics |= {f"{name}_{k}": v for k, v in final.items()}
        metrics[f"{name}_accuracy_gap"] = final["train_accuracy"] - final["test_accuracy"]
        metrics[f"{name}_loss_gap"] = final["test_loss"] - final["train_loss"]

    # Weight scaling (one deterministic pass) vs averaging the predictions of 100 thinned nets.
    params = runs["dropout"].params
    probs = jax.vmap(
        lambda k: jax.nn.softmax(mlp_with_dropout(params, x_test, k, RATE, deterministic=False))
    )(jax.random.split(k_mc, 100))  # [100, n_test, 2]
    metrics["mc_average_test_accuracy"] = float(accuracy(jnp.log(probs.mean(axis=0)), y_test))

    # Inverted dropout preserves the expected activation: measure on a million ones.
    ones = jnp.ones((1000, 1000))
    dropped = dropout(k_stat, ones, RATE)
    metrics["keep_fraction"] = float(jnp.mean(dropped > 0))
    metrics["mean_activation"] = float(jnp.mean(dropped))

    lines = [
        f"{'net':<14} {'train acc':>9} {'test acc':>9} "
        f"{'acc gap':>8} {'train loss':>10} {'test loss':>9}"
    ]
    for name in runs:
        m = {k.removeprefix(f"{name}_"): v for k, v in metrics.items() if k.startswith(f"{name}_")}
        lines.append(
            f"{_label(name):<14} {m['train_accuracy']:>9.1%} {m['test_accuracy']:>9.1%} "
            f"{m['accuracy_gap']:>8.1%}"
            f" {m['train_loss']:>10.3f} {m['test_loss']:>9.3f}"
        )
    lines += [
        f"dropout net, test accuracy: weight scaling {metrics['dropout_test_accuracy']:.1%},"
        f" average of 100 thinned nets {metrics['mc_average_test_accuracy']:.1%}",
        f"dropout({RATE}) of 10^6 ones: kept {metrics['keep_fraction']:.4f} (expected {1 - RATE}),"
        f" mean {metrics['mean_activation']:.4f} (expected 1)",
    ]
    fig = _figure(runs, params_by_name={k: r.params for k, r in runs.items()}, x=x, y=y)
    return Report(
        "2.4 Dropout — an over-fitting net with and without dropout",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _label(name: str) -> str:
    return "plain" if name == "plain" else f"dropout {RATE}"


def _figure(runs, params_by_name, x, y):
    fig, axes = plotting.figure(2, 2, height=6.4)
    for col, metric in enumerate(["loss", "accuracy"]):
        ax = axes[0, col]
        for i, (name, result) in enumerate(runs.items()):
            steps = result.evals["step"]
            label = _label(name)
            ax.plot(
                steps,
                result.evals[f"train_{metric}"],
                color=plotting.PALETTE[i],
                label=f"{label}: train",
            )
            ax.plot(
                steps,
                result.evals[f"test_{metric}"],
                color=plotting.PALETTE[i],
                ls="--",
                label=f"{label}: test",
            )
        ax.set(xlabel="step", title=f"{metric}: train (solid) vs test (dashed)")
        if metric == "loss":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    grid = np.linspace(-2.2, 2.2, 150, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for col, (name, params) in enumerate(params_by_name.items()):
        ax = axes[1, col]
        logits = mlp_with_dropout(params, points, jax.random.key(0), 0.0, deterministic=True)
        pred = np.asarray(jnp.argmax(logits, axis=-1)).reshape(gx.shape)
        ax.contourf(gx, gy, pred, levels=[-0.5, 0.5, 1.5], colors=plotting.PALETTE[:2], alpha=0.25)
        ax.scatter(*np.asarray(x).T, c=[plotting.PALETTE[int(c)] for c in np.asarray(y)], s=6)
        ax.set(title=f"decision regions: {_label(name)}", xticks=[], yticks=[])
        ax.set_aspect("equal")
        ax.grid(False)
    return fig
