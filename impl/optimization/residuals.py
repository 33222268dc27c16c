"""2.3 Residuals — deep residual learning: layers that learn a correction to the identity.

He, Zhang, Ren & Sun, *Deep residual learning for image recognition*, CVPR 2016
(arXiv December 2015). https://arxiv.org/abs/1512.03385

The idea: a deeper network should never be worse than a shallower one — the extra layers could
simply copy their input. Yet plain deep networks *train* worse than shallow ones (the
*degradation* problem). So make copying the default: a block computes ``F(x) + x``, and its
layers only have to learn the residual ``F``; driving ``F`` to zero recovers the identity.

Layout: pure functions hold the math — `residual_block` (eq. 1 and 2 of the paper), its plain
counterpart `plain_block`, and `network`, a stack of either kind run with ``lax.scan``;
`LinenResidualBlock` and `NnxResidualBlock` hold the tree `init_block` declares for one block and
call `residual_block`. Later topics import the block from here. The experiment (the degradation
problem on the digits) lives in `impl.optimization.residuals_experiment`.

Shapes: ``x`` is ``float32[..., d_in]`` (any leading axes, e.g. ``[batch, d]`` or
``[batch, seq, d]``); a block maps it to ``[..., d_out]``. Block parameters are
``{"dense_0": layer, "dense_1": layer}`` plus ``"shortcut"`` when ``d_out != d_in``, each layer
``{"kernel": [d_in, d_out], "bias": [d_out]}`` as in topic 1.1.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import dense, init_layer
from impl.optimization.relu import ACTIVATIONS, activation, init_scaled_layer

__all__ = [
    "LinenResidualBlock",
    "NnxResidualBlock",
    "init_block",
    "init_branch_end",
    "init_network",
    "network",
    "plain_block",
    "residual_block",
]

Block = dict[str, dict[str, jax.Array]]


# --8<-- [start:core]
def _branch(params: Block, x: jax.Array, f) -> jax.Array:
    """The residual function of the paper's Fig. 2, ``F(x) = W_2 f(W_1 x)``:
    ``[..., d_in] -> [..., d_out]``."""
    return dense(params["dense_1"], f(dense(params["dense_0"], x)))


def residual_block(params: Block, x: jax.Array, *, activation_name: str = "relu") -> jax.Array:
    """A residual block, ``[..., d_in] -> [..., d_out]``.

    ``y = f(F(x) + x)`` (eq. 1) when the widths agree, or ``y = f(F(x) + x W_s)`` with the
    projection ``params["shortcut"]`` (eq. 2) when they do not; ``f`` follows the addition, as
    in the paper's Fig. 2.
    """
    _check_block(params, x)
    f = activation(activation_name)
    shortcut = dense(params["shortcut"], x) if "shortcut" in params else x  # eq. 2 / eq. 1
    return f(_branch(params, x, f) + shortcut)  # [..., d_out]


def plain_block(params: Block, x: jax.Array, *, activation_name: str = "relu") -> jax.Array:
    """The same two layers with no shortcut, ``y = f(F(x))``: the paper's "plain" counterpart."""
    _check_block(params, x, need_shortcut=False)
    f = activation(activation_name)
    return f(_branch(params, x, f))


def init_branch_end(key: jax.Array, d_out: int, branch_scale: float) -> dict[str, jax.Array]:
    """The branch's last layer ``W_2``: He-initialised, then multiplied by ``branch_scale``."""
    layer = init_scaled_layer(key, d_out, d_out, "he")
    return {"kernel": layer["kernel"] * branch_scale, "bias": layer["bias"]}


def init_block(
    key: jax.Array, d_in: int, d_out: int | None = None, *, branch_scale: float = 0.0
) -> Block:
    """He-initialised block parameters, the branch's last kernel multiplied by ``branch_scale``.

    With the default ``branch_scale=0`` the branch starts at zero, so a residual block starts as
    the identity (for inputs ``>= 0``, which is what a ReLU feeds it). Without batch
    normalisation this keeps a stack of many blocks from multiplying its signal at every block.
    A projection shortcut (eq. 2) is added when ``d_out != d_in``.
    """
    d_in, d_out = _check_widths(d_in, d_out, branch_scale)
    k0, k1, ks = jax.random.split(key, 3)
    params = {
        "dense_0": init_scaled_layer(k0, d_in, d_out, "he"),
        "dense_1": init_branch_end(k1, d_out, branch_scale),
    }
    if d_out != d_in:
        params["shortcut"] = init_layer(ks, d_in, d_out)  # W_s of eq. 2
    return params


# --8<-- [end:core]


# --8<-- [start:network]
def init_network(
    key: jax.Array, d_in: int, width: int, n_blocks: int, n_out: int, *, residual: bool
) -> dict[str, Any]:
    """An input layer, ``n_blocks`` blocks of two layers, an output layer: ``2 n_blocks + 2``
    layers.

    The blocks' parameters are stacked along a leading ``[n_blocks]`` axis for ``lax.scan``.
    Plain blocks use He initialisation throughout; residual blocks start their branch at zero.
    """
    for name, value in (("d_in", d_in), ("width", width), ("n_blocks", n_blocks), ("n_out", n_out)):
        checks.positive_int(name, value)
    k_in, k_blocks, k_out = jax.random.split(key, 3)
    scale = 0.0 if residual else 1.0
    blocks = jax.vmap(lambda k: init_block(k, width, branch_scale=scale))(
        jax.random.split(k_blocks, n_blocks)
    )
    return {
        "input": init_scaled_layer(k_in, d_in, width, "he"),
        "blocks": blocks,  # each leaf [n_blocks, ...]
        "output": init_layer(k_out, width, n_out),
    }


def network(params: dict[str, Any], x: jax.Array, *, residual: bool) -> jax.Array:
    """Logits of the stack: ``[batch, d_in] -> [batch, n_out]``, one ``scan`` step per block."""
    block = residual_block if residual else plain_block
    h = activation("relu")(dense(params["input"], x))  # [batch, width]
    h, _ = jax.lax.scan(lambda h, p: (block(p, h), None), h, params["blocks"])  # [batch, width]
    return dense(params["output"], h)  # [batch, n_out]


# --8<-- [end:network]


def _check_input(x: Any) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x: expected an array of shape [..., d_in], got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of shape [..., d_in], got shape {tuple(x.shape)}")


def _check_widths(
    d_in: int, d_out: int | None, branch_scale: float, out_name: str = "d_out"
) -> tuple[int, int]:
    d_in = checks.positive_int("d_in", d_in)
    d_out = d_in if d_out is None else checks.positive_int(out_name, d_out)
    checks.in_range("branch_scale", branch_scale, 0.0, float("inf"))
    return d_in, d_out


def _check_block(params: Block, x: jax.Array, *, need_shortcut: bool = True) -> None:
    if not isinstance(params, dict) or not {"dense_0", "dense_1"} <= params.keys():
        raise ValueError(
            "params: expected a block {'dense_0': ..., 'dense_1': ...} (optionally 'shortcut')"
        )
    _check_input(x)
    d_in, d_out = params["dense_0"]["kernel"].shape
    if x.shape[-1] != d_in:
        raise ValueError(
            f"x: expected last axis of size {d_in} (the block's d_in), got shape {tuple(x.shape)}"
        )
    if params["dense_1"]["kernel"].shape != (d_out, d_out):
        raise ValueError(
            f"params: expected dense_1 kernel of shape ({d_out}, {d_out}), got "
            f"{params['dense_1']['kernel'].shape}"
        )
    if need_shortcut and d_in != d_out and "shortcut" not in params:
        raise ValueError(
            f"params: the block maps {d_in} -> {d_out} features, so the identity shortcut (eq. 1) "
            "cannot be added; give a 'shortcut' projection (eq. 2)"
        )


# --8<-- [start:linen]
class LinenResidualBlock(nn.Module):
    """Functional twin of one block. ``features`` = ``d_out`` (default: the input's width).

    Parameters: ``{"params": {"block": init_block(key, ...)}}``, that is
    ``{"dense_0", "dense_1"[, "shortcut"]}``, each ``{"kernel", "bias"}`` — the tree
    `residual_block` takes.
    """

    features: int | None = None
    activation: str = "relu"
    branch_scale: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x)
        d_in, d_out = _check_widths(x.shape[-1], self.features, self.branch_scale, "features")
        checks.one_of("activation", self.activation, ACTIVATIONS)
        block = self.param("block", init_block, d_in, d_out, branch_scale=self.branch_scale)
        return residual_block(block, x, activation_name=self.activation)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxResidualBlock(nnx.Module):
    """Object-oriented twin of one block: ``self.block`` holds the tree `init_block` declares, as
    NNX objects."""

    def __init__(
        self,
        d_in: int,
        d_out: int | None = None,
        *,
        activation: str = "relu",
        branch_scale: float = 0.0,
        rngs: nnx.Rngs,
    ):
        checks.one_of("activation", activation, ACTIVATIONS)
        self.activation = activation
        self.block = twins.to_nnx(init_block(rngs.params(), d_in, d_out, branch_scale=branch_scale))

    def __call__(self, x: jax.Array) -> jax.Array:
        # {"dense_0", "dense_1"[, "shortcut"]}, as `residual_block` takes
        block = twins.pure(self.block)
        return residual_block(block, x, activation_name=self.activation)


# --8<-- [end:nnx]
