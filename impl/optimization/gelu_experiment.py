"""2.7 GELU, the experiment: the exact and tanh forms, and GELU against ReLU on the digits.

The largest gap between ``x Phi(x)`` and its tanh approximation, on a float32 grid of step
1e-5; then the same MLP (64-128-128-10) trained with the hand-written Adam of topic 2.8, once
with GELU and once with ReLU (topic 2.2), five initialisations of each side by side in one
compiled loop. The model and the math live in `impl.optimization.gelu`.

Run it: ``python -m impl 2.7`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy, dense, init_mlp
from impl.optimization.adam import adam
from impl.optimization.gelu import TANH_MAX_ERROR, gelu_exact, gelu_tanh
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import train

__all__ = ["ACTIVATIONS", "N_INITS", "OPTIMIZER", "SIZES", "experiment", "fit", "loss_for", "mlp"]


# --8<-- [start:experiment]
ACTIVATIONS = {"GELU": gelu_exact, "ReLU": relu}  # ReLU from topic 2.2
N_INITS = 5  # initialisations trained side by side for each activation


def mlp(params, x: jax.Array, activation: str) -> jax.Array:
    """``[b, 64] -> [b, 10]``: dense layers from topic 1.1 with ``activation`` between them."""
    f = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = f(dense(layer, x))  # [batch, d_hidden]
    return dense(params[-1], x)


@functools.cache
def loss_for(activation: str):
    """``N_INITS`` copies stacked on a leading axis; their summed loss trains each one
    independently."""

    def loss_fn(params, batch, key):
        del key
        losses = jax.vmap(lambda p: cross_entropy(mlp(p, batch["x"], activation), batch["y"]))(
            params
        )
        return jnp.sum(losses), {"loss_per_init": losses}

    return loss_fn


OPTIMIZER = adam(learning_rate=1e-3)
SIZES = [64, 128, 128, 10]


def fit(key, x, y, activation: str, *, steps: int, progress=None):
    """Train ``N_INITS`` MLPs (the same initial weights for every activation), mini-batches of
    64."""
    params = jax.vmap(lambda k: init_mlp(k, SIZES))(jax.random.split(key, N_INITS))
    return train(
        loss_for(activation),
        params,
        OPTIMIZER,
        {"x": x, "y": y},
        key=key,
        steps=steps,
        batch_size=64,
        progress=progress,
        label=f"2.7 {activation}",
    )


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 600) -> Report:
    """The exact and tanh forms and the bound on their gap; GELU vs ReLU on digits.

    Metrics: the largest ``|exact - tanh|`` on a fine float32 grid and where it is reached; for
    GELU and ReLU, the mean training loss over the run, the final training loss and the test
    accuracy (mean over ``N_INITS`` initialisations), and the spread of the test accuracy.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    metrics = {}

    grid = jnp.linspace(-8.0, 8.0, 1_600_001)  # step 1e-5
    gap = gelu_exact(grid) - gelu_tanh(grid)
    metrics["tanh_max_error"] = float(jnp.max(jnp.abs(gap)))
    metrics["tanh_max_error_at"] = float(jnp.abs(grid[jnp.argmax(jnp.abs(gap))]))

    split = data.load_digits(seed=seed)  # the split follows the seed too
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    runs = {}
    for name in ACTIVATIONS:
        result = fit(jax.random.key(seed), x, y, name, steps=steps, progress=progress)

        def per_init(p, xs, ys, name=name):
            return cross_entropy(mlp(p, xs, name), ys), accuracy(mlp(p, xs, name), ys)

        train_loss, _ = jax.vmap(per_init, in_axes=(0, None, None))(result.params, x, y)
        _, test_acc = jax.vmap(per_init, in_axes=(0, None, None))(result.params, x_test, y_test)
        runs[name] = result
        key = name.lower()
        metrics[f"{key}_mean_training_loss"] = float(result.history["loss_per_init"].mean())
        metrics[f"{key}_final_train_loss"] = float(train_loss.mean())
        metrics[f"{key}_test_accuracy"] = float(test_acc.mean())
        metrics[f"{key}_test_accuracy_std"] = float(test_acc.std())

    lines = [
        f"max |x Phi(x) - tanh form| on [-8, 8]: {metrics['tanh_max_error']:.2e}"
        f" at |x| = {metrics['tanh_max_error_at']:.2f} (bound stated: {TANH_MAX_ERROR:.1e})",
        f"MLP {SIZES} on digits, {steps} steps of Adam, {N_INITS} initialisations each:",
        f"{'':<6} {'mean loss over run':>19} {'final train loss':>17} {'test accuracy':>18}",
    ]
    for name in ACTIVATIONS:
        k = name.lower()
        lines.append(
            f"{name:<6} {metrics[f'{k}_mean_training_loss']:>19.4f} "
            f"{metrics[f'{k}_final_train_loss']:>17.4f}"
            f" {metrics[f'{k}_test_accuracy']:>11.2%} ± {metrics[f'{k}_test_accuracy_std']:.2%}"
        )
    fig = _figure(runs)
    return Report(
        "2.7 GELU — exact vs tanh form, and GELU vs ReLU",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(runs):
    fig, axes = plotting.figure(3, 1, height=3.4)
    x = jnp.linspace(-4.0, 4.0, 801)
    ax = axes[0]
    ax.plot(x, relu(x), color=plotting.PALETTE[2], lw=1.2, label="ReLU")
    ax.plot(x, gelu_exact(x), color=plotting.PALETTE[0], label="GELU  x Φ(x)")
    ax.plot(x, gelu_tanh(x), color=plotting.PALETTE[1], ls="--", label="tanh form")
    ax.set(xlabel="x", title="GELU and its tanh form", ylim=(-0.5, 4))
    ax.legend(fontsize=8)
    ax = axes[1]
    x = jnp.linspace(-7.0, 7.0, 2801)
    ax.plot(x, (gelu_exact(x) - gelu_tanh(x)) * 1e4)
    for sign in (1, -1):
        ax.axhline(sign * TANH_MAX_ERROR * 1e4, ls=":", color=plotting.PALETTE[3])
    ax.set(xlabel="x", ylabel="× 1e-4", title=f"exact − tanh form (bound ±{TANH_MAX_ERROR:.1e})")
    ax = axes[2]
    window = 25
    for i, (name, result) in enumerate(runs.items()):
        h = result.history["loss_per_init"].mean(axis=1)  # [steps], mean over initialisations
        ax.plot(
            np.convolve(h, np.ones(window) / window, mode="valid"),
            color=plotting.PALETTE[i * 2],
            label=name,
        )
    ax.set(yscale="log", xlabel="step", title="training loss on digits (mean of inits)")
    ax.legend(fontsize=8)
    return fig
