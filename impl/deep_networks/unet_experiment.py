"""1.4 U-Net, the experiment: the same U-Net with and without its skip connections.

Two U-Nets of `impl.deep_networks.unet`, identical but for the skips, start from the same
weights and learn to segment generated shapes (`impl.data.make_shapes`) side by side, with the
hand-written Adam of topic 2.8; the report holds their test IoU, training loss and size.

Run it: ``python -m impl 1.4`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.cnn import count_params
from impl.deep_networks.unet import binary_cross_entropy, init_unet, iou, unet
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = ["OPTIMIZER", "RUNS", "experiment", "fit", "loss_fn"]


# --8<-- [start:experiment]
RUNS = {"with skips": True, "without skips": False}  # name -> skips


def loss_fn(params, batch, key):
    """Both networks side by side (``params = {run name: network}``): independent weights, the
    same mini-batches; the summed loss's gradient for each network is its own. Metrics: each
    network's per-pixel binary cross-entropy."""
    del key
    losses = {}
    for name, skips in RUNS.items():
        logits = unet(params[name], batch["x"], skips=skips)  # [b, h, w, 1]
        losses[name] = binary_cross_entropy(logits, batch["y"])
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=3e-3)


def fit(key, shapes, *, steps: int = 400, batch_size: int = 16, base: int = 4, **kwargs):
    """Train both networks on ``shapes.images -> shapes.masks`` with the project's hand-written
    Adam."""
    k_init, k_train = jax.random.split(key)
    params = {name: init_unet(k_init, base=base, skips=skips) for name, skips in RUNS.items()}
    batches = {"x": shapes.images, "y": shapes.masks}
    return train(
        loss_fn,
        params,
        OPTIMIZER,
        batches,
        key=k_train,
        steps=steps,
        batch_size=batch_size,
        chunk=steps,
        **kwargs,
    )


# --8<-- [end:experiment]


_predict = jax.jit(unet, static_argnames="skips")


# --8<-- [start:run]
def experiment(
    seed: int = 0, *, progress: bool | None = None, steps: int = 400, size: int = 16
) -> Report:
    """Segment generated shapes with and without skip connections; IoU on held-out shapes.

    ``seed`` draws the training and test shapes and the (shared) initial weights.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("size", size)
    if size % 4 or size < 12:
        raise ValueError(f"size: expected a multiple of 4 (two 2x2 pools), at least 12; got {size}")
    start = time.perf_counter()
    # see cnn_experiment: far quicker to compile on CPU than threefry
    key = jax.random.key(seed, impl="rbg")
    k_train, k_test, k_fit = jax.random.split(key, 3)
    train_set = data.make_shapes(k_train, 512, size=size)
    test_set = data.make_shapes(k_test, 256, size=size)
    result = fit(k_fit, train_set, steps=steps, progress=progress, label="1.4 unet")
    metrics, predictions = {}, {}
    for name, skips in RUNS.items():
        slug = name.replace(" ", "_")
        # [256, size, size, 1]
        predictions[name] = _predict(result.params[name], test_set.images, skips=skips)
        metrics[f"iou_{slug}"] = float(iou(predictions[name], test_set.masks))
        metrics[f"train_loss_{slug}"] = float(np.mean(result.history[name][-25:]))
        metrics[f"params_{slug}"] = count_params(result.params[name])
    lines = [f"{'U-Net':<15} {'parameters':>10} {'train loss':>11} {'test IoU':>9}"]
    for name in RUNS:
        slug = name.replace(" ", "_")
        m = metrics[f"params_{slug}"], metrics[f"train_loss_{slug}"], metrics[f"iou_{slug}"]
        lines.append(f"{name:<15} {m[0]:>10,} {m[1]:>11.4f} {m[2]:>9.3f}")
    lines.append(
        f"{size}x{size} shapes, 512 to train, 256 to test; "
        f"{steps} steps of Adam, batch 16, for each net"
    )
    fig = _figure(result.history, metrics, test_set, predictions)
    return Report(
        "1.4 U-Net — with and without skip connections",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(history, metrics, test_set, predictions, n_shown: int = 5):
    fig, axes = plotting.figure(3, height=3.6, gridspec_kw={"width_ratios": [1.0, 0.7, 1.5]})
    ax = axes[0]
    for name in RUNS:
        smooth = np.convolve(history[name], np.ones(20) / 20, mode="valid")
        ax.plot(np.arange(len(smooth)) + 20, smooth, label=name)
    ax.set(title="training loss (20-step mean)", xlabel="step", yscale="log")
    ax.legend(fontsize=8)
    ax = axes[1]
    values = [metrics[f"iou_{name.replace(' ', '_')}"] for name in RUNS]
    bars = ax.bar(range(len(RUNS)), values, color=plotting.PALETTE[: len(RUNS)])
    ax.bar_label(bars, [f"{v:.3f}" for v in values], padding=2)
    ax.set(xticks=range(len(RUNS)), ylim=(0, 1.08), title="test IoU")
    ax.set_xticklabels([name.replace(" ", "\n") for name in RUNS])

    # Montage: one column per test image; rows = image, true mask, the two predictions.
    def grey(m):  # [s, s, 1] -> [s, s, 3]
        return np.repeat(np.asarray(m, dtype=np.float32), 3, axis=-1)

    rows = [np.asarray(test_set.images[:n_shown]), grey(test_set.masks[:n_shown])]
    rows += [grey(predictions[name][:n_shown] > 0) for name in RUNS]
    s = test_set.images.shape[1]
    canvas = np.ones((len(rows) * (s + 1) - 1, n_shown * (s + 1) - 1, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c in range(n_shown):
            canvas[r * (s + 1) : r * (s + 1) + s, c * (s + 1) : c * (s + 1) + s] = row[c]
    axes[2].imshow(canvas)
    axes[2].set(
        xticks=[],
        yticks=[(s + 1) * r + s / 2 - 0.5 for r in range(len(rows))],
        title="held-out shapes",
    )
    axes[2].set_yticklabels(["image", "truth", *RUNS])
    axes[2].grid(False)
    return fig
