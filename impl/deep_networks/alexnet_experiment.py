"""1.3 AlexNet, the experiment: ReLU vs tanh (Figure 1), and the train/test gap with and
without augmentation + dropout (sections 4.1-4.2).

Three copies of the scaled-down network of `impl.deep_networks.alexnet` start from the same
weights and train side by side on scikit-learn's digits with the hand-written SGD with momentum
of topic 2.8; the report holds the steps each takes to a target training loss, the train/test
gaps, and how far LRN departs from a constant scale at this size.

Run it: ``python -m impl 1.3`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.alexnet import alexnet, init_alexnet, local_response_norm, random_shift
from impl.deep_networks.cnn import conv2d, max_pool
from impl.deep_networks.dnn import accuracy, cross_entropy
from impl.optimization.adam import sgd
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import even_chunk, first_step, train

__all__ = [
    "OPTIMIZER",
    "RUNS",
    "SLUGS",
    "TARGET_LOSS",
    "experiment",
    "fit",
    "learning_rate",
    "loss_fn",
    "lrn_departure",
    "steps_to",
]


# --8<-- [start:experiment]
RUNS = {  # name -> (activation, regularise): regularise adds random shifts (4.1) and dropout (4.2)
    "ReLU": ("relu", False),
    "tanh": ("tanh", False),
    "ReLU + shifts + dropout": ("relu", True),
}


def loss_fn(params, batch, key):
    """The three networks of :data:`RUNS` side by side: ``params = {run name: network}``.

    They share nothing but the mini-batch, so the gradient of the summed loss with respect to
    one network's weights is that network's own gradient: three independent trainings in one
    compiled loop. Metrics: each run's own loss.
    """
    k_shift, k_drop = jax.random.split(key)
    losses = {}
    for name, (activation, regularise) in RUNS.items():
        x = random_shift(k_shift, batch["x"], 1) if regularise else batch["x"]  # [b, 8, 8, 1]
        logits = alexnet(params[name], x, key=k_drop if regularise else None, activation=activation)
        losses[name] = cross_entropy(logits, batch["y"])
    return sum(losses.values()), losses


def learning_rate(count: jax.Array) -> jax.Array:
    """0.03, divided by 10 for the last third of training (section 5 divided by 10 on plateaus)."""
    return jnp.where(count < 800, 0.03, 0.003)


OPTIMIZER = sgd(learning_rate=learning_rate, momentum=0.9)  # momentum 0.9 as in section 5
TARGET_LOSS = (
    0.1  # Figure 1's criterion was 25% training error on CIFAR-10; digits get there at once
)


def fit(key, digits, *, steps: int = 1200, batch_size: int = 64, **kwargs):
    """Train the three runs from the same initial weights on the same mini-batches."""
    k_init, k_train = jax.random.split(key)
    network = init_alexnet(k_init, digits.x_train.shape[1:])
    params = {name: network for name in RUNS}
    batches = {"x": digits.x_train, "y": digits.y_train}
    return train(
        loss_fn,
        params,
        OPTIMIZER,
        batches,
        key=k_train,
        steps=steps,
        batch_size=batch_size,
        chunk=even_chunk(steps, 300),
        **kwargs,  # equal chunks: one compiled loop, not two
    )


# --8<-- [end:experiment]


# metric prefixes
SLUGS = {"ReLU": "relu", "tanh": "tanh", "ReLU + shifts + dropout": "relu_regularised"}
# no key: no dropout
_evaluate = jax.jit(alexnet, static_argnames=("activation", "dropout_rate", "lrn"))


def steps_to(loss: np.ndarray, target: float, window: int = 25) -> int:
    """First step at which the ``window``-step running mean of ``loss`` is below ``target``
    (``len(loss) + 1`` if it never is): mini-batch noise averaged out."""
    reached = first_step(loss, target, window=window)
    return len(loss) + 1 if reached is None else reached


def lrn_departure(params, x: jax.Array) -> float:
    """How far LRN is from a constant scale ``k^-beta`` on the first two conv layers' ReLU outputs:
    ``max |LRN(a) / (a k^-beta) - 1|`` over every unit of ``x`` (``[n, 8, 8, 1]``)."""
    conv1, conv2 = params["convs"][:2]
    a1 = relu(conv2d(x, **conv1))  # [n, 8, 8, c0]
    # [n, 4, 4, c1]
    a2 = relu(
        conv2d(max_pool(local_response_norm(a1), window=3, stride=2, padding="SAME"), **conv2)
    )
    worst = 0.0
    for a in (a1, a2):
        ratio = local_response_norm(a) / jnp.where(a > 0, a * 2.0**-0.75, 1.0)  # k = 2, beta = 0.75
        worst = max(worst, float(jnp.max(jnp.where(a > 0, jnp.abs(ratio - 1.0), 0.0))))
    return worst


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1200) -> Report:
    """ReLU vs tanh to a target training loss; the train/test gap with and without augmentation
    and dropout; and how much LRN departs from a constant at this scale.

    ``seed`` picks the digits' split and the initial weights (shared by the three runs).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    digits = data.load_digits(as_images=True, seed=seed, test_fraction=0.5)  # 899 train, 898 test
    # see cnn_experiment: far quicker to compile on CPU than threefry
    key = jax.random.key(seed, impl="rbg")
    result = fit(key, digits, steps=steps, progress=progress, label="1.3 alexnet")
    metrics = {}
    for name, (activation, _) in RUNS.items():
        slug = SLUGS[name]
        both = _evaluate(
            result.params[name],
            jnp.concatenate([digits.x_train, digits.x_test]),
            activation=activation,
        )
        n = len(digits.y_train)
        for split, logits, y in (
            ("train", both[:n], digits.y_train),
            ("test", both[n:], digits.y_test),
        ):
            metrics[f"{slug}_{split}_accuracy"] = float(accuracy(logits, y))
            metrics[f"{slug}_{split}_loss"] = float(cross_entropy(logits, y))
        metrics[f"{slug}_accuracy_gap"] = (
            metrics[f"{slug}_train_accuracy"] - metrics[f"{slug}_test_accuracy"]
        )
        metrics[f"{slug}_loss_gap"] = metrics[f"{slug}_test_loss"] - metrics[f"{slug}_train_loss"]
        metrics[f"{slug}_steps_to_target"] = steps_to(result.history[name], TARGET_LOSS)
    metrics["relu_speedup"] = metrics["tanh_steps_to_target"] / metrics["relu_steps_to_target"]
    metrics["lrn_max_departure"] = lrn_departure(result.params["ReLU"], jnp.asarray(digits.x_test))

    lines = [
        f"{'run':<24} {'steps to loss ' + str(TARGET_LOSS):>17} {'train acc':>9} {'test acc':>8} "
        f"{'acc gap':>7} {'loss gap':>8}"
    ]
    for name, slug in SLUGS.items():
        m = {
            k: metrics[f"{slug}_{k}"]
            for k in ("steps_to_target", "train_accuracy", "test_accuracy")
        }
        gaps = metrics[f"{slug}_accuracy_gap"], metrics[f"{slug}_loss_gap"]
        reached = str(m["steps_to_target"]) if m["steps_to_target"] <= steps else f"not in {steps}"
        lines.append(
            f"{name:<24} {reached:>17} {m['train_accuracy']:>9.1%} {m['test_accuracy']:>8.1%} "
            f"{gaps[0]:>7.1%} {gaps[1]:>8.3f}"
        )
    lines.append(
        "ReLU speed-up over tanh (steps ratio): "
        f"{metrics['relu_speedup']:.2f}x (the paper: about 6x)"
    )
    lines.append(
        "LRN departs from a constant 2^-0.75 scale by at "
        f"most {metrics['lrn_max_departure']:.1e} (relative)"
    )
    lines.append(
        f"{steps} steps of SGD + momentum for each run, batch "
        "64; gaps = train - test accuracy, test - train loss"
    )
    fig = _figure(result.history, metrics, digits, seed)
    return Report(
        "1.3 AlexNet — ReLU vs tanh, and regularisation",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(history, metrics, digits, seed):
    fig, axes = plotting.figure(3, height=3.4, gridspec_kw={"width_ratios": [1.2, 1.0, 1.0]})
    ax = axes[0]
    for i, name in enumerate(("ReLU", "tanh")):
        loss = history[name]
        smooth = np.convolve(loss, np.ones(25) / 25, mode="valid")
        ax.plot(np.arange(len(smooth)) + 25, smooth, label=name, color=plotting.PALETTE[i])
        ax.axvline(
            metrics[f"{SLUGS[name]}_steps_to_target"], color=plotting.PALETTE[i], ls=":", lw=1
        )
    ax.axhline(TARGET_LOSS, color="grey", lw=0.8)
    ax.set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = ["ReLU", "ReLU + shifts + dropout"]
    for j, split in enumerate(("train", "test")):
        values = [100 * metrics[f"{SLUGS[n]}_{split}_accuracy"] for n in names]
        bars = ax.bar(
            np.arange(2) + (j - 0.5) * 0.38,
            values,
            0.38,
            label=split,
            color=plotting.PALETTE[2 + j],
        )
        ax.bar_label(bars, [f"{v:.1f}" for v in values], fontsize=8, padding=1)
    ax.set(xticks=range(2), ylim=(90, 103), ylabel="accuracy (%)", title="train vs test")
    ax.set_xticklabels(["plain", "shifts +\ndropout"])
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    # Random shifts of one training digit: what augmentation feeds the network.
    x = jnp.repeat(jnp.asarray(digits.x_train[:1]), 6, axis=0)  # [6, 8, 8, 1]
    shifted = np.asarray(random_shift(jax.random.key(seed), x, 1))[..., 0]
    gap = np.full((8, 1), np.nan)
    row = lambda imgs: np.hstack([m for img in imgs for m in (img, gap)][:-1])  # noqa: E731
    axes[2].imshow(
        np.vstack([row(shifted[:3]), np.full((1, 26), np.nan), row(shifted[3:])]), cmap="viridis"
    )
    axes[2].set(title="random shifts", xticks=[], yticks=[])
    axes[2].grid(False)
    return fig
