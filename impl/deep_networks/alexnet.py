"""1.3 AlexNet — a deep convolutional network trained with ReLUs, dropout and augmentation.

Krizhevsky, Sutskever & Hinton, *ImageNet classification with deep convolutional neural
networks*, NeurIPS 25 (2012).
https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks

The idea: LeNet's recipe (topic 1.2) scaled up to 1.2 million ImageNet photographs and made
trainable by a handful of practical changes, each of which the paper measures. Rectified
linear units, ``max(0, x)``, do not saturate, so the network learns several times faster than
with ``tanh`` (section 3.1, Figure 1). *Local response normalisation* divides each activation by
the energy of its neighbours across channels (section 3.3). Pooling windows overlap (3x3
windows, stride 2, section 3.4). And two defences against over-fitting a 60-million-parameter
model: random crops and flips of the training images (section 4.1) and dropout in the first two
fully-connected layers (section 4.2).

Here the network keeps the paper's shape — five conv layers, then three fully-connected ones —
scaled down to 8x8 digits: 8 to 16 channels instead of 96 to 384, 3x3 kernels, hidden layers
of 256 units instead of 4,096, and two pools instead of three (8x8 can only be halved twice).
Convolution and pooling come from
:mod:`impl.deep_networks.cnn`, ReLU from :mod:`impl.optimization.relu` and dropout from
:mod:`impl.optimization.dropout`.

Shapes: images ``float32[batch, 8, 8, 1]`` (NHWC); logits ``float32[batch, n_classes]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, data, plotting
from impl.deep_networks.cnn import NnxConv, check_images, conv2d, init_conv, max_pool
from impl.deep_networks.dnn import NnxLayer, accuracy, cross_entropy, dense, init_layer
from impl.optimization.adam import sgd
from impl.optimization.dropout import dropout
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import even_chunk, first_step, train

__all__ = [
    "ACTIVATIONS",
    "LinenAlexNet",
    "NnxAlexNet",
    "alexnet",
    "experiment",
    "init_alexnet",
    "local_response_norm",
    "random_shift",
]

Layer = dict[str, jax.Array]
ACTIVATIONS = {"relu": relu, "tanh": jnp.tanh}


# --8<-- [start:core]
def local_response_norm(
    a: jax.Array, *, k: float = 2.0, n: int = 5, alpha: float = 1e-4, beta: float = 0.75
) -> jax.Array:
    r"""Local response normalisation across channels, section 3.3 of the paper:

    $$b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha
        \sum_{j=\max(0,\,i-n/2)}^{\min(N-1,\,i+n/2)} (a^j_{x,y})^2\Big)^\beta$$

    ``a [batch, h, w, N] -> b [batch, h, w, N]``; ``n/2`` is rounded down, so each channel is
    divided by the energy of ``n`` (odd) neighbouring channels at the same pixel, itself included.
    """
    check_images("a", a)
    checks.positive_int("n", n)
    half = n // 2
    # A sliding-window sum of squares along the channel axis; zero channels beyond 0 and N - 1
    # clip the sum's range exactly as the formula's max and min do.
    pads = [(0, 0), (0, 0), (0, 0), (half, half)]
    energy = jax.lax.reduce_window(a**2, 0.0, jax.lax.add, (1, 1, 1, 2 * half + 1), (1, 1, 1, 1), pads)
    return a / (k + alpha * energy) ** beta  # [batch, h, w, N]


def random_shift(key: jax.Array, x: jax.Array, max_shift: int = 1) -> jax.Array:
    """Augmentation: move each image by up to ``max_shift`` pixels in each direction.

    The scaled-down form of the paper's random 224x224 crops of 256x256 images (section 4.1):
    pad with zeros (the digits' background), then crop back at a random offset per image.
    ``[batch, h, w, c] -> [batch, h, w, c]``.
    """
    check_images("x", x)
    checks.non_negative_int("max_shift", max_shift)
    b, h, w, c = x.shape
    padded = jnp.pad(x, [(0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)])
    offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)  # [batch, 2]: top, left
    crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c))  # noqa: E731
    return jax.vmap(crop)(padded, offsets)


def init_alexnet(
    key: jax.Array,
    image_shape: Sequence[int] = (8, 8, 1),
    channels: Sequence[int] = (8, 16, 16, 16, 16),
    hidden: int = 256,
    n_classes: int = 10,
    *,
    gain: float = 2.0,
) -> dict[str, Layer]:
    """Parameters of :func:`alexnet`: a 3x3 conv layer per entry of ``channels`` (at least two),
    then three dense layers (the paper's fc6-fc8).

    ``gain=2`` (He initialisation) keeps ReLU activations at a steady scale; the tanh network
    of the comparison uses the same initial weights.
    """
    h, w, c_in = image_shape
    keys = jax.random.split(key, len(channels) + 3)
    params = {}
    for i, c_out in enumerate(channels):
        params[f"conv_{i}"] = init_conv(keys[i], 3, c_in, c_out, gain=gain)
        c_in = c_out
    flat = (-(-h // 4)) * (-(-w // 4)) * c_in  # two stride-2 pools with "SAME" padding
    params["fc_0"] = init_layer(keys[-3], flat, hidden)
    params["fc_1"] = init_layer(keys[-2], hidden, hidden)
    params["fc_2"] = init_layer(keys[-1], hidden, n_classes)
    return params


def alexnet(
    params: dict[str, Layer],
    x: jax.Array,
    *,
    key: jax.Array | None = None,
    activation: str = "relu",
    dropout_rate: float = 0.5,
    lrn: bool = True,
) -> jax.Array:
    """Forward pass, ``x [batch, h, w, c] -> logits [batch, n_classes]``.

    conv1 -> f -> LRN -> overlapping max-pool 3x3/2 -> conv2 -> f -> LRN -> conv3..5 -> f
    -> overlapping max-pool 3x3/2 -> fc6 -> f -> dropout -> fc7 -> f -> dropout -> fc8.
    ``key=None`` evaluates the network (no dropout); with a key it trains.
    """
    f = ACTIVATIONS[activation]
    norm = local_response_norm if lrn else (lambda a: a)
    conv = lambda name, h: conv2d(h, params[name]["kernel"], params[name]["bias"])  # noqa: E731
    h = norm(f(conv("conv_0", x)))  # [b, 8, 8, c0]
    h = max_pool(h, window=3, stride=2, padding="SAME")  # overlapping pooling (3.4): [b, 4, 4, c0]
    h = norm(f(conv("conv_1", h)))  # [b, 4, 4, c1]
    for i in range(2, sum(name.startswith("conv_") for name in params)):
        h = f(conv(f"conv_{i}", h))  # [b, 4, 4, c_i]
    h = max_pool(h, window=3, stride=2, padding="SAME")  # [b, 2, 2, c2]
    h = h.reshape(h.shape[0], -1)  # [b, 4 * c2]
    keys = jax.random.split(key) if key is not None else (None, None)
    for i in range(2):  # fc6 and fc7, each followed by dropout (4.2)
        h = f(dense(params[f"fc_{i}"], h))  # [b, hidden]
        h = dropout(keys[i], h, dropout_rate, deterministic=key is None)
    return dense(params["fc_2"], h)  # [b, n_classes]


# --8<-- [end:core]


def _check_config(
    channels: Sequence[int], hidden: int, n_classes: int, activation: str, dropout_rate: float, in_channels: int
) -> None:
    if len(channels) < 2:
        raise ValueError(f"channels: expected at least two conv widths, got {tuple(channels)}")
    for i, c in enumerate(channels):
        checks.positive_int(f"channels[{i}]", c)
    checks.positive_int("hidden", hidden)
    checks.positive_int("n_classes", n_classes)
    checks.one_of("activation", activation, ACTIVATIONS)
    checks.rate("dropout_rate", dropout_rate)
    checks.positive_int("in_channels", in_channels)


def _check_input(x, in_channels: int, size: tuple[int, int] | None = None) -> None:
    check_images("x", x, in_channels)
    if x.shape[1] < 3 or x.shape[2] < 3:
        raise ValueError(f"x: expected images of at least 3x3 pixels (the conv kernels' size), got {x.shape[1:3]}")
    if size is not None and tuple(x.shape[1:3]) != tuple(size):
        raise ValueError(f"x: expected {size[0]}x{size[1]} images (the size the model was built for), got {x.shape}")


# --8<-- [start:linen]
class LinenAlexNet(nn.Module):
    """Functional twin: ``apply(variables, x)`` evaluates; ``apply(variables, x, key=k)`` trains."""

    channels: Sequence[int] = (8, 16, 16, 16, 16)
    hidden: int = 256
    n_classes: int = 10
    activation: str = "relu"
    dropout_rate: float = 0.5
    lrn: bool = True
    in_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        _check_config(self.channels, self.hidden, self.n_classes, self.activation, self.dropout_rate, self.in_channels)
        _check_input(x, self.in_channels)
        c_in, params = self.in_channels, {}
        for i, c_out in enumerate(self.channels):
            params[f"conv_{i}"] = self.param(f"conv_{i}", init_conv, 3, c_in, c_out, gain=2.0)
            c_in = c_out
        flat = (-(-x.shape[1] // 4)) * (-(-x.shape[2] // 4)) * c_in
        sizes = [flat, self.hidden, self.hidden, self.n_classes]
        for i in range(3):
            params[f"fc_{i}"] = self.param(f"fc_{i}", init_layer, sizes[i], sizes[i + 1])
        return alexnet(params, x, key=key, activation=self.activation, dropout_rate=self.dropout_rate, lrn=self.lrn)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxAlexNet(nnx.Module):
    """Object-oriented twin; the conv layers are :class:`~impl.deep_networks.cnn.NnxConv`."""

    def __init__(
        self,
        image_shape: Sequence[int] = (8, 8, 1),
        channels: Sequence[int] = (8, 16, 16, 16, 16),
        hidden: int = 256,
        n_classes: int = 10,
        *,
        activation: str = "relu",
        dropout_rate: float = 0.5,
        lrn: bool = True,
        rngs: nnx.Rngs,
    ):
        h, w, c_in = image_shape
        _check_config(channels, hidden, n_classes, activation, dropout_rate, c_in)
        self.image_shape = tuple(image_shape)
        self.activation, self.dropout_rate, self.lrn = activation, dropout_rate, lrn
        self.convs = nnx.List([])
        for c_out in channels:
            self.convs.append(NnxConv(3, c_in, c_out, gain=2.0, rngs=rngs))
            c_in = c_out
        sizes = [(-(-h // 4)) * (-(-w // 4)) * c_in, hidden, hidden, n_classes]
        self.fcs = nnx.List([NnxLayer(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        _check_input(x, self.image_shape[2], self.image_shape[:2])
        params = {f"conv_{i}": conv.read() for i, conv in enumerate(self.convs)}
        params |= {f"fc_{i}": fc.read() for i, fc in enumerate(self.fcs)}
        return alexnet(params, x, key=key, activation=self.activation, dropout_rate=self.dropout_rate, lrn=self.lrn)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: ReLU vs tanh (Figure 1), and the train/test gap with and without
# augmentation + dropout.
# ---------------------------------------------------------------------------------------
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
TARGET_LOSS = 0.1  # Figure 1's criterion was 25% training error on CIFAR-10; digits get there at once


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


SLUGS = {"ReLU": "relu", "tanh": "tanh", "ReLU + shifts + dropout": "relu_regularised"}  # metric prefixes
_evaluate = jax.jit(alexnet, static_argnames=("activation", "dropout_rate", "lrn"))  # no key: no dropout


def steps_to(loss: np.ndarray, target: float, window: int = 25) -> int:
    """First step at which the ``window``-step running mean of ``loss`` is below ``target``
    (``len(loss) + 1`` if it never is): mini-batch noise averaged out."""
    reached = first_step(loss, target, window=window)
    return len(loss) + 1 if reached is None else reached


def lrn_departure(params, x: jax.Array) -> float:
    """How far LRN is from a constant scale ``k^-beta`` on the first two conv layers' ReLU outputs:
    ``max |LRN(a) / (a k^-beta) - 1|`` over every unit of ``x`` (``[n, 8, 8, 1]``)."""
    conv = lambda name, h: conv2d(h, params[name]["kernel"], params[name]["bias"])  # noqa: E731
    a1 = relu(conv("conv_0", x))  # [n, 8, 8, c0]
    a2 = relu(conv("conv_1", max_pool(local_response_norm(a1), window=3, stride=2, padding="SAME")))  # [n, 4, 4, c1]
    worst = 0.0
    for a in (a1, a2):
        ratio = local_response_norm(a) / jnp.where(a > 0, a * 2.0**-0.75, 1.0)  # k = 2, beta = 0.75
        worst = max(worst, float(jnp.max(jnp.where(a > 0, jnp.abs(ratio - 1.0), 0.0))))
    return worst


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1200) -> Report:
    """ReLU vs tanh to a target training loss; the train/test gap with and without augmentation
    and dropout; and how much LRN departs from a constant at this scale.

    ``seed`` picks the digits' split and the initial weights (shared by the three runs).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    digits = data.load_digits(as_images=True, seed=seed, test_fraction=0.5)  # 899 train, 898 test
    key = jax.random.key(seed, impl="rbg")  # see cnn.experiment: far quicker to compile on CPU than threefry
    result = fit(key, digits, steps=steps, progress=progress, label="1.3 alexnet")
    metrics = {}
    for name, (activation, _) in RUNS.items():
        slug = SLUGS[name]
        both = _evaluate(result.params[name], jnp.concatenate([digits.x_train, digits.x_test]), activation=activation)
        n = len(digits.y_train)
        for split, logits, y in (("train", both[:n], digits.y_train), ("test", both[n:], digits.y_test)):
            metrics[f"{slug}_{split}_accuracy"] = float(accuracy(logits, y))
            metrics[f"{slug}_{split}_loss"] = float(cross_entropy(logits, y))
        metrics[f"{slug}_accuracy_gap"] = metrics[f"{slug}_train_accuracy"] - metrics[f"{slug}_test_accuracy"]
        metrics[f"{slug}_loss_gap"] = metrics[f"{slug}_test_loss"] - metrics[f"{slug}_train_loss"]
        metrics[f"{slug}_steps_to_target"] = steps_to(result.history[name], TARGET_LOSS)
    metrics["relu_speedup"] = metrics["tanh_steps_to_target"] / metrics["relu_steps_to_target"]
    metrics["lrn_max_departure"] = lrn_departure(result.params["ReLU"], jnp.asarray(digits.x_test))

    lines = [
        f"{'run':<24} {'steps to loss ' + str(TARGET_LOSS):>17} {'train acc':>9} {'test acc':>8} "
        f"{'acc gap':>7} {'loss gap':>8}"
    ]
    for name, slug in SLUGS.items():
        m = {k: metrics[f"{slug}_{k}"] for k in ("steps_to_target", "train_accuracy", "test_accuracy")}
        gaps = metrics[f"{slug}_accuracy_gap"], metrics[f"{slug}_loss_gap"]
        reached = str(m["steps_to_target"]) if m["steps_to_target"] <= steps else f"not in {steps}"
        lines.append(
            f"{name:<24} {reached:>17} {m['train_accuracy']:>9.1%} {m['test_accuracy']:>8.1%} "
            f"{gaps[0]:>7.1%} {gaps[1]:>8.3f}"
        )
    lines.append(f"ReLU speed-up over tanh (steps ratio): {metrics['relu_speedup']:.2f}x (the paper: about 6x)")
    lines.append(f"LRN departs from a constant 2^-0.75 scale by at most {metrics['lrn_max_departure']:.1e} (relative)")
    lines.append(
        f"{steps} steps of SGD + momentum for each run, batch 64; gaps = train - test accuracy, test - train loss"
    )
    fig = _figure(result.history, metrics, digits, seed)
    return Report("1.3 AlexNet — ReLU vs tanh, and regularisation", metrics, lines, fig, time.perf_counter() - start)


def _figure(history, metrics, digits, seed):
    fig, axes = plotting.figure(3, width=10.5, height=3.4, gridspec_kw={"width_ratios": [1.3, 1.1, 0.9]})
    ax = axes[0]
    for i, name in enumerate(("ReLU", "tanh")):
        loss = history[name]
        smooth = np.convolve(loss, np.ones(25) / 25, mode="valid")
        ax.plot(np.arange(len(smooth)) + 25, smooth, label=name, color=plotting.PALETTE[i])
        ax.axvline(metrics[f"{SLUGS[name]}_steps_to_target"], color=plotting.PALETTE[i], ls=":", lw=1)
    ax.axhline(TARGET_LOSS, color="grey", lw=0.8)
    ax.set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = ["ReLU", "ReLU + shifts + dropout"]
    for j, split in enumerate(("train", "test")):
        values = [100 * metrics[f"{SLUGS[n]}_{split}_accuracy"] for n in names]
        bars = ax.bar(np.arange(2) + (j - 0.5) * 0.38, values, 0.38, label=split, color=plotting.PALETTE[2 + j])
        ax.bar_label(bars, [f"{v:.1f}" for v in values], fontsize=8, padding=1)
    ax.set(xticks=range(2), ylim=(90, 103), ylabel="accuracy (%)", title="train vs test")
    ax.set_xticklabels(["plain", "shifts + dropout"])
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    # Random shifts of one training digit: what augmentation feeds the network.
    x = jnp.repeat(jnp.asarray(digits.x_train[:1]), 6, axis=0)  # [6, 8, 8, 1]
    shifted = np.asarray(random_shift(jax.random.key(seed), x, 1))[..., 0]
    gap = np.full((8, 1), np.nan)
    row = lambda imgs: np.hstack([m for img in imgs for m in (img, gap)][:-1])  # noqa: E731
    axes[2].imshow(np.vstack([row(shifted[:3]), np.full((1, 26), np.nan), row(shifted[3:])]), cmap="viridis")
    axes[2].set(title="random shifts (augmentation)", xticks=[], yticks=[])
    axes[2].grid(False)
    return fig
