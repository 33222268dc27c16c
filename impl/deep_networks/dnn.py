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
`NnxMLP` (object-oriented) hold parameters and call the same functions.

Shapes: ``x`` is ``float32[batch, d_in]``; logits ``float32[batch, n_classes]``; labels ``int32[batch]``.
Parameters are a list of layers, each ``{"kernel": [d_in, d_out], "bias": [d_out]}``.
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
from impl.optimization.adam import sgd
from impl.report import Report
from impl.training import train

__all__ = [
    "ACTIVATIONS",
    "LinenMLP",
    "NnxMLP",
    "accuracy",
    "backprop",
    "cross_entropy",
    "dense",
    "experiment",
    "init_layer",
    "init_mlp",
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
    """Total input to each unit, eq. 1: ``x_j = sum_i y_i w_ji`` (+ bias). ``[b, d_in] -> [b, d_out]``."""
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
    checks.array_shape("x", x, ("batch", d_in if d_in is not None else "d_in"), dims="[batch, d_in]")


def _check_sizes(sizes: Sequence[int], activation: str) -> None:
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected [d_in, ..., n_out] with at least two entries, got {list(sizes)}")
    for i, s in enumerate(sizes):
        checks.positive_int(f"sizes[{i}]", s)
    checks.one_of("activation", activation, ACTIVATIONS)


# --8<-- [start:linen]
class LinenMLP(nn.Module):
    """Functional twin: parameters live outside, in the dict that ``init`` returns.

    ``features = [hidden..., n_out]``; the input size is read from ``x`` at ``init``.
    Parameters: ``{"params": {"layer_0": {"kernel", "bias"}, ...}}``.
    """

    features: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x)
        sizes = [x.shape[-1], *self.features]
        _check_sizes(sizes, self.activation)
        params = [
            self.param(f"layer_{i}", init_layer, d_in, d_out)
            for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        ]
        return mlp(params, x, self.activation)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxLayer(nnx.Module):
    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs):
        layer = init_layer(rngs.params(), d_in, d_out)
        self.kernel = nnx.Param(layer["kernel"])  # [d_in, d_out]
        self.bias = nnx.Param(layer["bias"])  # [d_out]

    def read(self) -> Layer:
        """The ``{"kernel", "bias"}`` dict that the pure functions take."""
        return {"kernel": self.kernel[...], "bias": self.bias[...]}


class NnxMLP(nnx.Module):
    """Object-oriented twin: the module *is* its parameters, mutated in place by training.

    ``sizes = [d_in, hidden..., n_out]``.
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "tanh", rngs: nnx.Rngs):
        _check_sizes(sizes, activation)
        self.activation = activation
        self.layers = nnx.List([NnxLayer(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_input(x, self.layers[0].kernel.shape[0])
        params = [layer.read() for layer in self.layers]
        return mlp(params, x, self.activation)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: a hidden layer solves what a linear model cannot.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
def loss_fn(params, batch, key):
    """Mean cross-entropy of the MLP on a batch ``{"x": [b, d_in], "y": int[b]}``; ``key`` unused."""
    del key  # a deterministic model: no dropout
    logits = mlp(params, batch["x"])
    return cross_entropy(logits, batch["y"]), {"accuracy": accuracy(logits, batch["y"])}


OPTIMIZER = sgd(learning_rate=0.1, momentum=0.9)  # eq. 9; built once so fits share one compile


def fit(key, x, y, sizes: Sequence[int], *, steps: int):
    """Train an MLP of ``sizes`` on ``(x, y)``, full batch, with hand-written SGD + momentum."""
    k_init, k_train = jax.random.split(key)
    params = init_mlp(k_init, sizes)
    return train(loss_fn, params, OPTIMIZER, {"x": x, "y": y}, key=k_train, steps=steps, progress=False)


# --8<-- [end:experiment]


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 3000) -> Report:
    """Linear model vs one-hidden-layer MLP on XOR and two spirals; backprop vs ``jax.grad``.

    Returns a `impl.report.Report` whose metrics hold test accuracies of each model on
    each task and the largest relative difference between hand-written and automatic gradients.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed)
    k_data, k_models, k_grad = jax.random.split(key, 3)
    tasks = {
        "XOR": lambda k, n: data.xor(k, n, noise=0.25),
        "two spirals": lambda k, n: data.two_spirals(k, n, noise=0.04, turns=1.5),
    }
    models = {"linear": [2, 2], "hidden layer (64 tanh)": [2, 64, 2]}
    metrics, runs = {}, {}
    tick = _Ticker(len(tasks) * len(models), progress)
    for t, (task, make) in enumerate(tasks.items()):
        k_train, k_test = jax.random.split(jax.random.fold_in(k_data, t))
        x, y = make(k_train, 400)
        x_test, y_test = make(k_test, 400)
        for m, (model, sizes) in enumerate(models.items()):
            result = fit(jax.random.fold_in(k_models, 10 * t + m), x, y, sizes, steps=steps)
            test_acc = float(accuracy(mlp(result.params, x_test), y_test))
            slug = f"{'linear' if len(sizes) == 2 else 'mlp'}_{task.replace(' ', '_').lower()}"
            metrics[f"{slug}_test_accuracy"] = test_acc
            runs[(task, model)] = (result, x, y, test_acc)
            tick()
    tick.close()

    # Hand-written backprop vs jax.grad on a deeper net and a random batch.
    k_p, k_x, k_y = jax.random.split(k_grad, 3)
    params = init_mlp(k_p, [2, 16, 16, 3])
    xb, yb = jax.random.normal(k_x, (64, 2)), jax.random.randint(k_y, (64,), 0, 3)
    _, by_hand = backprop(params, xb, yb)
    by_jax = jax.grad(lambda p: cross_entropy(mlp(p, xb), yb))(params)
    metrics["backprop_max_rel_diff"] = max_relative_difference(by_hand, by_jax)

    lines = [f"{'task':<12} {'model':<24} {'train loss':>10} {'test acc':>9}"]
    for (task, model), (result, *_, test_acc) in runs.items():
        lines.append(f"{task:<12} {model:<24} {result.history['loss'][-1]:>10.4f} {test_acc:>9.1%}")
    lines.append(f"hand-written backprop vs jax.grad: max relative difference {metrics['backprop_max_rel_diff']:.1e}")
    fig = _figure(runs, tasks)
    return Report("1.1 DNN — linear model vs one hidden layer", metrics, lines, fig, time.perf_counter() - start)


def max_relative_difference(a, b) -> float:
    """``max |a - b| / max(|b|, tiny)`` over every leaf of two pytrees of the same structure."""
    diffs = jax.tree.map(lambda u, v: jnp.max(jnp.abs(u - v)) / jnp.maximum(jnp.max(jnp.abs(v)), 1e-12), a, b)
    return float(max(jax.tree.leaves(diffs)))


class _Ticker:
    """Progress over whole runs (each run is already one fast compiled loop)."""

    def __init__(self, total: int, progress: bool | None):
        from impl.training import Progress, progress_enabled

        self.bar = Progress(total, "1.1 dnn", progress_enabled(progress))
        self.done = 0

    def __call__(self):
        self.done += 1
        self.bar.update(self.done)

    def close(self):
        self.bar.close()


def _figure(runs, tasks):
    fig, axes = plotting.figure(3, 2, width=9.0, height=5.6)
    grid = np.linspace(-1.6, 1.6, 160, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for row, task in enumerate(tasks):
        for col, model in enumerate(["linear", "hidden layer (64 tanh)"]):
            result, x, y, test_acc = runs[(task, model)]
            ax = axes[row, col]
            pred = np.asarray(jnp.argmax(mlp(result.params, points), axis=-1)).reshape(gx.shape)
            ax.contourf(gx, gy, pred, levels=[-0.5, 0.5, 1.5], colors=plotting.PALETTE[:2], alpha=0.25)
            ax.scatter(*np.asarray(x).T, c=[plotting.PALETTE[int(c)] for c in np.asarray(y)], s=6)
            ax.set(title=f"{task}: {model}\ntest accuracy {test_acc:.0%}", xticks=[], yticks=[])
            ax.set_aspect("equal")
            ax.grid(False)
        ax = axes[row, 2]
        for model in ["linear", "hidden layer (64 tanh)"]:
            ax.plot(runs[(task, model)][0].history["loss"], label=model.split(" (")[0])
        ax.set(title=f"{task}: training loss", xlabel="step", yscale="log")
        ax.legend()
    return fig
