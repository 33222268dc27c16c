"""2.7 GELU — weight an input by how likely a standard normal is to fall below it.

Hendrycks & Gimpel, *Gaussian Error Linear Units (GELUs)*, arXiv:1606.08415 (2016).
https://arxiv.org/abs/1606.08415

The idea: ReLU gates its input by its sign, ``x * 1[x > 0]``. GELU gates it by a probability
instead, ``x * P(X <= x)`` with ``X ~ N(0, 1)``, that is ``x * Phi(x)``: the expected value of
a stochastic gate that keeps ``x`` more often the larger it is (the paper relates it to dropout
and zoneout). The curve is smooth, equals ReLU far from zero, and dips slightly below zero for
negative inputs. BERT, GPT-2 and ViT use it, and import it from here. Because ``Phi`` (an
``erf``) was slow on some hardware, the paper also gives a tanh approximation, which GPT-2 used;
this module computes both and measures how far apart they are.

Layout: pure functions hold the math; :class:`LinenGELU` and :class:`NnxGELU` (parameter-free)
call them, so that GELU can sit in a layer list like any other module.

Shapes: ``x`` is any floating ``[...]`` array; the output has the same shape and dtype.
"""

from __future__ import annotations

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, data, plotting
from impl.deep_networks.dnn import accuracy, cross_entropy, dense, init_mlp
from impl.optimization.adam import adam
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import train

__all__ = ["TANH_MAX_ERROR", "LinenGELU", "NnxGELU", "experiment", "gelu", "gelu_exact", "gelu_tanh"]

# max_x |x Phi(x) - tanh form| is 4.73e-4, reached at |x| = 2.70 (measured in float64 on a grid of
# step 1e-5 over [-10, 10]; the error is even in x and vanishes beyond). Stated with a margin:
TANH_MAX_ERROR = 4.8e-4


# --8<-- [start:core]
def gelu_exact(x: jax.Array) -> jax.Array:
    """``GELU(x) = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`` (Sec. 2 of the paper). Shape of ``x``.

    Written with ``erfc(-x / sqrt 2) = 1 + erf(x / sqrt 2)``, which keeps its relative accuracy
    in the left tail (``1 + erf`` cancels to 0 there).
    """
    return 0.5 * x * jax.lax.erfc(-x * np.sqrt(0.5).astype(x.dtype))


def gelu_tanh(x: jax.Array) -> jax.Array:
    """The paper's approximation ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``. Shape of ``x``.

    Beyond ``|x| = 10`` the tanh is exactly +-1 in float32 and float64, so ``x`` is clipped
    inside it: the cube cannot overflow, and the gradient keeps its limits (1 and 0) instead
    of becoming ``0 * inf = nan``.
    """
    c = jnp.clip(x, -10.0, 10.0)  # only inside the tanh
    inner = np.sqrt(2.0 / np.pi).astype(x.dtype) * (c + 0.044715 * c * c * c)
    return 0.5 * x * (1.0 + jnp.tanh(inner))


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """GELU, exact (``approximate=False``) or in its tanh form; ``|exact - tanh| < TANH_MAX_ERROR``."""
    if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x: expected a floating-point array, got {getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate: expected True or False, got {approximate!r}")
    return gelu_tanh(x) if approximate else gelu_exact(x)


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenGELU(nn.Module):
    """Functional twin: no parameters, so ``init`` returns an empty dict and ``apply`` is :func:`gelu`."""

    approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(x, self.approximate)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxGELU(nnx.Module):
    """Object-oriented twin: holds only the choice of form."""

    def __init__(self, *, approximate: bool = False):
        if not isinstance(approximate, bool):
            raise TypeError(f"approximate: expected True or False, got {approximate!r}")
        self.approximate = approximate

    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(x, self.approximate)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: the two forms and their gap; GELU vs ReLU in the same MLP on digits.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
ACTIVATIONS = {"GELU": gelu_exact, "ReLU": relu}  # ReLU from topic 2.2
N_INITS = 5  # initialisations trained side by side for each activation


def mlp(params, x: jax.Array, activation: str) -> jax.Array:
    """``[b, 64] -> [b, 10]``: dense layers from topic 1.1 with ``activation`` between them."""
    f = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = f(dense(layer, x))  # [batch, d_hidden]
    return dense(params[-1], x)


@functools.cache
def loss_for(activation: str):
    """``N_INITS`` copies stacked on a leading axis; their summed loss trains each one independently."""

    def loss_fn(params, batch, key):
        del key
        losses = jax.vmap(lambda p: cross_entropy(mlp(p, batch["x"], activation), batch["y"]))(params)
        return jnp.sum(losses), {"loss_per_init": losses}

    return loss_fn


OPTIMIZER = adam(learning_rate=1e-3)
SIZES = [64, 128, 128, 10]


def fit(key, x, y, activation: str, *, steps: int, progress=None):
    """Train ``N_INITS`` MLPs (the same initial weights for every activation), mini-batches of 64."""
    params = jax.vmap(lambda k: init_mlp(k, SIZES))(jax.random.split(key, N_INITS))
    return train(
        loss_for(activation), params, OPTIMIZER, {"x": x, "y": y}, key=key, steps=steps, batch_size=64,
        progress=progress, label=f"2.7 {activation}",
    )  # fmt: skip


# --8<-- [end:experiment]


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 600) -> Report:
    """The exact and tanh forms and the bound on their gap; GELU vs ReLU on digits.

    Metrics: the largest ``|exact - tanh|`` on a fine float32 grid and where it is reached; for
    GELU and ReLU, the mean training loss over the run, the final training loss and the test
    accuracy (mean over ``N_INITS`` initialisations), and the spread of the test accuracy.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    metrics = {}

    grid = jnp.linspace(-8.0, 8.0, 1_600_001)  # step 1e-5
    gap = gelu_exact(grid) - gelu_tanh(grid)
    metrics["tanh_max_error"] = float(jnp.max(jnp.abs(gap)))
    metrics["tanh_max_error_at"] = float(jnp.abs(grid[jnp.argmax(jnp.abs(gap))]))

    split = data.load_digits(seed=seed)  # the split follows the seed too
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    runs = {}
    for name in ACTIVATIONS:
        result = fit(jax.random.key(seed), x, y, name, steps=steps, progress=progress)
        per_init = lambda p, xs, ys: (cross_entropy(mlp(p, xs, name), ys), accuracy(mlp(p, xs, name), ys))  # noqa: B023, E731
        train_loss, _ = jax.vmap(per_init, in_axes=(0, None, None))(result.params, x, y)
        _, test_acc = jax.vmap(per_init, in_axes=(0, None, None))(result.params, x_test, y_test)
        runs[name] = result
        key = name.lower()
        metrics[f"{key}_mean_training_loss"] = float(result.history["loss_per_init"].mean())
        metrics[f"{key}_final_train_loss"] = float(train_loss.mean())
        metrics[f"{key}_test_accuracy"] = float(test_acc.mean())
        metrics[f"{key}_test_accuracy_std"] = float(test_acc.std())

    lines = [
        f"max |x Phi(x) - tanh form| on [-8, 8]: {metrics['tanh_max_error']:.2e}"
        f" at |x| = {metrics['tanh_max_error_at']:.2f} (bound stated: {TANH_MAX_ERROR:.1e})",
        f"MLP {SIZES} on digits, {steps} steps of Adam, {N_INITS} initialisations each:",
        f"{'':<6} {'mean loss over run':>19} {'final train loss':>17} {'test accuracy':>18}",
    ]
    for name in ACTIVATIONS:
        k = name.lower()
        lines.append(
            f"{name:<6} {metrics[f'{k}_mean_training_loss']:>19.4f} {metrics[f'{k}_final_train_loss']:>17.4f}"
            f" {metrics[f'{k}_test_accuracy']:>11.2%} ± {metrics[f'{k}_test_accuracy_std']:.2%}"
        )
    fig = _figure(runs)
    return Report("2.7 GELU — exact vs tanh form, and GELU vs ReLU", metrics, lines, fig, time.perf_counter() - start)


def _figure(runs):
    fig, axes = plotting.figure(3, 1, width=10.5, height=3.4)
    x = jnp.linspace(-4.0, 4.0, 801)
    ax = axes[0]
    ax.plot(x, relu(x), color=plotting.PALETTE[2], lw=1.2, label="ReLU")
    ax.plot(x, gelu_exact(x), color=plotting.PALETTE[0], label="GELU  x Φ(x)")
    ax.plot(x, gelu_tanh(x), color=plotting.PALETTE[1], ls="--", label="tanh form")
    ax.set(xlabel="x", title="GELU and its tanh form", ylim=(-0.5, 4))
    ax.legend(fontsize=8)
    ax = axes[1]
    x = jnp.linspace(-7.0, 7.0, 2801)
    ax.plot(x, (gelu_exact(x) - gelu_tanh(x)) * 1e4)
    for sign in (1, -1):
        ax.axhline(sign * TANH_MAX_ERROR * 1e4, ls=":", color=plotting.PALETTE[3])
    ax.set(xlabel="x", ylabel="× 1e-4", title=f"exact − tanh form (bound ±{TANH_MAX_ERROR:.1e})")
    ax = axes[2]
    window = 25
    for i, (name, result) in enumerate(runs.items()):
        h = result.history["loss_per_init"].mean(axis=1)  # [steps], mean over initialisations
        ax.plot(np.convolve(h, np.ones(window) / window, mode="valid"), color=plotting.PALETTE[i * 2], label=name)
    ax.set(yscale="log", xlabel="step", title="training loss on digits (mean of inits)")
    ax.legend(fontsize=8)
    return fig
