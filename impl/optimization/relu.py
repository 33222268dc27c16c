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
per-layer gradient norms and its sparsity); `LinenDeepMLP` and `NnxDeepMLP` hold
the parameters of the same stack and call the same functions.

Shapes: ``x`` is ``float32[batch, d_in]``; logits ``float32[batch, n_classes]``; labels
``int32[batch]``. Parameters are a list of ``depth + 1`` layers (``depth`` hidden, one output),
each ``{"kernel": [d_in, d_out], "bias": [d_out]}`` as in topic 1.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, data, plotting
from impl.deep_networks.dnn import NnxLayer, accuracy, cross_entropy, dense, init_layer
from impl.optimization.adam import sgd
from impl.report import Report
from impl.training import train

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "LinenDeepMLP",
    "NnxDeepMLP",
    "activation",
    "deep_mlp",
    "experiment",
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
    """Look an activation up by name; an unknown name raises ``ValueError`` naming ``activation``."""
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
    "glorot": lambda d_in, d_out: (2.0 * d_in / (d_in + d_out)) ** 0.5,  # Var w = 2 / (d_in + d_out)
    "he": lambda d_in, d_out: 2.0**0.5,  # Var w = 2 / d_in: makes up for ReLU zeroing half its inputs
}


def init_scaled_layer(key: jax.Array, d_in: int, d_out: int, init_scheme: str = "lecun") -> Layer:
    """One dense layer from topic 1.1's ``init_layer``, its kernel rescaled to the ``init_scheme``."""
    checks.one_of("init_scheme", init_scheme, INITS)
    layer = init_layer(key, d_in, d_out)
    return {"kernel": layer["kernel"] * INITS[init_scheme](d_in, d_out), "bias": layer["bias"]}


def init_deep_mlp(key: jax.Array, d_in: int, width: int, depth: int, n_out: int, *, init_scheme: str) -> list[Layer]:
    """``depth`` hidden layers of ``width`` units and a linear output: ``depth + 1`` layers."""
    _check_stack(d_in, width, depth, n_out, init_scheme=init_scheme)
    sizes = [d_in] + [width] * depth + [n_out]
    keys = jax.random.split(key, depth + 1)
    return [init_scaled_layer(k, a, b, init_scheme) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def hidden_activations(params: Sequence[Layer], x: jax.Array, activation_name: str) -> list[jax.Array]:
    """Every hidden layer's output ``h_l = f(h_{l-1} W_l + b_l)``: a list of ``depth`` ``[batch, width]``."""
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


def layer_gradient_norms(params: Sequence[Layer], x: jax.Array, labels: jax.Array, activation_name: str) -> jax.Array:
    """``||dE/dW_l||`` (Frobenius) for every layer, input first: ``float32[depth + 1]``.

    The back-propagated signal is multiplied at each layer by ``f'(total input)`` and by
    ``W^T`` (topic 1.1, eq. 5 and 7); when the product of these factors stays below one the
    norms shrink geometrically toward the input — the vanishing gradient.
    """
    grads = jax.grad(lambda p: cross_entropy(deep_mlp(p, x, activation_name), labels))(list(params))
    return jnp.stack([jnp.linalg.norm(g["kernel"]) for g in grads])


# --8<-- [end:stack]


def _check_stack(d_in: int, width: int, depth: int, n_out: int, *, init_scheme: str | None = None) -> None:
    checks.positive_int("d_in", d_in)
    checks.positive_int("width", width)
    checks.positive_int("depth", depth)
    checks.positive_int("n_out", n_out)
    if init_scheme is not None:
        checks.one_of("init_scheme", init_scheme, INITS)


def _check_input(x: jax.Array, d_in: int | None = None) -> None:
    checks.array_shape("x", x, ("batch", d_in if d_in is not None else "d_in"), dims="[batch, d_in]")


# --8<-- [start:linen]
class LinenDeepMLP(nn.Module):
    """Functional twin: ``depth`` hidden layers of ``width`` units, then ``n_out`` logits.

    Parameters: ``{"params": {"layer_0": {"kernel", "bias"}, ..., "layer_<depth>": ...}}``.
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
        sizes = [x.shape[-1]] + [self.width] * self.depth + [self.n_out]
        params = [
            self.param(f"layer_{i}", init_scaled_layer, d_in, d_out, self.init_scheme)
            for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        ]
        return deep_mlp(params, x, self.activation)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxDeepMLP(nnx.Module):
    """Object-oriented twin: holds ``depth + 1`` of topic 1.1's ``NnxLayer``s, rescaled to ``init_scheme``."""

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
        sizes = [d_in] + [width] * depth + [n_out]
        self.layers = nnx.List([NnxLayer(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        for layer, a, b in zip(self.layers, sizes[:-1], sizes[1:]):
            layer.kernel[...] = layer.kernel[...] * INITS[init_scheme](a, b)  # LeCun -> the chosen scheme

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x, self.layers[0].kernel.shape[0])
        params = [layer.read() for layer in self.layers]
        return deep_mlp(params, x, self.activation)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: gradient norms through a 20-layer stack, training, and sparsity.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
RUNS = {"sigmoid": "glorot", "tanh": "glorot", "relu": "he"}  # activation -> its standard init
DEPTH, WIDTH = 20, 64


def make_loss(activation_name: str):
    """``loss_fn(params, batch, key)`` for `impl.training.train`: cross-entropy of the stack."""

    def loss_fn(params, batch, key):
        del key  # deterministic model
        logits = deep_mlp(params, batch["x"], activation_name)
        return cross_entropy(logits, batch["y"]), {"accuracy": accuracy(logits, batch["y"])}

    return loss_fn


LOSSES = {name: make_loss(name) for name in ACTIVATIONS}  # built once: one compile per activation
OPTIMIZER = sgd(learning_rate=0.01, momentum=0.9)  # the same plain optimizer for every stack


def digits_standardized() -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The digits as ``[n, 64]`` vectors, centred per pixel and scaled to unit overall variance."""
    d = data.load_digits()
    mean, std = d.x_train.mean(axis=0, keepdims=True), d.x_train.std()
    return (
        jnp.asarray((d.x_train - mean) / std),
        jnp.asarray(d.y_train),
        jnp.asarray((d.x_test - mean) / std),
        jnp.asarray(d.y_test),
    )


# --8<-- [end:experiment]


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1000) -> Report:
    """Sigmoid vs tanh vs ReLU stacks of 20 hidden layers on the digits.

    Metrics: for each activation the ratio of the input layer's weight-gradient norm to the top
    hidden layer's at initialisation (``<act>_grad_ratio``) and the final training loss
    (``<act>_train_loss``); for ReLU the fraction of exactly-zero hidden activations on the
    test set at initialisation and after training (``relu_sparsity_init``, ``relu_sparsity_trained``).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    x, y, x_test, y_test = digits_standardized()
    probe_x, probe_y = x[:512], y[:512]  # a fixed batch for the gradient norms
    metrics, norms, histories, sparsities = {}, {}, {}, {}
    for i, (name, init) in enumerate(RUNS.items()):
        k_init, k_train = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
        params = init_deep_mlp(k_init, x.shape[1], WIDTH, DEPTH, 10, init_scheme=init)
        norms[name] = np.asarray(layer_gradient_norms(params, probe_x, probe_y, name))
        result = train(
            LOSSES[name],
            params,
            OPTIMIZER,
            {"x": x, "y": y},
            key=k_train,
            steps=steps,
            batch_size=128,
            progress=progress,
            label=f"2.2 relu: {name}",
        )
        histories[name] = result.history["loss"]
        metrics[f"{name}_grad_ratio"] = float(norms[name][0] / norms[name][-2])
        metrics[f"{name}_grad_factor_per_layer"] = metrics[f"{name}_grad_ratio"] ** (1 / (DEPTH - 1))
        metrics[f"{name}_train_loss"] = float(np.mean(result.history["loss"][-100:]))
        metrics[f"{name}_test_accuracy"] = float(accuracy(deep_mlp(result.params, x_test, name), y_test))
        if name == "relu":
            for when, p in (("init", params), ("trained", result.params)):
                sparsities[when] = np.array([float(sparsity(h)) for h in hidden_activations(p, x_test, name)])
                metrics[f"relu_sparsity_{when}"] = float(sparsities[when].mean())

    lines = [
        f"{DEPTH} hidden layers of {WIDTH} units; SGD + momentum, {steps} steps of 128 digits",
        f"{'activation':<10} {'init':<7} {'|grad W_1| / |grad W_20|':>24} {'train loss':>11} {'test acc':>9}",
    ]
    for name, init in RUNS.items():
        lines.append(
            f"{name:<10} {init:<7} {metrics[f'{name}_grad_ratio']:>24.1e} "
            f"{metrics[f'{name}_train_loss']:>11.2e} {metrics[f'{name}_test_accuracy']:>9.1%}"
        )
    lines.append(
        f"backward pass through a sigmoid layer: gradient norm x {metrics['sigmoid_grad_factor_per_layer']:.3f} "
        "per layer (f' <= 1/4)"
    )
    lines.append(
        f"ReLU activations exactly zero: {metrics['relu_sparsity_init']:.1%} at initialisation, "
        f"{metrics['relu_sparsity_trained']:.1%} after training (test set, mean over layers)"
    )
    fig = _figure(norms, histories, sparsities)
    return Report("2.2 ReLU — gradients through 20 layers", metrics, lines, fig, time.perf_counter() - start)


def _figure(norms, histories, sparsities):
    fig, axes = plotting.figure(3, 1, width=11.0, height=3.4)
    for name, init in RUNS.items():
        layers = np.arange(1, len(norms[name]) + 1)
        axes[0].plot(layers, norms[name], marker="o", ms=3, label=f"{name} ({init} init)")
        axes[1].plot(np.convolve(histories[name], np.ones(20) / 20, mode="valid"), label=name)
    top = len(norms["sigmoid"]) - 1  # the last hidden layer
    layers = np.arange(1, top + 1)
    axes[0].plot(
        layers, norms["sigmoid"][top - 1] * 0.25 ** (top - layers), ls=":", color="grey", label="x 1/4 per layer"
    )
    axes[0].set(title="gradient norm per layer, at init", xlabel="layer (1 = input side)", yscale="log")
    axes[0].set_ylabel(r"$\|\partial E / \partial W_l\|$")
    axes[0].legend()
    axes[1].set(title="training loss (moving average)", xlabel="step", yscale="log")
    axes[1].legend()
    layers = np.arange(1, len(sparsities["init"]) + 1)
    relu_colour = plotting.PALETTE[list(RUNS).index("relu")]
    axes[2].plot(layers, sparsities["init"], marker="o", ms=3, ls="--", color=relu_colour, label="at init")
    axes[2].plot(layers, sparsities["trained"], marker="o", ms=3, color=relu_colour, label="trained")
    axes[2].set(title="ReLU: fraction of exact zeros", xlabel="hidden layer", ylim=(0, 1))
    axes[2].legend()
    return fig
