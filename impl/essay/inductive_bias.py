"""Chapter 2.4, *Architecture* — the same parameter budget spent two ways: a multi-layer
perceptron against a convolutional network, on the digits.

Both networks have about 1,900 parameters. The perceptron (topic 1.1) connects every pixel to
every one of its 25 hidden units: it must learn separately what a stroke looks like at each
position. The convolutional network (topic 1.2) slides two small banks of 3x3 filters over the
image and pools, so one filter serves every position: its structure *assumes* that what
matters in a picture can appear anywhere. The experiment trains both on training sets of
several sizes and tests them on held-out digits as they are and shifted by one pixel.

The convolution and pooling are topic 1.2's :func:`~impl.deep_networks.cnn.conv2d` and
:func:`~impl.deep_networks.cnn.max_pool`.

Shapes: images ``x`` are ``float32[b, 8, 8, 1]`` (NHWC); filters ``[3, 3, c_in, c_out]`` (HWIO);
logits ``[b, 10]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks import cnn as conv
from impl.deep_networks import dnn
from impl.essay import side_by_side
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = [
    "SIZES",
    "cnn",
    "count_params",
    "experiment",
    "init_cnn",
    "init_mlp",
    "mlp",
    "shift_images",
]

SIZES = (50, 150, 500, 1347)
CHANNELS = (8, 16)
MLP_HIDDEN = 25  # chosen so the perceptron's parameter count matches the CNN's


def init_cnn(key: jax.Array, channels: Sequence[int] = CHANNELS, n_out: int = 10):
    """Two 3x3 convolutions (``1 -> c1 -> c2``), each followed by 2x2 max-pooling, then a dense
    layer."""
    c1, c2 = channels
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "conv1": conv.init_conv(k1, 3, 1, c1, gain=2.0),  # He scaling for ReLU
        "conv2": conv.init_conv(k2, 3, c1, c2, gain=2.0),
        "out": dnn.init_layer(k3, 2 * 2 * c2, n_out),
    }


def init_mlp(key: jax.Array, hidden: int = MLP_HIDDEN, n_out: int = 10):
    """Topic 1.1's perceptron, ``64 -> hidden -> n_out``."""
    return dnn.init_mlp(key, [64, hidden, n_out])


def count_params(params) -> int:
    """Number of trainable numbers in a pytree of parameters."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


# --8<-- [start:core]
def cnn(params, x: jax.Array) -> jax.Array:
    """Convolutional network: ``[b, 8, 8, 1]`` images -> ``[b, 10]`` logits (topic 1.2's layers)."""
    h = conv.max_pool(jax.nn.relu(conv.conv2d(x, **params["conv1"])))  # [b, 4, 4, c1]
    h = conv.max_pool(jax.nn.relu(conv.conv2d(h, **params["conv2"])))  # [b, 2, 2, c2]
    return dnn.dense(params["out"], h.reshape(h.shape[0], -1))  # [b, 10]


def mlp(params, x: jax.Array) -> jax.Array:
    """The perceptron sees the same images flattened: ``[b, 8, 8, 1] -> [b, 64] -> [b, 10]``."""
    return dnn.mlp(params, x.reshape(x.shape[0], -1), activation="tanh")


# --8<-- [end:core]


def shift_images(key: jax.Array, x: jax.Array, pixels: int = 1) -> jax.Array:
    """Shift each image by ``pixels`` in one of the 8 compass directions, filling with zeros.

    ``x`` is ``[n, h, w, c]``; returns the same shape. The shift is drawn per image.
    """
    checks.array_shape("x", x, ("n", "h", "w", "c"), dims="[n, h, w, c]")
    checks.positive_int("pixels", pixels)
    if pixels >= min(x.shape[1], x.shape[2]):
        raise ValueError(
            "pixels: expected a shift smaller than the "
            f"image ({x.shape[1]}x{x.shape[2]}), got {pixels}"
        )
    moves = (
        jnp.asarray([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
        * pixels
    )
    choice = jax.random.randint(key, (x.shape[0],), 0, moves.shape[0])
    padded = jnp.pad(x, ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0)))

    def one(img, move):
        return jax.lax.dynamic_slice(img, (pixels - move[0], pixels - move[1], 0), x.shape[1:])

    return jax.vmap(one)(padded, moves[choice])


def _make_loss(forward):
    def loss_fn(params, batch, key, *, batch_size: int = 64):
        n_used = batch["n_used"][0]  # [runs]
        idx = side_by_side.prefix_batches(key, n_used, batch_size)  # [runs, batch]

        # lax.map runs the runs one after another inside the compiled step. (vmap would turn
        # the convolution into a grouped one, several times slower on a CPU.)
        def one_run(args):
            run_params, run_idx = args
            return dnn.cross_entropy(forward(run_params, batch["x"][run_idx]), batch["y"][run_idx])

        losses = jax.lax.map(one_run, (params, idx))  # [runs]
        return jnp.sum(losses), {"run_loss": losses}

    return loss_fn


MODELS = {"MLP": (init_mlp, mlp, _make_loss(mlp)), "CNN": (init_cnn, cnn, _make_loss(cnn))}
OPTIMIZER = adam(learning_rate=3e-3)


def experiment(
    seed: int = 0, *, progress: bool | None = None, sizes: Sequence[int] = SIZES, steps: int = 750
) -> Report:
    """Train the perceptron and the CNN on class-balanced prefixes of ``sizes`` digits each.

    Metrics: ``params_mlp``, ``params_cnn``; ``acc_<model>_n<size>`` on the held-out digits
    and ``shifted_acc_<model>_n<size>`` on the same digits shifted by one pixel.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    split = data.load_digits(as_images=True)
    n_max = split.x_train.shape[0]
    if len(sizes) == 0:
        raise ValueError("sizes: expected at least one training-set size")
    for i, n in enumerate(sizes):
        checks.positive_int(f"sizes[{i}]", n)
        if n > n_max:
            raise ValueError(f"sizes[{i}]: expected at most {n_max} training examples, got {n}")
    start = time.perf_counter()
    key = jax.random.key(seed)
    k_init, k_train, k_shift = jax.random.split(key, 3)
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    x_shifted = shift_images(k_shift, x_test)
    n_used = jnp.asarray(sizes, jnp.int32)
    batch = {"x": x, "y": y, "n_used": jnp.broadcast_to(n_used[None, :], (n_max, len(sizes)))}

    metrics, table = {}, {}
    for m, (name, (init, forward, loss_fn)) in enumerate(MODELS.items()):
        keys = jax.random.split(jax.random.fold_in(k_init, m), len(sizes))
        params = side_by_side.stack([init(k) for k in keys])
        metrics[f"params_{name.lower()}"] = float(count_params(side_by_side.unstack(params, 0)))
        result = train(
            loss_fn,
            params,
            OPTIMIZER,
            batch,
            key=k_train,
            steps=steps,
            progress=progress,
            label=f"2.4 {name}",
        )
        score = jax.vmap(lambda p, xs, f=forward: dnn.accuracy(f(p, xs), y_test), in_axes=(0, None))
        clean = np.asarray(score(result.params, x_test))
        shifted = np.asarray(score(result.params, x_shifted))
        for n, a, s in zip(sizes, clean, shifted):
            metrics[f"acc_{name.lower()}_n{n}"], metrics[f"shifted_acc_{name.lower()}_n{n}"] = (
                float(a),
                float(s),
            )
            table[(name, int(n))] = (float(a), float(s))

    lines = [
        f"parameters: MLP {metrics['params_mlp']:,.0f}, CNN {metrics['params_cnn']:,.0f}",
        f"{'examples':>9} {'MLP':>8} {'CNN':>8}   {'MLP shifted':>11} {'CNN shifted':>11}",
    ]
    for n in sizes:
        (am, sm), (ac, sc) = table[("MLP", int(n))], table[("CNN", int(n))]
        lines.append(f"{n:>9} {am:>8.1%} {ac:>8.1%}   {sm:>11.1%} {sc:>11.1%}")
    lines.append("(held-out digits as they are, and shifted by one pixel in a random direction)")
    fig = _figure(sizes, table)
    return Report(
        "2.4 Architecture — MLP vs CNN at equal parameter count",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _figure(sizes, table):
    fig, (ax_clean, ax_shift) = plotting.figure(2, 1, height=3.2, sharey=True)
    for i, name in enumerate(MODELS):
        ax_clean.plot(
            sizes,
            [table[(name, int(n))][0] for n in sizes],
            "o-",
            color=plotting.PALETTE[i],
            label=name,
        )
        ax_shift.plot(
            sizes,
            [table[(name, int(n))][1] for n in sizes],
            "o-",
            color=plotting.PALETTE[i],
            label=name,
        )
    ax_clean.set(
        xscale="log",
        xlabel="training examples",
        ylabel="held-out accuracy",
        title="Held-out digits",
    )
    ax_shift.set(
        xscale="log", xlabel="training examples", title="Held-out digits shifted by one pixel"
    )
    ax_clean.legend()
    return fig
