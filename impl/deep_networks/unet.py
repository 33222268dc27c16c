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
1,024; a sigmoid per pixel for one foreground class instead of a softmax with a weighted loss
(eq. 1-2).

Convolution and max-pooling come from :mod:`impl.deep_networks.cnn`, ReLU from
:mod:`impl.optimization.relu`.

Reusable blocks: :func:`conv_block` (conv-ReLU, twice), :func:`down_path` (which returns the
skip tensors) and :func:`up_path` (which takes them, explicitly), with their ``init_*``
functions, are what later U-Nets — diffusion's denoiser (topic 5.3), ControlNet (5.4) — import.
:func:`unet` is built from them.

Layout: pure functions hold the math; `LinenUNet` and `NnxUNet` hold the tree that `init_unet`
declares and call the same `unet`. The experiment (shapes, with vs without skips, optimizer,
figure) lives in `impl.deep_networks.unet_experiment`.

Shapes: images ``float32[batch, height, width, in_channels]`` (NHWC), ``height`` and ``width``
divisible by ``2**depth``; logits ``float32[batch, height, width, out_channels]``. Parameters:
``{"down": [block per level], "bottom": block, "up": [{"up": up-conv, "convs": block} per level,
deepest first], "out": 1x1 conv}``, a block being two conv layers ``[{"kernel", "bias"}, {...}]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.cnn import check_images, conv2d, init_conv, max_pool
from impl.optimization.relu import relu

__all__ = [
    "LinenUNet",
    "NnxUNet",
    "binary_cross_entropy",
    "check_unet_input",
    "conv_block",
    "down_path",
    "init_conv_block",
    "init_down_path",
    "init_unet",
    "init_up_conv",
    "init_up_path",
    "iou",
    "unet",
    "up_conv",
    "up_path",
]

Layer = dict[str, jax.Array]  # {"kernel": [k, k, c_in, c_out], "bias": [c_out]}
Block = list[Layer]  # two 3x3 conv layers


# --8<-- [start:blocks]
def init_conv_block(keys: jax.Array, c_in: int, c_out: int) -> Block:
    """Two 3x3 conv layers, ``c_in -> c_out -> c_out``, He-initialised (``gain=2``, for ReLU).

    ``keys``: ``[2]`` PRNG keys, one per conv (e.g. ``jax.random.split(key)``).
    """
    _check_keys(keys, 2)
    return [
        init_conv(keys[0], 3, c_in, c_out, gain=2.0),
        init_conv(keys[1], 3, c_out, c_out, gain=2.0),
    ]


def conv_block(params: Block, x: jax.Array) -> jax.Array:
    """conv 3x3 -> ReLU -> conv 3x3 -> ReLU, "SAME" padding:
    ``[b, h, w, c_in] -> [b, h, w, c_out]``."""
    x = relu(conv2d(x, **params[0]))  # [b, h, w, c_out]
    return relu(conv2d(x, **params[1]))  # [b, h, w, c_out]


def init_down_path(keys: jax.Array, in_channels: int, widths: Sequence[int]) -> list[Block]:
    """The contracting path: one :func:`init_conv_block` per level, ``widths[level]`` channels out.

    ``keys``: ``[2 * len(widths)]`` PRNG keys, two per level.
    """
    _check_keys(keys, 2 * len(widths))
    blocks, c_in = [], in_channels
    for level, c in enumerate(widths):
        blocks.append(init_conv_block(keys[2 * level : 2 * level + 2], c_in, c))
        c_in = c
    return blocks


def down_path(params: Sequence[Block], x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """The contracting path: at each level a :func:`conv_block`, then a 2x2 max-pool.

    ``x [b, H, W, c_in] -> (h, skips)``: ``h [b, H / 2**depth, W / 2**depth, widths[-1]]`` is
    what the bottleneck sees; ``skips`` holds each level's block output before pooling,
    ``[b, H / 2**level, W / 2**level, widths[level]]``, finest first — one per level.
    """
    skips = []
    for block in params:
        x = conv_block(block, x)  # [b, H / 2**level, W / 2**level, widths[level]]
        skips.append(x)  # the fine features the expanding path will copy
        x = max_pool(x, 2)  # halve the resolution
    return x, skips


def init_up_conv(key: jax.Array, c_in: int, c_out: int) -> Layer:
    """A 2x2 up-convolution: ``kernel [2, 2, c_in, c_out] ~ N(0, 2 / c_in)``, zero
    ``bias [c_out]``."""
    return {
        "kernel": jax.random.normal(key, (2, 2, c_in, c_out)) * jnp.sqrt(2.0 / c_in),
        "bias": jnp.zeros((c_out,)),
    }


def up_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """The paper's "up-convolution" (a stride-2 transposed convolution with a 2x2 kernel): every
    input pixel paints a 2x2 block of the output,
    ``y[2i + a, 2j + b] = x[i, j] @ kernel[a, b] + bias``.

    ``x [batch, h, w, c_in] -> [batch, 2h, 2w, c_out]``; ``kernel [2, 2, c_in, c_out]``.
    """
    b, h, w, _ = x.shape
    blocks = jnp.einsum("nhwc,abco->nhawbo", x, kernel)  # [batch, h, 2, w, 2, c_out]
    return blocks.reshape(b, 2 * h, 2 * w, -1) + bias.reshape(1, 1, 1, -1)


def init_up_path(
    keys: jax.Array, widths: Sequence[int], in_channels: int, *, skips: bool = True
) -> list[dict]:
    """The expanding path, deepest level first: per level an up-convolution to ``widths[level]``
    channels and a :func:`init_conv_block` — whose first conv takes ``2 * widths[level]``
    channels with ``skips`` (the skipped ``widths[level]`` + the up-sampled ``widths[level]``),
    ``widths[level]`` without.

    ``widths`` are the contracting path's, finest first; ``in_channels`` is the bottleneck's.
    ``keys``: ``[3 * len(widths)]`` PRNG keys, three per level (up-conv, conv, conv).
    Returns ``[{"up": up-conv, "convs": block}, ...]``, deepest first.
    """
    _check_keys(keys, 3 * len(widths))
    stages, c_in = [], in_channels
    for j, c in enumerate(reversed(widths)):
        up = init_up_conv(keys[3 * j], c_in, c)  # [2, 2, c_in, c]
        stages.append(
            {
                "up": up,
                "convs": init_conv_block(keys[3 * j + 1 : 3 * j + 3], 2 * c if skips else c, c),
            }
        )
        c_in = c
    return stages


def up_path(params: Sequence[dict], h: jax.Array, skips: Sequence[jax.Array] | None) -> jax.Array:
    """The expanding path: at each level (deepest first) :func:`up_conv` doubles the resolution,
    the skip tensor of that level is concatenated in front of the channels, and a
    :func:`conv_block` follows.

    ``h [b, H / 2**depth, W / 2**depth, c]`` -> ``[b, H, W, widths[0]]``. ``skips`` is what
    :func:`down_path` returned (finest first, one per level), or ``None`` for a U-Net without
    skip connections; level ``j`` of ``params`` (deepest first) takes ``skips[-1 - j]``.
    """
    if skips is not None and len(skips) != len(params):
        raise ValueError(f"skips: expected one tensor per level ({len(params)}), got {len(skips)}")
    for j, stage in enumerate(params):
        h = up_conv(h, **stage["up"])  # double the resolution: [b, 2h, 2w, widths[level]]
        if skips is not None:
            _check_skip(j, skips[-1 - j], h, stage["convs"])
            h = jnp.concatenate([skips[-1 - j], h], axis=-1)  # the skip: copy the fine features
        h = conv_block(stage["convs"], h)  # [b, 2h, 2w, widths[level]]
    return h


# --8<-- [end:blocks]


# --8<-- [start:core]
def init_unet(
    key: jax.Array,
    in_channels: int = 3,
    out_channels: int = 1,
    *,
    base: int = 8,
    depth: int = 2,
    skips: bool = True,
) -> dict:
    """Parameters of :func:`unet`: ``base * 2**level`` channels at each level of the "U".

    ``{"down": init_down_path(...), "bottom": init_conv_block(...), "up": init_up_path(...),
    "out": 1x1 conv}``. Without ``skips`` the expanding path's first convs see only the
    up-sampled channels.
    """
    widths = [base * 2**level for level in range(depth)]  # the contracting path's, finest first
    bottom = base * 2**depth
    # only 5 * depth + 3 are used; the split is kept as first written
    keys = jax.random.split(key, 6 * depth + 3)
    return {
        "down": init_down_path(keys[: 2 * depth], in_channels, widths),
        "bottom": init_conv_block(keys[2 * depth : 2 * depth + 2], widths[-1], bottom),
        "up": init_up_path(keys[2 * depth + 2 : 5 * depth + 2], widths, bottom, skips=skips),
        "out": init_conv(keys[5 * depth + 2], 1, base, out_channels),
    }


def unet(params: dict, x: jax.Array, *, skips: bool = True) -> jax.Array:
    """Forward pass, ``x [batch, h, w, c_in] -> logits [batch, h, w, c_out]``.

    ``skips`` says whether the expanding path receives the contracting path's features; it
    must match the ``skips`` the parameters were made with (their first expanding convs expect
    twice the channels with skips).
    """
    check_unet_input(x, params["down"][0][0]["kernel"].shape[2], len(params["down"]))
    h, features = down_path(params["down"], x)  # features: one per level, finest first
    h = conv_block(params["bottom"], h)  # [b, H / 2**depth, W / 2**depth, base * 2**depth]
    h = up_path(params["up"], h, features if skips else None)  # [b, H, W, base]
    return conv2d(h, **params["out"])  # 1x1 conv: a logit per pixel and class


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean per-pixel ``-[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]``, computed stably."""
    return jnp.mean(jax.nn.softplus(logits) - targets * logits)


def iou(logits: jax.Array, masks: jax.Array) -> jax.Array:
    """Intersection over union of ``logits > 0`` with ``masks``, per image, averaged:
    ``[b, h, w, 1] -> []``."""
    predicted = logits > 0
    truth = masks > 0.5
    inter = jnp.sum(predicted & truth, axis=(1, 2, 3))
    union = jnp.sum(predicted | truth, axis=(1, 2, 3))
    return jnp.mean(inter / jnp.maximum(union, 1))


# --8<-- [end:core]


def _check_keys(keys, n: int) -> None:
    """``keys`` must hold ``n`` PRNG keys: typed ``key<impl>[n]`` or raw ``uint32[n, 2]``."""
    shape = tuple(getattr(keys, "shape", ()))
    typed = hasattr(keys, "dtype") and jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    count = (
        shape[0]
        if (typed and len(shape) == 1) or (not typed and len(shape) == 2 and shape[1] == 2)
        else None
    )
    if count != n:
        single = (typed and shape == ()) or (not typed and shape == (2,))
        got = "a single key" if single else f"shape {shape}"
        raise ValueError(
            f"keys: expected {n} PRNG keys (e.g. jax.random.split(key, {n})), got {got}"
        )


def _check_skip(j: int, skip, h, block: Block) -> None:
    """The skip tensor of expanding level ``j`` must match ``h`` in size, and the two together the
    block's input."""
    expected = block[0]["kernel"].shape[2]
    if skip.shape[:3] != h.shape[:3] or skip.shape[-1] + h.shape[-1] != expected:
        raise ValueError(
            f"skips[{-1 - j}]: expected [batch, height, width] = {list(h.shape[:3])} "
            f"and {expected - h.shape[-1]} channels (the level's first conv takes "
            f"{expected} = skipped + {h.shape[-1]} up-sampled), got shape "
            f"{tuple(skip.shape)}; were the parameters made with skips=False?"
        )


def check_unet_input(x, in_channels: int, depth: int) -> None:
    """NHWC with ``in_channels`` channels, a size that ``depth`` 2x2 pools divide evenly, and a
    bottleneck of at least 3x3 pixels (the size of its kernels)."""
    check_images("x", x, in_channels)
    factor = 2**depth
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"x: height and width must be divisible by 2**depth = {factor} (depth={depth} "
            f"pools halve them), got {x.shape[1]}x{x.shape[2]}; pad or crop the image"
        )
    if min(x.shape[1], x.shape[2]) // factor < 3:
        raise ValueError(
            f"x: a {x.shape[1]}x{x.shape[2]} image pooled {depth} times leaves a bottleneck "
            "smaller than its 3x3 "
            f"kernels; use images of at least {3 * factor}x{3 * factor} or a smaller depth"
        )


def _check_config(in_channels: int, out_channels: int, base: int, depth: int) -> None:
    checks.positive_int("in_channels", in_channels)
    checks.positive_int("out_channels", out_channels)
    checks.positive_int("base", base)
    checks.positive_int("depth", depth)


# --8<-- [start:linen]
class LinenUNet(nn.Module):
    """Functional twin: ``init`` returns ``{"params": {"layers": init_unet(key, ...)}}`` — the tree
    `unet` takes."""

    in_channels: int = 3
    out_channels: int = 1
    base: int = 8
    depth: int = 2
    skips: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_config(self.in_channels, self.out_channels, self.base, self.depth)
        check_unet_input(x, self.in_channels, self.depth)
        layers = self.param(
            "layers",
            init_unet,
            self.in_channels,
            self.out_channels,
            base=self.base,
            depth=self.depth,
            skips=self.skips,
        )  # {"down": [...], "bottom": [...], "up": [...], "out": {...}}
        return unet(layers, x, skips=self.skips)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxUNet(nnx.Module):
    """Object-oriented twin: ``self.layers`` holds the same tree as Linen's ``params["layers"]``,
    as NNX objects (`impl.twins.to_nnx`)."""

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
        self.in_channels, self.depth, self.skips = in_channels, depth, skips
        self.layers = twins.to_nnx(
            init_unet(rngs.params(), in_channels, out_channels, base=base, depth=depth, skips=skips)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        check_unet_input(x, self.in_channels, self.depth)
        # the {"down", "bottom", "up", "out"} tree
        return unet(twins.pure(self.layers), x, skips=self.skips)


# --8<-- [end:nnx]
