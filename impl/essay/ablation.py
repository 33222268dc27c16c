"""Chapter 2.3, *Optimization & regularization* — a deep network trained with each trick
switched off in turn.

The network is a stack of 16 hidden layers of 32 units on the digits. Its full recipe has
four tricks, each the subject of a Part 2 topic:

* **ReLU** activations instead of the logistic sigmoid (topic 2.2);
* **residual** connections, ``h ← h + f(h)`` instead of ``h ← f(h)`` (topic 2.3);
* **normalisation** of each layer's input to zero mean and unit variance per example, as
  layer normalization does (topic 2.6; batch normalization, topic 2.5, is its batch-wise
  cousin);
* **Adam**'s adaptive, momentum-smoothed steps instead of plain gradient descent (topic 2.8).

The experiment trains ten variants for the same number of steps: the full recipe, the recipe
with each trick removed, the bare 1986-style network (sigmoid, plain, unnormalised, plain
gradient descent), and the bare network with each trick added back alone.

The activation, residual and normalisation switches are 0/1 numbers rather than Python
branches, so all variants that share an optimizer train side by side in one compiled loop
(:mod:`impl.essay.side_by_side`). The pieces are imported from the topics that introduced
them: :func:`~impl.optimization.relu.relu` (2.2), :func:`~impl.optimization.layer_norm.layer_norm`
(2.6) and :func:`~impl.optimization.adam.adam` (2.8); the residual path is the one-line
``h + f(h)`` of topic 2.3, written inline so that it can be switched by a number.

Shapes: digits ``x`` are ``float32[b, 64]``; hidden states ``[b, 32]``; logits ``[b, 10]``.
Parameters: ``{"inp": layer, "blocks": stacked layers [depth, ...], "gain", "shift": [depth, 32],
"out": layer}``, with ``layer = {"kernel", "bias"}`` as in topic 1.1.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks import dnn
from impl.essay import side_by_side
from impl.optimization.adam import adam, sgd
from impl.optimization.layer_norm import layer_norm
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import train

__all__ = ["VARIANTS", "Variant", "deep_net", "experiment", "init_deep_net", "loss_fn"]

DEPTH, WIDTH = 16, 32


class Variant(NamedTuple):
    """Which tricks are on. ``name`` is how the table prints it."""

    name: str
    relu: bool
    residual: bool
    norm: bool
    adam: bool


VARIANTS = (
    Variant("full recipe", True, True, True, True),
    Variant("  without ReLU (sigmoid)", False, True, True, True),
    Variant("  without residuals", True, False, True, True),
    Variant("  without normalisation", True, True, False, True),
    Variant("  without Adam (plain SGD)", True, True, True, False),
    Variant("bare 1986-style network", False, False, False, False),
    Variant("  + ReLU only", True, False, False, False),
    Variant("  + residuals only", False, True, False, False),
    Variant("  + normalisation only", False, False, True, False),
    Variant("  + Adam only", False, False, False, True),
)


def init_deep_net(
    key: jax.Array, depth: int = DEPTH, width: int = WIDTH, d_in: int = 64, n_out: int = 10
):
    """Input layer, ``depth`` hidden layers stacked along a leading axis, output layer."""
    checks.positive_int("depth", depth)
    checks.positive_int("width", width)
    k_in, k_blocks, k_out = jax.random.split(key, 3)
    blocks = side_by_side.stack(
        [dnn.init_layer(k, width, width) for k in jax.random.split(k_blocks, depth)]
    )
    return {
        "inp": dnn.init_layer(k_in, d_in, width),
        "blocks": blocks,  # kernel [depth, width, width], bias [depth, width]
        "gain": jnp.ones((depth, width)),
        "shift": jnp.zeros((depth, width)),
        "out": dnn.init_layer(k_out, width, n_out),
    }


# --8<-- [start:core]
def deep_net(params, x: jax.Array, switches: jax.Array) -> jax.Array:
    """The deep network with its tricks set by ``switches = [relu, residual, norm]`` (0 or 1).

    ``x [b, 64]`` -> logits ``[b, 10]``. A switch at 1 turns its trick on; at 0, off.
    """
    relu_on, residual_on, norm_on = switches[0], switches[1], switches[2]
    h = dnn.dense(params["inp"], x)  # [b, width]

    def block(h, layer):
        kernel, bias, gain, shift = layer
        z = norm_on * layer_norm(h, gain, shift) + (1 - norm_on) * h  # normalisation on/off (2.6)
        z = dnn.dense({"kernel": kernel, "bias": bias}, z)  # [b, width]
        z = relu_on * relu(z) + (1 - relu_on) * jax.nn.sigmoid(z)  # ReLU (2.2) or sigmoid
        return z + residual_on * h, None  # residual path on/off

    layers = (params["blocks"]["kernel"], params["blocks"]["bias"], params["gain"], params["shift"])
    h, _ = jax.lax.scan(block, h, layers)
    return dnn.dense(params["out"], h)  # [b, 10]


# --8<-- [end:core]


def loss_fn(params, batch, key, *, batch_size: int = 64):
    """Sum over variants of each one's mean cross-entropy on its own random minibatch."""
    switches = batch["switches"][0]  # [runs, 3]
    n = batch["x"].shape[0]
    # [runs, b]
    idx = side_by_side.prefix_batches(key, jnp.full((switches.shape[0],), n), batch_size)

    def one_run(p, s, i):
        return dnn.cross_entropy(deep_net(p, batch["x"][i], s), batch["y"][i])

    losses = jax.vmap(one_run)(params, switches, idx)  # [runs]
    return jnp.sum(losses), {"run_loss": losses}


OPTIMIZERS = {True: adam(learning_rate=1e-3), False: sgd(learning_rate=0.1)}


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1000) -> Report:
    """Train every variant in :data:`VARIANTS` for ``steps`` steps on the digits.

    All variants start from the same initial weights. Metrics per variant (slug of its
    name): ``train_loss_<slug>`` (mean of the last 100 steps) and ``test_acc_<slug>``.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    split = data.load_digits()
    key = jax.random.key(seed)
    k_init, k_train = jax.random.split(key)
    init = init_deep_net(k_init)  # the same starting point for every variant
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    results: dict[str, tuple[float, float, np.ndarray]] = {}
    for uses_adam in (True, False):
        group = [v for v in VARIANTS if v.adam == uses_adam]
        # [runs, 3]
        switches = jnp.asarray([[v.relu, v.residual, v.norm] for v in group], jnp.float32)
        params = side_by_side.stack([init] * len(group))
        batch = {
            "x": x,
            "y": y,
            "switches": jnp.broadcast_to(switches[None], (x.shape[0], *switches.shape)),
        }
        result = train(
            loss_fn, params, OPTIMIZERS[uses_adam], batch, key=k_train, steps=steps,
            progress=progress, label="2.3 ablation",
        )  # fmt: skip
        accs = jax.vmap(lambda p, s: dnn.accuracy(deep_net(p, x_test, s), y_test))(
            result.params, switches
        )
        history = result.history["run_loss"]  # [steps, runs]
        for r, v in enumerate(group):
            results[v.name] = (float(history[-100:, r].mean()), float(accs[r]), history[:, r])

    metrics = {}
    lines = [
        f"{'variant':<28} {'ReLU':>4} {'res':>4} {'norm':>4} "
        f"{'Adam':>4} {'train loss':>10} {'test acc':>8}"
    ]
    for v in VARIANTS:
        loss, acc, _ = results[v.name]
        slug = _slug(v.name)
        metrics[f"train_loss_{slug}"], metrics[f"test_acc_{slug}"] = loss, acc
        marks = " ".join(f"{'✓' if on else '·':>4}" for on in (v.relu, v.residual, v.norm, v.adam))
        lines.append(f"{v.name:<28} {marks} {loss:>10.3f} {acc:>8.1%}")
    lines.append(
        f"{DEPTH} hidden layers of {WIDTH} units, {steps} "
        "steps of 64 digits; chance is 10% accuracy"
    )
    fig = _figure(results)
    return Report(
        "2.3 Optimization — a deep net, one trick off at a time",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _slug(name: str) -> str:
    words = (
        name.strip()
        .replace("+", "plus")
        .replace("(", "")
        .replace(")", "")
        .replace("-", " ")
        .split()
    )
    return "_".join(w.lower() for w in words)


def _figure(results):
    fig, axes = plotting.figure(2, 1, height=3.4, sharey=True)
    window = 50
    kernel = np.ones(window) / window
    for ax, names, title in (
        (axes[0], [v.name for v in VARIANTS[:5]], "Full recipe, one trick removed"),
        (axes[1], [v.name for v in VARIANTS[5:]], "Bare network, one trick added"),
    ):
        for i, name in enumerate(names):
            curve = np.convolve(results[name][2], kernel, mode="valid")
            ax.plot(
                np.arange(window, window + curve.size),
                curve,
                color=plotting.PALETTE[i],
                label=name.strip(),
            )
        ax.set(yscale="log", xlabel="training step", title=title)
        ax.legend(fontsize=8)
    axes[0].set(ylabel="training loss (cross-entropy)")
    return fig
