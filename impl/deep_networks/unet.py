"""1.4 U-Net — a contracting path, an expanding path, and skip connections between them.

Ronneberger, Fischer & Brox, *U-Net: convolutional networks for biomedical image
segmentation*, MICCAI 2015, LNCS 9351, 234–241. https://arxiv.org/abs/1505.04597

The idea: segmentation needs two things at once — *what* is in the image, which takes a wide
view and comes from pooling down to coarse, many-channelled features, and *where* exactly its
boundary runs, which pooling throws away. The U-Net keeps both. A contracting path (conv, conv,
pool, repeated) gathers context; an expanding path (2x2 up-convolution, conv, conv, repeated)
brings the resolution back; and at every level a skip connection concatenates the contracting
path's high-resolution features onto the expanding path's, so fine detail only has to be
copied, not reconstructed from the bottleneck.

Departures from the paper: "SAME" padding, so the output has the input's size and nothing needs
cropping (the paper used unpadded convolutions and cropped the skipped features, section 2);
two levels of pooling and (in the experiment) 4 to 16 channels instead of four levels and 64 to
1,024; a sigmoid
per pixel for one foreground class instead of a softmax with a weighted loss (eq. 1-2).

Convolution and max-pooling come from :mod:`impl.deep_networks.cnn`, ReLU from
:mod:`impl.optimization.relu`.

Shapes: images ``float32[batch, height, width, in_channels]`` (NHWC), ``height`` and ``width``
divisible by ``2**depth``; logits ``float32[batch, height, width, out_channels]``.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, data, plotting
from impl.deep_networks.cnn import NnxConv, check_images, conv2d, init_conv, max_pool
from impl.optimization.adam import adam
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import train

__all__ = [
    "LinenUNet",
    "NnxUNet",
    "binary_cross_entropy",
    "check_unet_input",
    "experiment",
    "init_unet",
    "iou",
    "unet",
    "up_conv",
]

Layer = dict[str, jax.Array]


# --8<-- [start:core]
def init_up_conv(key: jax.Array, c_in: int, c_out: int) -> Layer:
    """A 2x2 up-convolution: ``kernel [2, 2, c_in, c_out] ~ N(0, 2 / c_in)``, zero ``bias [c_out]``."""
    return {"kernel": jax.random.normal(key, (2, 2, c_in, c_out)) * jnp.sqrt(2.0 / c_in), "bias": jnp.zeros((c_out,))}


def up_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """The paper's "up-convolution" (a stride-2 transposed convolution with a 2x2 kernel):
    every input pixel paints a 2x2 block of the output, ``y[2i + a, 2j + b] = x[i, j] @ kernel[a, b] + bias``.

    ``x [batch, h, w, c_in] -> [batch, 2h, 2w, c_out]``; ``kernel [2, 2, c_in, c_out]``.
    """
    b, h, w, _ = x.shape
    blocks = jnp.einsum("nhwc,abco->nhawbo", x, kernel)  # [batch, h, 2, w, 2, c_out]
    return blocks.reshape(b, 2 * h, 2 * w, -1) + bias.reshape(1, 1, 1, -1)


def init_unet(
    key: jax.Array, in_channels: int = 3, out_channels: int = 1, *, base: int = 8, depth: int = 2, skips: bool = True
) -> dict:
    """Parameters of :func:`unet`: ``base * 2**level`` channels at each level of the "U".

    ``{"down": [[conv, conv] per level], "bottom": [conv, conv],
    "up": [{"up": up-conv, "convs": [conv, conv]} per level, deepest first], "out": 1x1 conv}``.
    Without ``skips`` the expanding path's first conv sees only the up-sampled channels.
    """
    keys = iter(jax.random.split(key, 6 * depth + 3))
    pair = lambda c_in, c_out: [init_conv(next(keys), 3, c_in, c_out, gain=2.0),  # noqa: E731
                                init_conv(next(keys), 3, c_out, c_out, gain=2.0)]  # fmt: skip
    params: dict = {"down": [], "up": []}
    c_in = in_channels
    for level in range(depth):
        params["down"].append(pair(c_in, base * 2**level))
        c_in = base * 2**level
    params["bottom"] = pair(c_in, base * 2**depth)
    for level in reversed(range(depth)):
        c = base * 2**level  # channels at this level
        up = init_up_conv(next(keys), 2 * c, c)
        params["up"].append({"up": up, "convs": pair(2 * c if skips else c, c)})
    params["out"] = init_conv(next(keys), 1, base, out_channels)
    return params


def unet(params: dict, x: jax.Array) -> jax.Array:
    """Forward pass, ``x [batch, h, w, c_in] -> logits [batch, h, w, c_out]``.

    Skip connections are used when the parameters were made with ``skips=True`` (the first
    conv of each expanding level then expects twice the channels).
    """
    check_unet_input(x, params["down"][0][0]["kernel"].shape[2], len(params["down"]))
    block = lambda convs, h: relu(conv2d(relu(conv2d(h, **convs[0])), **convs[1]))  # noqa: E731  conv-ReLU, twice
    features = []  # the contracting path's output at each level, for the skips
    h = x
    for convs in params["down"]:
        h = block(convs, h)  # [b, H / 2**level, W / 2**level, base * 2**level]
        features.append(h)
        h = max_pool(h, 2)  # halve the resolution
    h = block(params["bottom"], h)  # [b, H / 2**depth, W / 2**depth, base * 2**depth]
    for level, stage in zip(reversed(range(len(features))), params["up"]):
        h = up_conv(h, **stage["up"])  # double the resolution, halve the channels
        if stage["convs"][0]["kernel"].shape[2] == 2 * h.shape[-1]:  # built with skips
            h = jnp.concatenate([features[level], h], axis=-1)  # the skip: copy the fine features
        h = block(stage["convs"], h)  # [b, H / 2**level, W / 2**level, base * 2**level]
    return conv2d(h, **params["out"])  # 1x1 conv: a logit per pixel and class


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean per-pixel ``-[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]``, computed stably."""
    return jnp.mean(jax.nn.softplus(logits) - targets * logits)


def iou(logits: jax.Array, masks: jax.Array) -> jax.Array:
    """Intersection over union of ``logits > 0`` with ``masks``, per image, averaged: ``[b, h, w, 1] -> []``."""
    predicted = logits > 0
    truth = masks > 0.5
    inter = jnp.sum(predicted & truth, axis=(1, 2, 3))
    union = jnp.sum(predicted | truth, axis=(1, 2, 3))
    return jnp.mean(inter / jnp.maximum(union, 1))


# --8<-- [end:core]


def check_unet_input(x, in_channels: int, depth: int) -> None:
    """NHWC with ``in_channels`` channels, a size that ``depth`` 2x2 pools divide evenly, and a
    bottleneck of at least 3x3 pixels (the size of its kernels)."""
    check_images("x", x, in_channels)
    factor = 2**depth
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"x: height and width must be divisible by 2**depth = {factor} (depth={depth} pools halve them), "
            f"got {x.shape[1]}x{x.shape[2]}; pad or crop the image"
        )
    if min(x.shape[1], x.shape[2]) // factor < 3:
        raise ValueError(
            f"x: a {x.shape[1]}x{x.shape[2]} image pooled {depth} times leaves a bottleneck smaller than its 3x3 "
            f"kernels; use images of at least {3 * factor}x{3 * factor} or a smaller depth"
        )


def _check_config(in_channels: int, out_channels: int, base: int, depth: int) -> None:
    checks.positive_int("in_channels", in_channels)
    checks.positive_int("out_channels", out_channels)
    checks.positive_int("base", base)
    checks.positive_int("depth", depth)


# --8<-- [start:linen]
class LinenUNet(nn.Module):
    """Functional twin: ``init`` returns ``{"params": {"down": ..., "bottom": ..., "up": ..., "out": ...}}``."""

    in_channels: int = 3
    out_channels: int = 1
    base: int = 8
    depth: int = 2
    skips: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_config(self.in_channels, self.out_channels, self.base, self.depth)
        check_unet_input(x, self.in_channels, self.depth)
        init = lambda key: init_unet(  # noqa: E731
            key, self.in_channels, self.out_channels, base=self.base, depth=self.depth, skips=self.skips
        )
        params = {
            name: self.param(name, lambda key, name=name: init(key)[name]) for name in ("down", "bottom", "up", "out")
        }
        return unet(params, x)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxBlock(nnx.Module):
    """Two 3x3 conv layers (each followed by ReLU in :func:`unet`)."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.convs = nnx.List(
            [NnxConv(3, c_in, c_out, gain=2.0, rngs=rngs), NnxConv(3, c_out, c_out, gain=2.0, rngs=rngs)]
        )


class NnxUp(nnx.Module):
    """One expanding level: a 2x2 up-convolution, then a block."""

    def __init__(self, c: int, skips: bool, *, rngs: nnx.Rngs):
        up = init_up_conv(rngs.params(), 2 * c, c)
        self.kernel, self.bias = nnx.Param(up["kernel"]), nnx.Param(up["bias"])  # [2, 2, 2c, c], [c]
        self.block = NnxBlock(2 * c if skips else c, c, rngs=rngs)


class NnxUNet(nnx.Module):
    """Object-oriented twin: the levels of the "U" are attributes."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        *,
        base: int = 8,
        depth: int = 2,
        skips: bool = True,
        rngs: nnx.Rngs,
    ):
        _check_config(in_channels, out_channels, base, depth)
        self.in_channels, self.depth = in_channels, depth
        widths = [base * 2**level for level in range(depth + 1)]
        self.down = nnx.List([NnxBlock(c_in, c, rngs=rngs) for c_in, c in zip([in_channels, *widths], widths[:-1])])
        self.bottom = NnxBlock(widths[-2], widths[-1], rngs=rngs)
        self.up = nnx.List([NnxUp(c, skips, rngs=rngs) for c in reversed(widths[:-1])])
        self.out = NnxConv(1, base, out_channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_unet_input(x, self.in_channels, self.depth)
        block = lambda b: [conv.read() for conv in b.convs]  # noqa: E731
        params = {
            "down": [block(b) for b in self.down],
            "bottom": block(self.bottom),
            "up": [{"up": {"kernel": u.kernel[...], "bias": u.bias[...]}, "convs": block(u.block)} for u in self.up],
            "out": self.out.read(),
        }
        return unet(params, x)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: the same U-Net with and without its skip connections.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
RUNS = {"with skips": True, "without skips": False}


def loss_fn(params, batch, key):
    """Both networks side by side (``params = {run name: network}``): independent weights, the
    same mini-batches; the summed loss's gradient for each network is its own. Metrics: each
    network's per-pixel binary cross-entropy."""
    del key
    losses = {name: binary_cross_entropy(unet(params[name], batch["x"]), batch["y"]) for name in RUNS}
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=3e-3)


def fit(key, shapes, *, steps: int = 400, batch_size: int = 16, base: int = 4, **kwargs):
    """Train both networks on ``shapes.images -> shapes.masks`` with the project's hand-written Adam."""
    k_init, k_train = jax.random.split(key)
    params = {name: init_unet(k_init, base=base, skips=skips) for name, skips in RUNS.items()}
    batches = {"x": shapes.images, "y": shapes.masks}
    return train(
        loss_fn, params, OPTIMIZER, batches, key=k_train, steps=steps, batch_size=batch_size, chunk=steps, **kwargs
    )


# --8<-- [end:experiment]


_predict = jax.jit(unet)


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 400, size: int = 16) -> Report:
    """Segment generated shapes with and without skip connections; IoU on held-out shapes.

    ``seed`` draws the training and test shapes and the (shared) initial weights.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("size", size)
    if size % 4 or size < 12:
        raise ValueError(f"size: expected a multiple of 4 (two 2x2 pools), at least 12; got {size}")
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # see cnn.experiment: far quicker to compile on CPU than threefry
    k_train, k_test, k_fit = jax.random.split(key, 3)
    train_set = data.make_shapes(k_train, 512, size=size)
    test_set = data.make_shapes(k_test, 256, size=size)
    result = fit(k_fit, train_set, steps=steps, progress=progress, label="1.4 unet")
    metrics, predictions = {}, {}
    for name in RUNS:
        slug = name.replace(" ", "_")
        predictions[name] = _predict(result.params[name], test_set.images)  # [256, size, size, 1]
        metrics[f"iou_{slug}"] = float(iou(predictions[name], test_set.masks))
        metrics[f"train_loss_{slug}"] = float(np.mean(result.history[name][-25:]))
        metrics[f"params_{slug}"] = int(sum(leaf.size for leaf in jax.tree.leaves(result.params[name])))
    lines = [f"{'U-Net':<15} {'parameters':>10} {'train loss':>11} {'test IoU':>9}"]
    for name in RUNS:
        slug = name.replace(" ", "_")
        m = metrics[f"params_{slug}"], metrics[f"train_loss_{slug}"], metrics[f"iou_{slug}"]
        lines.append(f"{name:<15} {m[0]:>10,} {m[1]:>11.4f} {m[2]:>9.3f}")
    lines.append(f"{size}x{size} shapes, 512 to train, 256 to test; {steps} steps of Adam, batch 16, for each net")
    fig = _figure(result.history, metrics, test_set, predictions)
    return Report("1.4 U-Net — with and without skip connections", metrics, lines, fig, time.perf_counter() - start)


def _figure(history, metrics, test_set, predictions, n_shown: int = 5):
    fig, axes = plotting.figure(3, width=10.5, height=3.6, gridspec_kw={"width_ratios": [1.0, 0.7, 1.5]})
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
    grey = lambda m: np.repeat(np.asarray(m, dtype=np.float32), 3, axis=-1)  # noqa: E731  [s, s, 1] -> [s, s, 3]
    rows = [np.asarray(test_set.images[:n_shown]), grey(test_set.masks[:n_shown])]
    rows += [grey(predictions[name][:n_shown] > 0) for name in RUNS]
    s = test_set.images.shape[1]
    canvas = np.ones((len(rows) * (s + 1) - 1, n_shown * (s + 1) - 1, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c in range(n_shown):
            canvas[r * (s + 1) : r * (s + 1) + s, c * (s + 1) : c * (s + 1) + s] = row[c]
    axes[2].imshow(canvas)
    axes[2].set(xticks=[], yticks=[(s + 1) * r + s / 2 - 0.5 for r in range(len(rows))], title="held-out shapes")
    axes[2].set_yticklabels(["image", "truth", *RUNS])
    axes[2].grid(False)
    return fig
