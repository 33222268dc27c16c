"""2.5 Batch normalization, the experiment: a learning-rate sweep with and without BN on the digits.

A ReLU MLP (64-100-100-100-10) trained with plain SGD at eight learning rates from 0.01 to 30,
once plain and once with batch normalization after every hidden layer: all rates of one net
train side by side in one compiled loop. With BN the net trains at rates where the plain net
diverges or stalls. Then the BN net is tested in evaluation mode (running averages) and in
training mode (batch statistics) with test batches of several sizes. The model and the math
live in `impl.optimization.batch_norm`.

Run it: ``python -m impl 2.5`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy
from impl.optimization.adam import sgd
from impl.optimization.batch_norm import forward, init_net
from impl.report import Report
from impl.training import train

__all__ = ["LEARNING_RATES", "OPTIMIZER", "SIZES", "TRAINED", "experiment", "sweep", "sweep_loss"]


# --8<-- [start:experiment]
LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@functools.cache
def sweep_loss(learning_rates: tuple[float, ...]):
    """One loss for a whole sweep: copy ``i`` of the net, stacked on a leading axis, has its own
    rate.

    ``d(sum_i eta_i L_i) / d theta_i = eta_i grad L_i``, so one step of SGD with unit learning rate
    moves each copy with its own ``eta_i``: the sweep compiles once and runs as one ``vmap``. A copy
    whose loss stops being finite is marked dead in the state and drops out of the sum.
    """
    eta = jnp.asarray(learning_rates)  # [n_lr]

    def loss_fn(params, state, batch, key):
        del key

        def one(p, s):
            logits, s = forward(p, s, batch["x"], training=True)
            return cross_entropy(logits, batch["y"]), s

        losses, stats = jax.vmap(one)(params, state["stats"])  # [n_lr], stacked stats
        alive = state["alive"] & jnp.isfinite(losses)  # bool[n_lr]
        total = jnp.sum(jnp.where(alive, eta * losses, 0.0))
        metrics = {
            "loss_per_rate": jnp.where(alive, losses, 0.0),
            "alive": alive.astype(jnp.float32),
        }
        return total, (metrics, {"stats": stats, "alive": alive})

    return loss_fn


OPTIMIZER = sgd(learning_rate=1.0)  # the rates live in the loss: see sweep_loss
SIZES = [64, 100, 100, 100, 10]


def sweep(key, x, y, *, use_bn: bool, steps: int, batch_size: int = 64, progress=None):
    """Train one copy of the net per learning rate (same initial weights), mini-batches of 64."""
    params, stats = init_net(key, SIZES, use_bn=use_bn)
    n = len(LEARNING_RATES)
    stack = lambda tree: jax.tree.map(lambda a: jnp.stack([a] * n), tree)  # noqa: E731
    state = {"stats": stack(stats), "alive": jnp.ones((n,), bool)}
    return train(
        sweep_loss(LEARNING_RATES),
        stack(params),
        OPTIMIZER,
        {"x": x, "y": y},
        key=key,
        steps=steps,
        batch_size=batch_size,
        model_state=state,
        progress=progress,
        label=f"2.5 sweep {'BN' if use_bn else 'plain'}",
    )


# --8<-- [end:experiment]


TRAINED = (
    0.1  # a net "trains" at a rate if its final training loss is below this (chance: ln 10 = 2.3)
)


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 500) -> Report:
    """Learning-rate sweep with and without BN on digits; train-mode vs eval-mode batch norm.

    Metrics: the smallest and largest learning rate at which each net trains (final training
    loss < 0.1), how many of the swept rates train, the steps to reach that loss at each net's
    best rate, and the BN net's test accuracy in evaluation mode and in training mode for
    several batch sizes.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    split = data.load_digits()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    key = jax.random.key(seed)

    results, final, metrics = {}, {}, {}
    for name, use_bn in {"plain": False, "bn": True}.items():
        # same initial weights
        result = sweep(key, x, y, use_bn=use_bn, steps=steps, progress=progress)
        losses = jax.vmap(lambda p, s: cross_entropy(forward(p, s, x, training=False)[0], y))(
            result.params, result.model_state["stats"]
        )  # [n_lr], evaluation mode, whole training set
        alive = np.asarray(result.model_state["alive"])
        final[name] = np.where(alive & np.isfinite(losses), np.asarray(losses), np.inf)
        results[name] = result
        ok = [lr for lr, loss in zip(LEARNING_RATES, final[name]) if loss < TRAINED]
        metrics[f"{name}_rates_that_train"] = float(len(ok))
        metrics[f"{name}_min_rate"] = min(ok, default=float("nan"))
        metrics[f"{name}_max_rate"] = max(ok, default=float("nan"))
        metrics[f"{name}_diverged"] = float(np.sum(~alive))
        metrics |= {
            f"{name}_final_loss_rate_{lr:g}": float(v) for lr, v in zip(LEARNING_RATES, final[name])
        }
        # Steps until the (smoothed) mini-batch loss first
        # drops below TRAINED, at the rates that train.
        # [steps, n_lr]
        history = np.where(result.history["alive"] > 0, result.history["loss_per_rate"], 1e3)
        below = _smooth(history) < TRAINED
        reached = [
            int(np.argmax(below[:, i])) + 1 for i, loss in enumerate(final[name]) if loss < TRAINED
        ]
        metrics[f"{name}_steps_to_train"] = float(min(reached, default=steps))

    # Train mode vs eval mode: the BN net trained at 0.3, tested with batches of different sizes.
    i = LEARNING_RATES.index(0.3)
    params, stats = jax.tree.map(
        lambda a: a[i], (results["bn"].params, results["bn"].model_state["stats"])
    )
    metrics["bn_eval_test_accuracy"] = float(
        accuracy(forward(params, stats, x_test, training=False)[0], y_test)
    )
    by_batch = {}
    for b in (1, 2, 4, 16, 64, 448):
        n = (x_test.shape[0] // b) * b
        logits = jax.vmap(lambda xb: forward(params, stats, xb, training=True)[0])(
            x_test[:n].reshape(-1, b, 64)
        )
        by_batch[b] = float(accuracy(logits.reshape(n, -1), y_test[:n]))
        metrics[f"bn_train_mode_test_accuracy_batch_{b}"] = by_batch[b]

    lines = [f"{'learning rate':<14}" + "".join(f"{lr:>9g}" for lr in LEARNING_RATES)]
    for name in final:
        cells = "".join(f"{v:>9.3g}" if np.isfinite(v) else f"{'diverged':>9}" for v in final[name])
        lines.append(f"{('plain' if name == 'plain' else 'with BN') + ' loss':<14}{cells}")
    for name, label in {"plain": "plain", "bn": "with BN"}.items():
        lines.append(
            f"{label}: trains (final loss < {TRAINED}) at rates {metrics[f'{name}_min_rate']:g}"
            f"–{metrics[f'{name}_max_rate']:g}; fastest reaches it in "
            f"{metrics[f'{name}_steps_to_train']:.0f} steps"
        )
    lines += [
        f"BN net (rate 0.3), test accuracy in eval mode: {metrics['bn_eval_test_accuracy']:.1%}",
        "  in train mode, test batches of "
        + ", ".join(f"{b}: {a:.1%}" for b, a in by_batch.items()),
    ]
    fig = _figure(final, results, by_batch, metrics["bn_eval_test_accuracy"])
    return Report(
        "2.5 Batch normalization — learning-rate sweep with and without BN", metrics, lines, fig,
        time.perf_counter() - start,
    )  # fmt: skip


# --8<-- [end:run]


def _smooth(h: np.ndarray, window: int = 20) -> np.ndarray:
    """Running mean over ``window`` steps of ``h [steps, k]`` (the mini-batch losses are noisy)."""
    c = np.cumsum(np.pad(h, ((window, 0), (0, 0)), mode="edge"), axis=0)
    return (c[window:] - c[:-window]) / window


def _figure(final, results, by_batch, eval_accuracy):
    fig, axes = plotting.figure(3, 1, height=3.6)
    labels = {"plain": "plain", "bn": "with BN"}
    ceiling = 30.0
    ax = axes[0]
    for i, (name, losses) in enumerate(final.items()):
        # gaps where diverged
        shown = np.where(np.isfinite(losses), np.minimum(losses, ceiling), np.nan)
        ax.plot(LEARNING_RATES, shown, "o-", color=plotting.PALETTE[i], label=labels[name])
        bad = ~np.isfinite(losses)
        ax.plot(
            np.asarray(LEARNING_RATES)[bad],
            np.full(bad.sum(), ceiling),
            "x",
            ms=10,
            color=plotting.PALETTE[i],
        )
    ax.axhline(TRAINED, ls=":", color=plotting.PALETTE[2], label=f"trained (loss < {TRAINED})")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final training loss",
           title="learning-rate sweep\n(x = diverged)")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, name in enumerate(results):
        for lr, ls in ((0.1, "-"), (1.0, "--")):
            j = LEARNING_RATES.index(lr)
            h = results[name].history["loss_per_rate"][:, j]
            alive = results[name].history["alive"][:, j] > 0
            ax.plot(
                np.where(alive, _smooth(h[:, None])[:, 0], np.nan),
                ls=ls,
                color=plotting.PALETTE[i],
                label=f"{labels[name]}, rate {lr:g}",
            )
    ax.set(
        yscale="log", ylim=(1e-3, 10), xlabel="step", title="training loss\n(mini-batch, smoothed)"
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    sizes = list(by_batch)
    ax.plot(
        sizes,
        [by_batch[b] for b in sizes],
        "o-",
        color=plotting.PALETTE[1],
        label="train mode (batch statistics)",
    )
    ax.axhline(
        eval_accuracy, ls="--", color=plotting.PALETTE[0], label="eval mode (running averages)"
    )
    ax.set(
        xscale="log",
        xlabel="test batch size",
        ylabel="test accuracy",
        title="BN net:\ntrain vs eval mode",
    )
    ax.legend(fontsize=8)
    return fig
