"""1.1 DNN — a multi-layer perceptron trained by back-propagating errors.

Rumelhart, Hinton & Williams, *Learning representations by back-propagating errors*,
Nature 323, 533–536 (1986). https://doi.org/10.1038/323533a0
Also: *Learning internal representations by error propagation*, in *Parallel Distributed
Processing*, vol. 1, ch. 8 (1986).

The idea: a network of layers of adaptive weights, with "hidden" units between input and
output, can learn *internal representations* if each weight is nudged against the gradient of
the error — and that gradient is computed for every layer by running the chain rule backwards,
layer by layer. Here the chain rule is written out by hand (`backprop`) next to the
same network differentiated by ``jax.grad``; the tests prove the two agree.

Layout: pure functions hold the math; `LinenMLP` (functional, ``init``/``apply``) and
`NnxMLP` (object-oriented) hold the tree that `init_mlp` declares and call the same functions.
The experiment (toy tasks, optimizer, figure) lives in `impl.deep_networks.dnn_experiment`.

Shapes: ``x`` is ``float32[batch, d_in]``; logits ``float32[batch, n_classes]``; labels
``int32[batch]``. Parameters are a list of layers, each
``{"kernel": [d_in, d_out], "bias": [d_out]}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins

__all__ = [
    "ACTIVATIONS",
    "LinenMLP",
    "NnxMLP",
    "accuracy",
    "backprop",
    "cross_entropy",
    "dense",
    "init_layer",
    "init_mlp",
    "max_relative_difference",
    "mlp",
]

Layer = dict[str, jax.Array]


# --8<-- [start:core]
def _sigmoid_grad(z):
    s = jax.nn.sigmoid(z)
    return s * (1.0 - s)  # y (1 - y): the derivative used in eq. 5


# name -> (f, f'), each derivative written by hand for backprop.
ACTIVATIONS = {
    "sigmoid": (jax.nn.sigmoid, _sigmoid_grad),  # eq. 2: y = 1 / (1 + exp(-x))
    "tanh": (jnp.tanh, lambda z: 1.0 - jnp.tanh(z) ** 2),
}


def init_layer(key: jax.Array, d_in: int, d_out: int) -> Layer:
    """One dense layer: weights ~ N(0, 1/d_in) (LeCun scaling), zero bias."""
    kernel = jax.random.normal(key, (d_in, d_out)) / jnp.sqrt(d_in)
    return {"kernel": kernel, "bias": jnp.zeros((d_out,))}


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[Layer]:
    """Layers for ``sizes = [d_in, hidden..., n_out]``; ``[d_in, n_out]`` is a linear model."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [init_layer(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def dense(layer: Layer, x: jax.Array) -> jax.Array:
    """Total input to each unit, eq. 1: ``x_j = sum_i y_i w_ji`` (+ bias).
    ``[b, d_in] -> [b, d_out]``."""
    y = x @ layer["kernel"]
    return y + layer["bias"].reshape((1,) * (y.ndim - 1) + (-1,))  # explicit broadcast over batch


def mlp(params: Sequence[Layer], x: jax.Array, activation: str = "tanh") -> jax.Array:
    """Forward pass: dense layers with ``activation`` between them, linear output (logits)."""
    f, _ = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = f(dense(layer, x))  # [batch, d_hidden]
    return dense(params[-1], x)  # [batch, n_classes]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy. ``logits [b, c]``, ``labels int[b]`` -> scalar."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


# --8<-- [end:core]


# --8<-- [start:backprop]
def backprop(
    params: Sequence[Layer], x: jax.Array, labels: jax.Array, activation: str = "tanh"
) -> tuple[jax.Array, list[Layer]]:
    """Loss and its gradient for every weight, by the chain rule written out layer by layer.

    The paper's notation: ``x_j`` is a unit's total input, ``y_j`` its output; ``dE/dx_j`` is
    called ``delta`` below. Returns ``(loss, grads)`` with ``grads`` shaped like ``params``.
    """
    f, df = ACTIVATIONS[activation]
    # Forward pass, remembering each layer's input y and total input x.
    inputs, totals = [], []
    y = x
    for i, layer in enumerate(params):
        inputs.append(y)  # [batch, d_in of layer i]
        total = dense(layer, y)  # eq. 1, [batch, d_out of layer i]
        totals.append(total)
        y = f(total) if i < len(params) - 1 else total
    loss = cross_entropy(y, labels)

    # Backward pass. For softmax + cross-entropy, dE/dx at the output is (p - onehot) / batch.
    batch = x.shape[0]
    delta = (jax.nn.softmax(y) - jax.nn.one_hot(labels, y.shape[-1])) / batch  # [batch, n_out]
    grads: list[Layer] = [{} for _ in params]
    for i in reversed(range(len(params))):
        # eq. 6: dE/dw_ji = dE/dx_j * y_i, summed over the batch -> [d_in, d_out]
        grads[i] = {"kernel": inputs[i].T @ delta, "bias": delta.sum(axis=0)}
        if i > 0:
            dE_dy = delta @ params[i]["kernel"].T  # eq. 7: dE/dy_i = sum_j dE/dx_j w_ji
            delta = dE_dy * df(totals[i - 1])  # eq. 5: dE/dx = dE/dy * f'(x)
    return loss, grads


# --8<-- [end:backprop]


def _check_input(x: jax.Array, d_in: int | None = None) -> None:
    checks.array_shape(
        "x", x, ("batch", d_in if d_in is not None else "d_in"), dims="[batch, d_in]"
    )


def _check_sizes(sizes: Sequence[int], activation: str) -> None:
    if len(sizes) < 2:
        raise ValueError(
            f"sizes: expected [d_in, ..., n_out] with at least two entries, got {list(sizes)}"
        )
    for i, s in enumerate(sizes):
        checks.positive_int(f"sizes[{i}]", s)
    checks.one_of("activation", activation, ACTIVATIONS)


# --8<-- [start:linen]
class LinenMLP(nn.Module):
    """Functional twin: parameters live outside, in the dict that ``init`` returns.

    ``features = [hidden..., n_out]``; the input size is read from ``x`` at ``init``.
    Parameters: ``{"params": {"layers": init_mlp(key, sizes)}}`` — the tree `mlp` takes.
    """

    features: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x)
        sizes = [x.shape[-1], *self.features]
        _check_sizes(sizes, self.activation)
        # [{"kernel": [d_in, d_out], "bias": [d_out]}, ...]
        layers = self.param("layers", init_mlp, sizes)
        return mlp(layers, x, self.activation)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxMLP(nnx.Module):
    """Object-oriented twin: the module *is* its parameters, mutated in place by training.

    ``sizes = [d_in, hidden..., n_out]``. ``self.layers`` holds the same tree as Linen's
    ``params["layers"]``, as NNX objects (`impl.twins.to_nnx`).
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "tanh", rngs: nnx.Rngs):
        _check_sizes(sizes, activation)
        self.activation = activation
        self.layers = twins.to_nnx(init_mlp(rngs.params(), sizes))

    def __call__(self, x: jax.Array) -> jax.Array:
        layers = twins.pure(self.layers)  # the list of {"kernel", "bias"} dicts `mlp` takes
        _check_input(x, layers[0]["kernel"].shape[0])
        return mlp(layers, x, self.activation)


# --8<-- [end:nnx]


def max_relative_difference(a, b) -> float:
    """``max |a - b| / max(|b|, tiny)`` over every leaf of two pytrees of the same structure."""
    diffs = jax.tree.map(
        lambda u, v: jnp.max(jnp.abs(u - v)) / jnp.maximum(jnp.max(jnp.abs(v)), 1e-12), a, b
    )
    return float(max(jax.tree.leaves(diffs)))
