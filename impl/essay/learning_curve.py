"""Chapter 2.1, *Data* — how held-out accuracy grows with the number of labelled examples,
and what wrong labels cost.

The experiment trains the same small network (one hidden layer of 64 tanh units, topic 1.1's
:func:`~impl.deep_networks.dnn.mlp`) on class-balanced prefixes of the digits' training set,
from two examples per class to all 1,347, with the labels clean or with a fraction of them
replaced by a wrong class. Every run is scored on the same 450 held-out digits, whose labels
are always clean. A power law fitted to the clean runs' error rate says how fast more data
helps; comparing the curves says how many clean examples a noisy data set is worth.

Shapes: digits ``x`` are ``float32[n, 64]``; labels ``int32[n]``; noisy label sets are
stacked ``int32[n, runs]`` (examples first, as :func:`impl.training.train` expects).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks import dnn
from impl.essay import side_by_side
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = ["NOISE", "SIZES", "corrupt_labels", "experiment", "loss_fn"]

SIZES = (20, 50, 100, 200, 400, 800, 1347)  # training examples (class-balanced prefixes)
NOISE = (0.0, 0.2, 0.4)  # fraction of training labels replaced by a wrong class
HIDDEN = 64


def corrupt_labels(
    key: jax.Array, labels: jax.Array, rate: float, n_classes: int = 10
) -> jax.Array:
    """Replace a random ``rate`` fraction of ``labels`` by a *different* class, uniformly.

    ``labels`` is ``int32[n]``; returns ``int32[n]``. Exactly ``round(rate * n)`` labels change.
    """
    checks.rate("rate", rate)
    checks.positive_int("n_classes", n_classes)
    checks.array_shape("labels", labels, ("n",), dims="[n]")
    n = labels.shape[0]
    k_pick, k_shift = jax.random.split(key)
    n_wrong = round(rate * n)
    wrong = jnp.zeros(n, bool).at[jax.random.permutation(k_pick, n)[:n_wrong]].set(True)
    shift = jax.random.randint(k_shift, (n,), 1, n_classes)  # 1..C-1: never the true class
    return jnp.where(wrong, (labels + shift) % n_classes, labels).astype(jnp.int32)


# --8<-- [start:experiment]
def loss_fn(params, batch, key, *, batch_size: int = 64):
    """Sum over runs of each run's mean cross-entropy on a minibatch from its own prefix.

    ``params``: stacked MLPs (leaves ``[runs, ...]``); ``batch``: the whole training set,
    ``{"x": [n, 64], "y": int[n, runs], "n_used": int[runs]}`` (``n_used`` repeated per example).
    """
    n_used = batch["n_used"][0]  # [runs]
    idx = side_by_side.prefix_batches(key, n_used, batch_size)  # [runs, batch_size]
    runs = jnp.arange(n_used.shape[0])[:, None]  # [runs, 1]

    def one_run(p, i, r):
        x, y = batch["x"][i], batch["y"][i, r]  # [batch_size, 64], [batch_size]
        return dnn.cross_entropy(dnn.mlp(p, x), y)

    losses = jax.vmap(one_run)(params, idx, runs[:, 0])  # [runs]
    return jnp.sum(losses), {"mean_run_loss": jnp.mean(losses)}


OPTIMIZER = adam(learning_rate=3e-3)


# --8<-- [end:experiment]


def experiment(
    seed: int = 0,
    *,
    progress: bool | None = None,
    sizes: Sequence[int] = SIZES,
    noise: Sequence[float] = NOISE,
    steps: int = 1000,
) -> Report:
    """Train one MLP per (training-set size, label-noise rate); score all on clean held-out digits.

    Metrics: ``acc_n{size}_noise{pct}`` for every run, ``clean_error_exponent`` (the fitted
    power law's exponent for clean error against size), and ``noisy_worth_clean`` (for the
    largest noise rate at the full size: how many clean examples reach the same accuracy).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    split = data.load_digits()
    n_max = split.x_train.shape[0]
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least two training-set sizes, got {list(sizes)}")
    for i, n in enumerate(sizes):
        checks.positive_int(f"sizes[{i}]", n)
        if n > n_max:
            raise ValueError(f"sizes[{i}]: expected at most {n_max} training examples, got {n}")
    if len(noise) == 0 or 0.0 not in [float(r) for r in noise]:
        raise ValueError(
            f"noise: expected rates including 0.0 (the clean baseline), got {list(noise)}"
        )
    for i, r in enumerate(noise):
        checks.rate(f"noise[{i}]", r)
    start = time.perf_counter()

    key = jax.random.key(seed)
    k_noise, k_init, k_train = jax.random.split(key, 3)
    grid = [(float(r), int(n)) for r in noise for n in sizes]  # one run per (noise, size)
    y_train = jnp.asarray(split.y_train)
    label_sets = {
        r: corrupt_labels(jax.random.fold_in(k_noise, i), y_train, r) for i, r in enumerate(noise)
    }
    y_runs = jnp.stack([label_sets[r] for r, _ in grid], axis=1)  # [n, runs]
    n_used = jnp.asarray([n for _, n in grid], jnp.int32)  # [runs]
    batch = {
        "x": jnp.asarray(split.x_train),
        "y": y_runs,
        "n_used": jnp.broadcast_to(n_used[None, :], (n_max, len(grid))),
    }
    init_keys = jax.random.split(k_init, len(grid))
    params = side_by_side.stack([dnn.init_mlp(k, [64, HIDDEN, 10]) for k in init_keys])
    result = train(
        loss_fn,
        params,
        OPTIMIZER,
        batch,
        key=k_train,
        steps=steps,
        progress=progress,
        label="2.1 data",
    )

    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    accs = np.asarray(jax.vmap(lambda p: dnn.accuracy(dnn.mlp(p, x_test), y_test))(result.params))
    table = {(r, n): float(a) for (r, n), a in zip(grid, accs)}

    metrics = {f"acc_n{n}_noise{round(100 * r)}": a for (r, n), a in table.items()}
    clean = np.array([table[(0.0, n)] for n in sizes])
    exponent, _ = side_by_side.log_log_fit(sizes, np.maximum(1.0 - clean, 1e-4))
    metrics["clean_error_exponent"] = exponent
    worst = max(float(r) for r in noise)
    noisy_full = table[(worst, int(sizes[-1]))]
    metrics["noisy_worth_clean"] = _clean_equivalent(list(sizes), clean, noisy_full)

    lines = [f"{'examples':>9} " + " ".join(f"{f'noise {round(100 * r)}%':>10}" for r in noise)]
    for n in sizes:
        lines.append(f"{n:>9} " + " ".join(f"{table[(float(r), int(n))]:>10.1%}" for r in noise))
    lines.append(
        f"clean labels: held-out error ~ n^{exponent:.2f} (power-law fit over the sizes above)"
    )
    lines.append(
        f"{sizes[-1]} examples with {round(100 * worst)}% wrong labels score like "
        f"~{metrics['noisy_worth_clean']:.0f} clean ones"
    )
    fig = _figure(sizes, noise, table)
    return Report(
        "2.1 Data — held-out accuracy vs training examples",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _clean_equivalent(sizes: list[int], clean_acc: np.ndarray, target: float) -> float:
    """Interpolate (in log size) how many clean examples reach accuracy ``target``."""
    order = np.argsort(clean_acc)
    acc, logn = clean_acc[order], np.log(np.asarray(sizes, float))[order]
    return float(np.exp(np.interp(target, acc, logn)))


def _figure(sizes, noise, table):
    fig, (ax_acc, ax_err) = plotting.figure(2, 1, height=3.4)
    for i, r in enumerate(noise):
        acc = [table[(float(r), int(n))] for n in sizes]
        label = "clean labels" if r == 0 else f"{round(100 * r)}% wrong labels"
        ax_acc.plot(sizes, acc, "o-", color=plotting.PALETTE[i], label=label)
        ax_err.plot(sizes, [1 - a for a in acc], "o-", color=plotting.PALETTE[i], label=label)
    ax_acc.set(
        xscale="log",
        xlabel="training examples",
        ylabel="held-out accuracy",
        title="Accuracy grows with data",
    )
    ax_err.legend(loc="lower left")
    ax_err.set(
        xscale="log",
        yscale="log",
        xlabel="training examples",
        ylabel="held-out error",
        title="Error, log-log",
    )
    return fig
