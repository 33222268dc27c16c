"""2.2 ReLU — rectified linear units: gradients that survive depth, activations that are sparse.

Nair & Hinton, *Rectified linear units improve restricted Boltzmann machines*, ICML 2010.
https://www.cs.toronto.edu/~hinton/absps/reluICML.pdf
Glorot, Bordes & Bengio, *Deep sparse rectifier neural networks*, AISTATS 2011.
https://proceedings.mlr.press/v15/glorot11a.html

The idea: replace the saturating sigmoid or tanh by ``max(0, x)``. Its derivative is exactly 1
wherever a unit is on, so a gradient passing back through many layers is not multiplied by a
factor below one at every layer, as it is with a sigmoid (whose slope is at most 1/4); and a
unit that is off outputs an exact zero, so the representation is sparse.

Layout: pure functions hold the math (the activations, a deep stack of dense layers, its
per-layer gradient norms and its sparsity); `LinenDeepMLP` and `NnxDeepMLP` hold the tree that
`init_deep_mlp` declares and call the same functions. `digits_standardized` prepares the digits
that this topic's experiment and topic 2.3's train on. The experiment (three 20-layer stacks,
their gradients, training and sparsity) lives in `impl.optimization.relu_experiment`.

Shapes: ``x`` is ``float32[batch, d_in]``; logits ``float32[batch, n_classes]``; labels
``int32[batch]``. Parameters are a list of ``depth + 1`` layers (``depth`` hidden, one output),
each ``{"kernel": [d_in, d_out], "bias": [d_out]}`` as in topic 1.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, data, twins
from impl.deep_networks.dnn import cross_entropy, dense, init_layer

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "LinenDeepMLP",
    "NnxDeepMLP",
    "activation",
    "deep_mlp",
    "digits_standardized",
    "hidden_activations",
    "init_deep_mlp",
    "init_scaled_layer",
    "layer_gradient_norms",
    "leaky_relu",
    "relu",
    "softplus",
    "sparsity",
]

Layer = dict[str, jax.Array]


# --8<-- [start:core]
def relu(x: jax.Array) -> jax.Array:
    """Rectified linear unit, ``max(0, x)``, elementwise; any shape.

    Written with ``where`` so that the derivative at exactly 0 is 0, as in ``jax.nn.relu``.
    """
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``x`` for ``x >= 0``, ``negative_slope * x`` below: never exactly flat, never dead."""
    return jnp.where(x >= 0, x, negative_slope * x)


def softplus(x: jax.Array) -> jax.Array:
    """``log(1 + e^x)``, the smooth rectifier (Nair & Hinton's approximation to summed sigmoids)."""
    return jnp.logaddexp(x, jnp.zeros_like(x))


# name -> elementwise function; sigmoid and tanh are the saturating units ReLU replaced.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "softplus": softplus,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Look an activation up by name; an unknown name raises ``ValueError`` naming
    ``activation``."""
    checks.one_of("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


def sparsity(h: jax.Array) -> jax.Array:
    """Fraction of entries that are exactly zero (a scalar in [0, 1]); any shape."""
    return jnp.mean(h == 0)


# --8<-- [end:core]


# --8<-- [start:stack]
# Weight scale of each scheme, as a gain on LeCun's N(0, 1/d_in) of topic 1.1.
INITS: dict[str, Callable[[int, int], float]] = {
    "lecun": lambda d_in, d_out: 1.0,  # Var w = 1 / d_in
    # Var w = 2 / (d_in + d_out)
    "glorot": lambda d_in, d_out: (2.0 * d_in / (d_in + d_out)) ** 0.5,
    # Var w = 2 / d_in: makes up for ReLU zeroing half its inputs
    "he": lambda d_in, d_out: 2.0**0.5,
}


def init_scaled_layer(key: jax.Array, d_in: int, d_out: int, init_scheme: str = "lecun") -> Layer:
    """One dense layer from topic 1.1's ``init_layer``, its kernel rescaled to the
    ``init_scheme``."""
    checks.one_of("init_scheme", init_scheme, INITS)
    layer = init_layer(key, d_in, d_out)
    return {"kernel": layer["kernel"] * INITS[init_scheme](d_in, d_out), "bias": layer["bias"]}


def init_deep_mlp(
    key: jax.Array, d_in: int, width: int, depth: int, n_out: int, *, init_scheme: str
) -> list[Layer]:
    """``depth`` hidden layers of ``width`` units and a linear output: ``depth + 1`` layers."""
    _check_stack(d_in, width, depth, n_out, init_scheme=init_scheme)
    sizes = [d_in] + [width] * depth + [n_out]
    keys = jax.random.split(key, depth + 1)
    return [init_scaled_layer(k, a, b, init_scheme) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def hidden_activations(
    params: Sequence[Layer], x: jax.Array, activation_name: str
) -> list[jax.Array]:
    """Every hidden layer's output ``h_l = f(h_{l-1} W_l + b_l)``: a list of ``depth``
    ``[batch, width]``."""
    if not params:
        raise ValueError("params: expected a non-empty list of layers")
    _check_input(x, params[0]["kernel"].shape[0])
    f = activation(activation_name)
    hs = []
    for layer in params[:-1]:
        x = f(dense(layer, x))  # [batch, width]
        hs.append(x)
    return hs


def deep_mlp(params: Sequence[Layer], x: jax.Array, activation_name: str) -> jax.Array:
    """Forward pass of the deep stack: ``[batch, d_in] -> [batch, n_out]`` logits."""
    hs = hidden_activations(params, x, activation_name)
    return dense(params[-1], hs[-1] if hs else x)  # [batch, n_out]


def layer_gradient_norms(
    params: Sequence[Layer], x: jax.Array, labels: jax.Array, activation_name: str
) -> jax.Array:
    """``||dE/dW_l||`` (Frobenius) for every layer, input first: ``float32[depth + 1]``.

    The back-propagated signal is multiplied at each layer by ``f'(total input)`` and by
    ``W^T`` (topic 1.1, eq. 5 and 7); when the product of these factors stays below one the
    norms shrink geometrically toward the input — the vanishing gradient.
    """
    grads = jax.grad(lambda p: cross_entropy(deep_mlp(p, x, activation_name), labels))(list(params))
    return jnp.stack([jnp.linalg.norm(g["kernel"]) for g in grads])


# --8<-- [end:stack]


def _check_stack(
    d_in: int, width: int, depth: int, n_out: int, *, init_scheme: str | None = None
) -> None:
    checks.positive_int("d_in", d_in)
    checks.positive_int("width", width)
    checks.positive_int("depth", depth)
    checks.positive_int("n_out", n_out)
    if init_scheme is not None:
        checks.one_of("init_scheme", init_scheme, INITS)


def _check_input(x: jax.Array, d_in: int | None = None) -> None:
    checks.array_shape(
        "x", x, ("batch", d_in if d_in is not None else "d_in"), dims="[batch, d_in]"
    )


# --8<-- [start:linen]
class LinenDeepMLP(nn.Module):
    """Functional twin: ``depth`` hidden layers of ``width`` units, then ``n_out`` logits.

    Parameters: ``{"params": {"layers": init_deep_mlp(key, ...)}}`` — the list of
    ``depth + 1`` ``{"kernel", "bias"}`` layers that `deep_mlp` takes.
    """

    width: int
    depth: int
    n_out: int
    activation: str = "relu"
    init_scheme: str = "he"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x)
        _check_stack(x.shape[-1], self.width, self.depth, self.n_out, init_scheme=self.init_scheme)
        checks.one_of("activation", self.activation, ACTIVATIONS)
        layers = self.param(
            "layers",
            init_deep_mlp,
            x.shape[-1],
            self.width,
            self.depth,
            self.n_out,
            init_scheme=self.init_scheme,
        )  # [{"kernel": [d_in, d_out], "bias": [d_out]}, ...]
        return deep_mlp(layers, x, self.activation)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxDeepMLP(nnx.Module):
    """Object-oriented twin: ``self.layers`` holds the tree `init_deep_mlp` declares, as NNX
    objects."""

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        n_out: int,
        *,
        activation: str = "relu",
        init_scheme: str = "he",
        rngs: nnx.Rngs,
    ):
        _check_stack(d_in, width, depth, n_out, init_scheme=init_scheme)
        checks.one_of("activation", activation, ACTIVATIONS)
        self.activation = activation
        self.layers = twins.to_nnx(
            init_deep_mlp(rngs.params(), d_in, width, depth, n_out, init_scheme=init_scheme)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        layers = twins.pure(self.layers)  # the list of {"kernel", "bias"} dicts `deep_mlp` takes
        _check_input(x, layers[0]["kernel"].shape[0])
        return deep_mlp(layers, x, self.activation)


# --8<-- [end:nnx]


# --8<-- [start:data]
def digits_standardized() -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The digits as ``[n, 64]`` vectors, centred per pixel and scaled to unit overall variance.

    The training set's statistics standardise both splits. Returns
    ``(x_train [n_train, 64], y_train int[n_train], x_test [n_test, 64], y_test int[n_test])``.
    """
    d = data.load_digits()
    mean, std = d.x_train.mean(axis=0, keepdims=True), d.x_train.std()
    return (
        jnp.asarray((d.x_train - mean) / std),
        jnp.asarray(d.y_train),
        jnp.asarray((d.x_test - mean) / std),
        jnp.asarray(d.y_test),
    )


# --8<-- [end:data]
