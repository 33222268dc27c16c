"""1.2 CNN, the experiment: a small CNN against MLPs of similar and four times its size.

Scikit-learn's digits are split in half (899 to train, 898 held out). The CNN and two MLPs
train side by side on the same mini-batches; the report holds their test accuracies and
parameter counts, and checks convolution's translation equivariance with trained kernels.
The model and the math live in `impl.deep_networks.cnn`.

Run it: ``python -m impl 1.2`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.cnn import cnn, conv2d, count_params, init_cnn
from impl.deep_networks.dnn import accuracy, cross_entropy, init_mlp, mlp
from impl.optimization.adam import sgd
from impl.report import Report
from impl.training import even_chunk, train

__all__ = ["MODELS", "OPTIMIZER", "experiment", "fit", "flat", "loss_fn"]


# --8<-- [start:experiment]
def flat(x: jax.Array) -> jax.Array:
    """``[b, 8, 8, 1] -> [b, 64]``: what an MLP sees of an image."""
    return x.reshape(x.shape[0], -1)


MODELS = {  # name -> (init, predict); the MLPs have ~1x and ~4x the CNN's parameters
    "CNN": (lambda k: init_cnn(k, (8, 8, 1)), cnn),
    "MLP 64-128-10": (lambda k: init_mlp(k, [64, 128, 10]), lambda p, x: mlp(p, flat(x))),
    "MLP 64-512-10": (lambda k: init_mlp(k, [64, 512, 10]), lambda p, x: mlp(p, flat(x))),
}


def loss_fn(params, batch, key):
    """The three models side by side (``params = {name: model}``) on
    ``{"x": [b, 8, 8, 1], "y": int[b]}``.

    They share nothing but the mini-batch, so the gradient of the summed loss with respect to
    one model's weights is that model's own: three independent trainings in one compiled loop.
    """
    del key
    losses = {
        name: cross_entropy(predict(params[name], batch["x"]), batch["y"])
        for name, (_, predict) in MODELS.items()
    }
    return sum(losses.values()), losses


OPTIMIZER = sgd(learning_rate=0.05, momentum=0.9)


def fit(key, digits, *, steps: int = 600, batch_size: int = 64, **kwargs):
    """Train every model of :data:`MODELS` on the training digits with SGD + momentum."""
    keys = jax.random.split(key, len(MODELS) + 1)
    params = {name: init(k) for k, (name, (init, _)) in zip(keys, MODELS.items())}
    batches = {"x": digits.x_train, "y": digits.y_train}
    return train(
        loss_fn,
        params,
        OPTIMIZER,
        batches,
        key=keys[-1],
        steps=steps,
        batch_size=batch_size,
        **kwargs,
    )


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 600) -> Report:
    """CNN vs two MLPs on held-out digits, and convolution's equivariance on a real digit.

    ``seed`` picks the train/test split (``load_digits(seed=...)``) and the initialisations.
    Metrics: each model's test accuracy and parameter count, and the largest difference between
    ``conv(shift(x))`` and ``shift(conv(x))`` under circular padding.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    # 899 to train, 898 held out
    digits = data.load_digits(as_images=True, seed=seed, test_fraction=0.5)
    # An "rbg" key (XLA's RngBitGenerator) compiles several times faster on CPU than the default
    # threefry; it is just as explicit and reproducible on a given platform.
    key = jax.random.key(seed, impl="rbg")
    result = fit(
        key, digits, steps=steps, chunk=even_chunk(steps, 300), progress=progress, label="1.2 cnn"
    )
    metrics, slugs = {}, {}
    for name, (_, predict) in MODELS.items():
        slug = slugs[name] = name.split(" ")[0].lower() + (
            "" if name == "CNN" else "_" + name.split("-")[1]
        )
        params = result.params[name]
        metrics[f"{slug}_test_accuracy"] = float(
            accuracy(predict(params, digits.x_test), digits.y_test)
        )
        metrics[f"{slug}_train_accuracy"] = float(
            accuracy(predict(params, digits.x_train), digits.y_train)
        )
        metrics[f"{slug}_params"] = count_params(params)

    # Equivariance with the trained first-layer kernels: shifting the digit shifts the feature maps.
    kernel = result.params["CNN"]["convs"][0]["kernel"]  # [3, 3, 1, 16]
    x = jnp.asarray(digits.x_test[:1])  # [1, 8, 8, 1]
    shift = lambda a: jnp.roll(a, (1, 2), axis=(1, 2))  # noqa: E731  one row down, two right
    maps = conv2d(x, kernel, padding="CIRCULAR")
    maps_of_shifted = conv2d(shift(x), kernel, padding="CIRCULAR")
    metrics["equivariance_max_error"] = float(jnp.max(jnp.abs(maps_of_shifted - shift(maps))))

    lines = [f"{'model':<15} {'parameters':>10} {'train acc':>10} {'test acc':>9}"]
    for name, slug in slugs.items():
        m = [metrics[f"{slug}_{k}"] for k in ("params", "train_accuracy", "test_accuracy")]
        lines.append(f"{name:<15} {m[0]:>10,} {m[1]:>10.1%} {m[2]:>9.1%}")
    lines.append(
        f"test digits: {len(digits.y_test)}; {steps} steps "
        "of SGD + momentum, batch 64, for each model"
    )
    lines.append(
        "equivariance: max |conv(shift x) - shift(conv x)| = "
        f"{metrics['equivariance_max_error']:.1e} (circular padding)"
    )
    fig = _figure(result.history, slugs, metrics, (x, shift(x), maps, maps_of_shifted))
    return Report(
        "1.2 CNN — a small conv net against larger MLPs",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _normalise(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return (a - a.min()) / max(float(a.max() - a.min()), 1e-12)


def _figure(history, slugs, metrics, shown):
    fig, axes = plotting.figure(3, height=3.6, gridspec_kw={"width_ratios": [1.2, 1.2, 1.0]})
    ax = axes[0]
    names = list(slugs)
    accs = [100 * metrics[f"{slugs[n]}_test_accuracy"] for n in names]
    bars = ax.bar(range(len(names)), accs, color=plotting.PALETTE[: len(names)])
    ax.bar_label(bars, [f"{a:.1f}" for a in accs], padding=2, fontsize=9)
    labels = [
        f"{n}\n{metrics[slugs[n] + '_params']:,}\nparams".replace("MLP ", "MLP\n") for n in names
    ]
    ax.set(xticks=range(len(names)), ylim=(min(accs) - 4, 100.5), ylabel="test accuracy (%)")
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title("held-out digits")
    ax = axes[1]
    for n in names:
        # mini-batch noise averaged out
        smooth = np.convolve(history[n], np.ones(25) / 25, mode="valid")
        ax.plot(np.arange(len(smooth)) + 25, smooth, label=n)
    ax.set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    ax.legend(fontsize=8)
    # Montage: [digit, shifted digit] over [feature map, feature map of the shifted digit].
    x, xs, f, fs = shown
    channel = int(jnp.argmax(jnp.std(f[0], axis=(0, 1))))  # the most active feature map
    gap = np.full((8, 1), np.nan)
    top = np.hstack([_normalise(x[0, ..., 0]), gap, _normalise(xs[0, ..., 0])])
    bottom = np.hstack([_normalise(f[0, ..., channel]), gap, _normalise(fs[0, ..., channel])])
    axes[2].imshow(np.vstack([top, np.full((1, 17), np.nan), bottom]), cmap="viridis")
    axes[2].set(xticks=[3.5, 12.5], yticks=[3.5, 12.5], title="shift in, shift out")
    axes[2].set_xticklabels(["digit", "shifted\n(1, 2)"])
    axes[2].set_yticklabels(["input", f"map {channel}"])
    axes[2].grid(False)
    return fig
