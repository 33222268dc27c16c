"""1.2 CNN — convolution, pooling and a LeNet-style network.

LeCun, Boser, Denker, Henderson, Howard, Hubbard & Jackel, *Backpropagation applied to
handwritten zip code recognition*, Neural Computation 1(4), 541–551 (1989).
https://doi.org/10.1162/neco.1989.1.4.541
LeCun, Bottou, Bengio & Haffner, *Gradient-based learning applied to document recognition*,
Proceedings of the IEEE 86(11), 2278–2324 (1998). https://doi.org/10.1109/5.726791

The idea: a pattern means the same thing wherever it appears in an image, so a unit that
detects it should use the same weights at every position. Convolution is exactly that — one
small kernel slid across the image — and it builds the prior in: far fewer parameters than a
dense layer, and an output that moves when the input moves (translation *equivariance*).
Pooling (the 1998 paper's "sub-sampling") then trades precise position for robustness. Stacks
of the two, ending in a dense classifier, are the LeNet family.

This module is the one home of :func:`conv2d`, :func:`max_pool`, :func:`avg_pool` and
:func:`init_conv`: topics 1.3 (AlexNet) and 1.4 (U-Net) import them from here.

Layout: pure functions hold the math; `LinenCNN` (functional) and `NnxCNN` (object-oriented)
hold the tree that `init_cnn` declares and call the same `cnn`. The experiment (digits, the
MLPs it is compared with, optimizer, figure) lives in `impl.deep_networks.cnn_experiment`.

Shapes: images are NHWC, ``float32[batch, height, width, channels]``; kernels are HWIO,
``float32[kh, kw, c_in, c_out]``; logits ``float32[batch, n_classes]``. Parameters:
``{"convs": [{"kernel": [k, k, c_in, c_out], "bias": [c_out]}, ...], "hidden": dense,
"out": dense}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import dense, init_layer

__all__ = [
    "PADDINGS",
    "LinenCNN",
    "NnxCNN",
    "avg_pool",
    "check_images",
    "cnn",
    "conv2d",
    "count_params",
    "init_cnn",
    "init_conv",
    "max_pool",
    "patches",
]

Layer = dict[str, jax.Array]  # {"kernel": ..., "bias": ...}
PADDINGS = ("SAME", "VALID", "CIRCULAR")
_NHWC = "[batch, height, width, channels]"


# ---------------------------------------------------------------------------------------
# Argument checks, shared by every vision topic.
# ---------------------------------------------------------------------------------------
def check_images(name: str, x, channels: int | None = None) -> None:
    """Raise unless ``x`` is an NHWC batch ``[batch, height, width, channels]``.

    A last axis that does not match ``channels`` while axis 1 does is reported as what it
    almost always is: a channels-first (NCHW) array.
    """
    checks.array_shape(name, x, ("batch", "height", "width", "channels"), dims=_NHWC)
    if channels is not None and x.shape[-1] != channels:
        hint = ""
        if x.shape[1] == channels:
            hint = (
                "; it looks channels-first (NCHW): move the channel axis last with "
                "jnp.moveaxis(x, 1, -1)"
            )
        raise ValueError(
            f"{name}: expected NHWC {_NHWC} with {channels} channels, got shape "
            f"{tuple(x.shape)}{hint}"
        )


def _pair(name: str, value) -> tuple[int, int]:
    """An int or a pair of ints, each > 0, as ``(rows, columns)``."""
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return checks.positive_int(name, pair[0]), checks.positive_int(name, pair[1])


def _check_window(name: str, window: tuple[int, int], x, what: str) -> None:
    if window[0] > x.shape[1] or window[1] > x.shape[2]:
        raise ValueError(
            f"{name}: a {window[0]}x{window[1]} {what} is larger than the "
            f"{x.shape[1]}x{x.shape[2]} input (height x width)"
        )


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """XLA's "SAME" padding: output ``ceil(size / stride)``, any odd pixel of padding at the end."""
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


# --8<-- [start:core]
def init_conv(
    key: jax.Array, kernel_size: int, c_in: int, c_out: int, *, gain: float = 1.0
) -> Layer:
    """A conv layer: ``kernel [k, k, c_in, c_out] ~ N(0, gain / fan_in)``, zero ``bias [c_out]``.

    ``fan_in = k * k * c_in`` inputs feed each output unit; ``gain=1`` suits tanh (LeCun),
    ``gain=2`` suits ReLU (He et al., 2015).
    """
    fan_in = kernel_size * kernel_size * c_in
    kernel = jax.random.normal(key, (kernel_size, kernel_size, c_in, c_out)) * jnp.sqrt(
        gain / fan_in
    )
    return {"kernel": kernel, "bias": jnp.zeros((c_out,))}


def patches(x: jax.Array, window: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """Every position of a sliding window over an (already padded) ``x``, gathered by index.

    ``[batch, h, w, c] -> [batch, out_h, out_w, kh, kw, c]`` with ``out = (size - k) // s + 1``:
    entry ``[n, i, j, a, b]`` is the pixel ``x[n, s*i + a, s*j + b]`` that window ``(i, j)`` sees.
    """
    (kh, kw), (sh, sw) = window, stride
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    rows = sh * np.arange(oh)[:, None] + np.arange(kh)[None, :]  # [out_h, kh]: s*i + a
    cols = sw * np.arange(ow)[:, None] + np.arange(kw)[None, :]  # [out_w, kw]: s*j + b
    return x[:, rows[:, None, :, None], cols[None, :, None, :], :]  # one gather


def conv2d(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *, stride=1, padding="SAME"
) -> jax.Array:
    """2-D convolution (cross-correlation, as in every deep-learning library) over NHWC images.

    ``y[n, i, j, o] = sum_{a, b, c} x[n, s*i + a, s*j + b, c] * kernel[a, b, c, o] + bias[o]``:
    one kernel, the same at every position — the weight sharing of LeCun et al. (1989).
    Computed as *im2col* (Chellapilla, Puri & Simard, 2006): gather each output pixel's
    ``kh * kw * c_in`` inputs into one row, then one matrix multiply with the flattened kernel.

    Args:
        x: ``[batch, height, width, c_in]``.
        kernel: ``[kh, kw, c_in, c_out]`` (HWIO).
        bias: ``[c_out]`` or ``None``.
        stride: an int or ``(rows, columns)``.
        padding: ``"SAME"`` (zeros, output ``ceil(size / stride)``), ``"VALID"`` (no padding,
            output ``floor((size - k) / stride) + 1``) or ``"CIRCULAR"`` (the image wraps
            around like a torus; output as ``"SAME"``).

    Returns:
        ``[batch, out_height, out_width, c_out]``.
    """
    checks.array_shape(
        "kernel", kernel, ("kh", "kw", "c_in", "c_out"), dims="[kh, kw, c_in, c_out]"
    )
    check_images("x", x, kernel.shape[2])
    checks.one_of("padding", padding, PADDINGS)
    strides = _pair("stride", stride)
    kh, kw, c_in, c_out = kernel.shape
    _check_window("kernel", (kh, kw), x, "kernel")
    if bias is not None:
        checks.array_shape("bias", bias, (c_out,), dims=f"[c_out={c_out}]")
    if padding == "SAME":  # zeros around the border
        pads = [_same_pads(x.shape[1], kh, strides[0]), _same_pads(x.shape[2], kw, strides[1])]
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    # the opposite border's pixels; output i centred on input stride * i
    elif padding == "CIRCULAR":
        x = jnp.pad(
            x, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)], mode="wrap"
        )
    windows = patches(x, (kh, kw), strides)  # [b, out_h, out_w, kh, kw, c_in]
    rows = windows.reshape(*windows.shape[:3], kh * kw * c_in)  # im2col: one row per output pixel
    y = rows @ kernel.reshape(kh * kw * c_in, c_out)  # [b, out_h, out_w, c_out]
    if bias is not None:
        y = y + bias.reshape(1, 1, 1, -1)
    return y


def _pool(x, window, stride, padding, fill: float, reduce) -> jax.Array:
    """Reduce, with ``reduce``, the values under each window (per channel)."""
    check_images("x", x)
    kh, kw = _pair("window", window)
    strides = (kh, kw) if stride is None else _pair("stride", stride)
    checks.one_of("padding", padding, ("SAME", "VALID"))
    _check_window("window", (kh, kw), x, "pooling window")
    if padding == "SAME":
        pads = [_same_pads(x.shape[1], kh, strides[0]), _same_pads(x.shape[2], kw, strides[1])]
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    return reduce(patches(x, (kh, kw), strides), axis=(3, 4))  # [b, out_h, out_w, c]


def max_pool(x: jax.Array, window=2, stride=None, padding="VALID") -> jax.Array:
    """The largest value under each ``window`` (per channel); ``stride=None`` means ``window``.

    ``[batch, h, w, c] -> [batch, h', w', c]``, sizes as in :func:`conv2d`. A stride smaller
    than the window gives the *overlapping* pooling of AlexNet (topic 1.3).
    """
    return _pool(x, window, stride, padding, -jnp.inf, jnp.max)


def avg_pool(x: jax.Array, window=2, stride=None, padding="VALID") -> jax.Array:
    """The mean under each ``window`` (per channel): LeNet's sub-sampling, without its trainable
    scale.

    With ``"SAME"`` padding the zeros count towards the mean, as in ``flax.linen.avg_pool``.
    """
    return _pool(x, window, stride, padding, 0.0, jnp.mean)


# --8<-- [end:core]


# --8<-- [start:lenet]
def init_cnn(
    key: jax.Array,
    image_shape: Sequence[int],
    channels: Sequence[int] = (16, 32),
    hidden: int = 32,
    n_classes: int = 10,
    *,
    kernel_size: int = 3,
) -> dict:
    """Parameters of :func:`cnn` for images ``[height, width, c_in]``: one conv layer per entry
    of ``channels``, then a hidden dense layer and the output layer.

    ``{"convs": [conv, ...], "hidden": dense, "out": dense}``, each layer ``{"kernel", "bias"}``.
    """
    h, w, c_in = image_shape
    keys = jax.random.split(key, len(channels) + 2)
    convs = []
    for k, c_out in zip(keys, channels):
        convs.append(init_conv(k, kernel_size, c_in, c_out))
        c_in, h, w = c_out, h // 2, w // 2  # each block ends in a 2x2 pool
    return {
        "convs": convs,
        "hidden": init_layer(keys[-2], h * w * c_in, hidden),
        "out": init_layer(keys[-1], hidden, n_classes),
    }


def cnn(params: dict, x: jax.Array) -> jax.Array:
    """LeNet-style forward pass: ``conv 3x3 -> tanh -> 2x2 max pool`` per conv layer, then
    flatten, a tanh dense layer and a linear output.

    ``x [batch, h, w, c] -> logits [batch, n_classes]``; each pool halves ``h`` and ``w``.
    """
    for layer in params["convs"]:
        x = jnp.tanh(conv2d(x, layer["kernel"], layer["bias"], padding="SAME"))  # [b, h, w, c_i]
        x = max_pool(x, 2)  # sub-sampling: [b, h/2, w/2, c_i]
    x = x.reshape(x.shape[0], -1)  # [b, h' * w' * c_last]
    x = jnp.tanh(dense(params["hidden"], x))  # [b, hidden]
    return dense(params["out"], x)  # [b, n_classes]


# --8<-- [end:lenet]


def count_params(params) -> int:
    """Number of trainable numbers in a pytree of arrays."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


def _check_config(
    channels: Sequence[int], hidden: int, n_classes: int, kernel_size: int, in_channels: int
) -> None:
    if len(channels) == 0:
        raise ValueError("channels: expected at least one conv layer, got ()")
    for i, c in enumerate(channels):
        checks.positive_int(f"channels[{i}]", c)
    checks.positive_int("hidden", hidden)
    checks.positive_int("n_classes", n_classes)
    checks.positive_int("kernel_size", kernel_size)
    checks.positive_int("in_channels", in_channels)


def _check_geometry(height: int, width: int, n_conv: int, kernel_size: int) -> None:
    """The last conv layer sees ``size / 2**(n_conv - 1)``; the classifier ``size / 2**n_conv``."""
    h, w = height >> (n_conv - 1), width >> (n_conv - 1)
    if kernel_size > min(height, width):
        raise ValueError(
            f"kernel_size: a {kernel_size}x{kernel_size} kernel is larger than the "
            f"{height}x{width} input"
        )
    if h // 2 == 0 or w // 2 == 0 or kernel_size > min(h, w):
        raise ValueError(
            f"channels: {n_conv} conv+pool blocks shrink the {height}x{width} input "
            f"to {h}x{w} before the last conv layer ({kernel_size}x{kernel_size} "
            "kernel, then a 2x2 pool); use fewer blocks"
        )


# --8<-- [start:linen]
class LinenCNN(nn.Module):
    """Functional twin: ``init`` returns ``{"params": {"layers": init_cnn(key, ...)}}`` — the tree
    `cnn` takes.

    ``in_channels`` is stated, not guessed, so a channels-first batch is caught at once; the
    image's height and width are read from ``x`` at ``init``.
    """

    channels: Sequence[int] = (16, 32)
    hidden: int = 32
    n_classes: int = 10
    kernel_size: int = 3
    in_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_config(
            self.channels, self.hidden, self.n_classes, self.kernel_size, self.in_channels
        )
        check_images("x", x, self.in_channels)
        _check_geometry(x.shape[1], x.shape[2], len(self.channels), self.kernel_size)
        image_shape = (x.shape[1], x.shape[2], self.in_channels)
        layers = self.param(
            "layers",
            init_cnn,
            image_shape,
            self.channels,
            self.hidden,
            self.n_classes,
            kernel_size=self.kernel_size,
        )  # {"convs": [{"kernel", "bias"}, ...], "hidden": {...}, "out": {...}}
        return cnn(layers, x)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxCNN(nnx.Module):
    """Object-oriented twin: ``self.layers`` holds the same tree as Linen's ``params["layers"]``,
    as NNX objects (`impl.twins.to_nnx`), updated in place by training.

    ``image_shape = (height, width, in_channels)`` fixes the size of the first dense layer.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (8, 8, 1),
        channels: Sequence[int] = (16, 32),
        hidden: int = 32,
        n_classes: int = 10,
        *,
        kernel_size: int = 3,
        rngs: nnx.Rngs,
    ):
        h, w, c_in = image_shape
        _check_config(channels, hidden, n_classes, kernel_size, c_in)
        _check_geometry(h, w, len(channels), kernel_size)
        self.image_shape = tuple(image_shape)
        self.layers = twins.to_nnx(
            init_cnn(
                rngs.params(), image_shape, channels, hidden, n_classes, kernel_size=kernel_size
            )
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        check_images("x", x, self.image_shape[2])
        checks.array_shape(
            "x",
            x,
            ("batch", *self.image_shape),
            dims=f"[batch, {', '.join(map(str, self.image_shape))}]",
        )
        return cnn(twins.pure(self.layers), x)  # the {"convs", "hidden", "out"} tree `cnn` takes


# --8<-- [end:nnx]
