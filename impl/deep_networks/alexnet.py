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
:mod:`impl.optimization.dropout` (Hinton et al., 2012, which AlexNet cites).

Layout: pure functions hold the math; `LinenAlexNet` and `NnxAlexNet` hold the tree that
`init_alexnet` declares and call the same `alexnet`. The experiment (ReLU vs tanh, shifts and
dropout, optimizer, figure) lives in `impl.deep_networks.alexnet_experiment`.

Shapes: images ``float32[batch, 8, 8, 1]`` (NHWC); logits ``float32[batch, n_classes]``.
Parameters: ``{"convs": [{"kernel": [3, 3, c_in, c_out], "bias": [c_out]}, ...] (conv1-5),
"fcs": [{"kernel": [d_in, d_out], "bias": [d_out]}, ...] (fc6-8)}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.cnn import check_images, conv2d, init_conv, max_pool
from impl.deep_networks.dnn import dense, init_layer
from impl.optimization.dropout import dropout
from impl.optimization.relu import relu

__all__ = [
    "ACTIVATIONS",
    "LinenAlexNet",
    "NnxAlexNet",
    "alexnet",
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
    energy = jax.lax.reduce_window(
        a**2, 0.0, jax.lax.add, (1, 1, 1, 2 * half + 1), (1, 1, 1, 1), pads
    )
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
) -> dict[str, list[Layer]]:
    """Parameters of :func:`alexnet`: a 3x3 conv layer per entry of ``channels`` (at least two),
    then three dense layers (the paper's fc6-fc8): ``{"convs": [...], "fcs": [fc6, fc7, fc8]}``.

    ``gain=2`` (He initialisation) keeps ReLU activations at a steady scale; the tanh network
    of the comparison uses the same initial weights.
    """
    h, w, c_in = image_shape
    keys = jax.random.split(key, len(channels) + 3)
    convs = []
    for k, c_out in zip(keys, channels):
        convs.append(init_conv(k, 3, c_in, c_out, gain=gain))
        c_in = c_out
    flat = (-(-h // 4)) * (-(-w // 4)) * c_in  # two stride-2 pools with "SAME" padding
    sizes = [flat, hidden, hidden, n_classes]
    fcs = [init_layer(k, a, b) for k, a, b in zip(keys[-3:], sizes[:-1], sizes[1:])]
    return {"convs": convs, "fcs": fcs}


def alexnet(
    params: dict[str, list[Layer]],
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
    convs, fcs = params["convs"], params["fcs"]
    h = norm(f(conv2d(x, **convs[0])))  # [b, 8, 8, c0]
    h = max_pool(h, window=3, stride=2, padding="SAME")  # overlapping pooling (3.4): [b, 4, 4, c0]
    h = norm(f(conv2d(h, **convs[1])))  # [b, 4, 4, c1]
    for layer in convs[2:]:
        h = f(conv2d(h, **layer))  # [b, 4, 4, c_i]
    h = max_pool(h, window=3, stride=2, padding="SAME")  # [b, 2, 2, c_last]
    h = h.reshape(h.shape[0], -1)  # [b, 4 * c_last]
    keys = jax.random.split(key) if key is not None else (None, None)
    for layer, k in zip(fcs[:2], keys):  # fc6 and fc7, each followed by dropout (4.2)
        h = f(dense(layer, h))  # [b, hidden]
        h = dropout(k, h, dropout_rate, deterministic=key is None)
    return dense(fcs[2], h)  # [b, n_classes]


# --8<-- [end:core]


def _check_config(
    channels: Sequence[int],
    hidden: int,
    n_classes: int,
    activation: str,
    dropout_rate: float,
    in_channels: int,
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
        raise ValueError(
            "x: expected images of at least 3x3 pixels "
            f"(the conv kernels' size), got {x.shape[1:3]}"
        )
    if size is not None and tuple(x.shape[1:3]) != tuple(size):
        raise ValueError(
            f"x: expected {size[0]}x{size[1]} images (the "
            f"size the model was built for), got {x.shape}"
        )


# --8<-- [start:linen]
class LinenAlexNet(nn.Module):
    """Functional twin: ``init`` returns ``{"params": {"layers": init_alexnet(key, ...)}}``;
    ``apply(variables, x)`` evaluates, ``apply(variables, x, key=k)`` trains (dropout on)."""

    channels: Sequence[int] = (8, 16, 16, 16, 16)
    hidden: int = 256
    n_classes: int = 10
    activation: str = "relu"
    dropout_rate: float = 0.5
    lrn: bool = True
    in_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        _check_config(
            self.channels,
            self.hidden,
            self.n_classes,
            self.activation,
            self.dropout_rate,
            self.in_channels,
        )
        _check_input(x, self.in_channels)
        image_shape = (x.shape[1], x.shape[2], self.in_channels)
        layers = self.param(
            "layers", init_alexnet, image_shape, self.channels, self.hidden, self.n_classes
        )
        return alexnet(
            layers,
            x,
            key=key,
            activation=self.activation,
            dropout_rate=self.dropout_rate,
            lrn=self.lrn,
        )


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxAlexNet(nnx.Module):
    """Object-oriented twin: ``self.layers`` holds the same ``{"convs", "fcs"}`` tree as Linen's
    ``params["layers"]``, as NNX objects (`impl.twins.to_nnx`)."""

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
        _check_config(channels, hidden, n_classes, activation, dropout_rate, image_shape[2])
        self.image_shape = tuple(image_shape)
        self.activation, self.dropout_rate, self.lrn = activation, dropout_rate, lrn
        self.layers = twins.to_nnx(
            init_alexnet(rngs.params(), image_shape, channels, hidden, n_classes)
        )

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        _check_input(x, self.image_shape[2], self.image_shape[:2])
        layers = twins.pure(self.layers)  # the {"convs", "fcs"} tree `alexnet` takes
        return alexnet(
            layers,
            x,
            key=key,
            activation=self.activation,
            dropout_rate=self.dropout_rate,
            lrn=self.lrn,
        )


# --8<-- [end:nnx]
