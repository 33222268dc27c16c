"""2.8 Adam — the experiment: the optimizer family on a badly conditioned valley.

A 2-D quadratic whose curvature differs by a factor of 100 between its two axes is the
smallest picture of what makes deep networks hard to train: one learning rate cannot suit both
directions. Plain SGD must keep its rate below the stability limit of the steep axis and so
crawls along the shallow one; momentum accumulates speed along the floor of the valley;
RMSProp and Adam divide each coordinate's step by its own gradient scale.

Every optimizer is swept over a grid of learning rates in *one* compiled training run: the
parameters are a ``[n_rates, 2]`` array of independent points, the loss is separable, and a
final transformation multiplies row ``i`` of the update by rate ``i``. All four optimizers act
coordinate-wise, so row ``i`` follows exactly the path a run at rate ``i`` alone would take.

The module also holds the one-step training functions that drive a Linen and an NNX model with
the same hand-written optimizer (:func:`linen_step`, :func:`nnx_step`).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from impl import checks, plotting
from impl.deep_networks import dnn
from impl.optimization.adam import adam, rmsprop, scale_by_adam, scale_by_learning_rate, sgd
from impl.report import Report
from impl.training import Progress, progress_enabled, train

__all__ = ["CURVATURE", "experiment", "linen_step", "nnx_step", "valley"]


# --8<-- [start:linen]
@functools.partial(jax.jit, static_argnums=(0, 1))
def linen_step(model, tx, variables, opt_state, x, y):
    """One step for a Linen model: parameters and optimizer state go in, and come out."""
    loss, grads = jax.value_and_grad(lambda v: dnn.cross_entropy(model.apply(v, x), y))(variables)
    updates, opt_state = tx.update(grads, opt_state, variables)  # the hand-written Adam
    return optax.apply_updates(variables, updates), opt_state, loss


# --8<-- [end:linen]


# --8<-- [start:nnx]
@nnx.jit
def nnx_step(model, optimizer, x, y):
    """One step for an NNX model: ``optimizer`` (an ``nnx.Optimizer``) updates ``model`` in
    place."""
    loss, grads = nnx.value_and_grad(lambda m: dnn.cross_entropy(m(x), y))(model)
    optimizer.update(model, grads)  # calls the same tx.update on the model's nnx.Params
    return loss


# --8<-- [end:nnx]


# --8<-- [start:experiment]
CURVATURE = (1.0, 100.0)  # h_x, h_y: the valley's condition number is 100
RESCALE = (100.0, 0.01)  # a diagonal rescaling of the gradient, for the invariance test
RATES = np.logspace(-3, 0, 13).astype(np.float32)  # the learning-rate grid of every sweep
BOX = 10.0  # a run that leaves [-BOX, BOX]^2 has diverged: it stops there
LOW_RATE, HIGH_RATE = 4, 11  # indices into RATES (0.01 and 0.56) where bias correction is compared


def valley(w: jax.Array) -> jax.Array:
    """``f(x, y) = (h_x x^2 + h_y y^2) / 2``. ``w [..., 2] -> [...]``."""
    h = jnp.asarray(CURVATURE).reshape((1,) * (w.ndim - 1) + (2,))
    return 0.5 * jnp.sum(h * w * w, axis=-1)


def loss_fn(params, batch, key):
    """Sum of the valley over independent points ``{"plain": [n, 2], "rescaled": [n, 2]}``."""
    del batch, key  # no data: the loss surface is the problem
    points = {k: jnp.clip(w, -BOX, BOX) for k, w in params.items()}  # gradient 0 outside the box
    losses = {k: valley(w) for k, w in points.items()}  # each [n]
    metrics = {f"loss_{k}": v for k, v in losses.items()} | {
        f"path_{k}": w for k, w in points.items()
    }
    return sum(jnp.sum(v) for v in losses.values()), metrics


def scale_rows(factors: jax.Array) -> optax.GradientTransformation:
    """Multiply row ``i`` of every ``[n, ...]`` update by ``factors[i]``: n learning rates at
    once."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(
            lambda u: u * factors.reshape((-1,) + (1,) * (u.ndim - 1)), updates
        ), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def rescale_gradient(factors: dict) -> optax.GradientTransformation:
    """Multiply each leaf's gradient coordinate-wise by fixed positive ``factors`` (a ``[1, 2]`` per
    leaf)."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(jnp.multiply, updates, factors), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


OPTIMIZERS = {  # each at learning rate 1; scale_rows supplies the real rates
    "SGD": sgd(1.0),
    "momentum": sgd(1.0, momentum=0.9),
    "RMSProp": rmsprop(1.0),
    "Adam": adam(1.0),
    "Adam, no bias correction": optax.chain(
        scale_by_adam(bias_correction=False), scale_by_learning_rate(1.0)
    ),
}
FACTORS = {"plain": jnp.ones((1, 2)), "rescaled": jnp.asarray(RESCALE).reshape(1, 2)}


def sweep(optimizer, start: jax.Array, steps: int):
    """Run ``optimizer`` from ``start [2]`` at every rate in ``RATES``, with and without
    rescaling."""
    # [n_rates, 2] each
    params = {k: jnp.tile(start.reshape(1, 2), (len(RATES), 1)) for k in FACTORS}
    tx = optax.chain(rescale_gradient(FACTORS), optimizer, scale_rows(jnp.asarray(RATES)))
    return train(
        loss_fn, params, tx, {"unused": jnp.zeros((1,))}, key=0, steps=steps, progress=False
    )


# --8<-- [end:experiment]


def _start(seed: int) -> jax.Array:
    """A start on the far side of the valley, jittered by the seed."""
    jitter = jax.random.uniform(jax.random.key(seed), (2,), minval=-0.3, maxval=0.3)
    return jnp.array([-4.0, 1.0]) + jitter


def step_multipliers(b1: float = 0.9, b2: float = 0.999, steps: int = 200) -> dict[str, np.ndarray]:
    """Adam's step size, in units of the learning rate, for a constant gradient, with and without
    correction."""
    g = jnp.ones((1,))
    out = {}
    for name, corrected in [("corrected", True), ("uncorrected", False)]:
        opt = scale_by_adam(b1, b2, eps=1e-12, bias_correction=corrected)
        step = jax.jit(lambda s, o=opt: o.update(g, s))
        state, sizes = opt.init(g), []
        for _ in range(steps):
            update, state = step(state)
            sizes.append(float(update[0]))
        out[name] = np.asarray(sizes)
    return out


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 100) -> Report:
    """SGD, momentum, RMSProp and Adam on a 2-D valley of condition number 100.

    Metrics: each optimizer's best loss over the learning-rate grid (mean of the last 10 steps),
    Adam's and SGD's path change under a diagonal rescaling of the gradient, and the loss of
    Adam with and without bias correction over the first steps at Adam's best rate.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start_time = time.perf_counter()
    start = _start(seed)
    bar = _progress(len(OPTIMIZERS), progress)
    runs = {}
    for i, (name, optimizer) in enumerate(OPTIMIZERS.items()):
        result = sweep(optimizer, start, steps)
        losses = {k: result.history[f"loss_{k}"] for k in FACTORS}  # each [steps, n_rates]
        paths = {k: result.history[f"path_{k}"] for k in FACTORS}  # each [steps, n_rates, 2]
        final = losses["plain"][-10:].mean(axis=0)  # [n_rates]
        best = int(np.argmin(final))
        runs[name] = {"best": best, "final": final, "losses": losses, "paths": paths}
        bar.update(i + 1)
    bar.close()

    metrics = {}
    for name in ["SGD", "momentum", "RMSProp", "Adam"]:
        key = name.lower()
        metrics[f"{key}_best_loss"] = float(runs[name]["final"][runs[name]["best"]])
        metrics[f"{key}_best_rate"] = float(RATES[runs[name]["best"]])
    metrics["adam_over_sgd_loss"] = metrics["adam_best_loss"] / metrics["sgd_best_loss"]
    # invariance: the rescaled run's path vs the plain one, at the best rate
    for name in ["Adam", "SGD"]:
        paths, b = runs[name]["paths"], runs[name]["best"]
        gap = (
            np.abs(paths["rescaled"][:, b] - paths["plain"][:, b]).max()
            / np.abs(paths["plain"][:, b]).max()
        )
        metrics[f"{name.lower()}_rescaled_path_change"] = float(gap)
    adam_best = runs["Adam"]["best"]
    early = slice(1, 21)  # losses after steps 1..20
    with_bc = float(runs["Adam"]["losses"]["plain"][early, adam_best].mean())
    without_bc = float(runs["Adam, no bias correction"]["losses"]["plain"][early, adam_best].mean())
    metrics["early_loss_with_bias_correction"] = with_bc
    metrics["early_loss_without_bias_correction"] = without_bc
    # [n_rates]: mean loss over steps 1-20 without correction / with it, at every rate
    early_ratio = runs["Adam, no bias correction"]["losses"]["plain"][early].mean(axis=0) / runs[
        "Adam"
    ]["losses"]["plain"][early].mean(axis=0)
    metrics["early_loss_ratio_at_low_rate"] = float(early_ratio[LOW_RATE])
    metrics["early_loss_ratio_at_high_rate"] = float(early_ratio[HIGH_RATE])
    multipliers = step_multipliers()
    metrics["uncorrected_max_step_multiplier"] = float(np.abs(multipliers["uncorrected"]).max())

    lines = [
        f"valley f = (x^2 + 100 y^2) / 2 from ({float(start[0]):.2f}, "
        f"{float(start[1]):.2f}), {steps} steps"
    ]
    lines.append(f"{'optimizer':<10} {'best rate':>10} {'loss (last 10 steps)':>21}")
    for name in ["SGD", "momentum", "RMSProp", "Adam"]:
        key = name.lower()
        lines.append(
            f"{name:<10} {metrics[f'{key}_best_rate']:>10.3g} {metrics[f'{key}_best_loss']:>21.2e}"
        )
    lines.append(
        f"gradient rescaled by diag{RESCALE}: Adam's path moves by "
        f"{metrics['adam_rescaled_path_change']:.1e}, "
        f"SGD's by {metrics['sgd_rescaled_path_change']:.2f} (relative)"
    )
    lines.append(
        f"mean loss over steps 1-20 at Adam's best rate: {with_bc:.3f} with bias correction, "
        f"{without_bc:.3f} without (first steps up to "
        f"{metrics['uncorrected_max_step_multiplier']:.1f}x too long)"
    )
    lines.append(
        f"early loss without / with bias correction: {early_ratio[LOW_RATE]:.2f} at rate "
        f"{RATES[LOW_RATE]:.2g}, "
        f"{early_ratio[HIGH_RATE]:.2f} at rate {RATES[HIGH_RATE]:.2g}"
    )
    fig = _figure(runs, start, multipliers, early_ratio)
    return Report(
        "2.8 Adam — four optimizers in a badly conditioned valley",
        metrics,
        lines,
        fig,
        time.perf_counter() - start_time,
        extra={"runs": runs},
    )


# --8<-- [end:run]


def _progress(total, progress):
    return Progress(total, "2.8 adam", progress_enabled(progress))


def _figure(runs, start, multipliers, early_ratio):
    fig, axes = plotting.figure(3, 2, height=7.2)
    names = ["SGD", "momentum", "RMSProp", "Adam"]
    colors = dict(zip([*names, "Adam, no bias correction"], plotting.PALETTE))
    gx, gy = np.meshgrid(np.linspace(-4.8, 1.5, 200), np.linspace(-1.6, 1.6, 200))
    surface = np.asarray(valley(jnp.stack([gx, gy], axis=-1)))

    def path_of(name, kind="plain"):
        # [steps, 2], positions before each step
        path = runs[name]["paths"][kind][:, runs[name]["best"]]
        return np.concatenate([np.asarray(start).reshape(1, 2), path[1:]])

    def valley_axes(ax, title):
        ax.contour(
            gx, gy, surface, levels=np.geomspace(0.05, 60, 12), colors="#888888", linewidths=0.5
        )
        ax.plot([0], [0], "*", color="#888888", ms=9)
        ax.set(title=title, xlabel="x", ylabel="y", xlim=(-4.8, 1.5), ylim=(-1.6, 1.6))

    # (a) the valley with each optimizer's path at its best rate
    ax = axes[0, 0]
    valley_axes(ax, "paths, each at\nits best rate")
    for name in names:
        p = path_of(name)
        rate = RATES[runs[name]["best"]]
        ax.plot(
            p[:, 0], p[:, 1], "-o", ms=1.5, lw=0.9, color=colors[name], label=f"{name} ({rate:.2g})"
        )
    ax.legend(fontsize=8, loc="lower left")
    # (b) loss against step at the best rate
    ax = axes[0, 1]
    for name in names:
        ax.plot(
            runs[name]["losses"]["plain"][:, runs[name]["best"]], color=colors[name], label=name
        )
    ax.set(title="loss at\nthe best rate", xlabel="step", yscale="log")
    ax.legend(fontsize=8)
    # (c) the learning-rate sweep
    ax = axes[0, 2]
    for name in names:
        ax.plot(RATES, runs[name]["final"], "-o", ms=2.5, color=colors[name], label=name)
    ax.set(
        title="final loss\nagainst learning rate",
        xlabel="learning rate",
        xscale="log",
        yscale="log",
    )
    ax.legend(fontsize=8)
    # (d) invariance: the same runs with the gradient rescaled by diag(RESCALE)
    ax = axes[1, 0]
    valley_axes(ax, f"gradient rescaled\nby diag{RESCALE}")
    for name, style in [("SGD", "-"), ("Adam", "-")]:
        p, q = path_of(name), path_of(name, "rescaled")
        ax.plot(p[:, 0], p[:, 1], style, lw=2.5, alpha=0.35, color=colors[name], label=f"{name}")
        ax.plot(q[:, 0], q[:, 1], "--", lw=1.0, color=colors[name], label=f"{name}, rescaled")
    ax.legend(fontsize=8, loc="lower left")
    # (e) bias correction: the step-size multiplier for a constant gradient
    ax = axes[1, 1]
    ax.plot(np.abs(multipliers["corrected"]), color=colors["Adam"], label="with bias correction")
    ax.plot(
        np.abs(multipliers["uncorrected"]),
        color=colors["Adam, no bias correction"],
        label="without",
    )
    ax.set(title="Adam's step / rate,\nconstant gradient", xlabel="step")
    ax.legend(fontsize=8)
    # (f) ... and what it does to the first steps, at every rate
    ax = axes[1, 2]
    ax.plot(RATES, early_ratio, "-o", ms=2.5, color=colors["Adam, no bias correction"])
    ax.axhline(1.0, color="#888888", lw=0.8)
    ax.axvline(
        RATES[runs["Adam"]["best"]], color=colors["Adam"], lw=0.8, ls="--", label="Adam's best rate"
    )
    ax.set(
        title="early loss:\nuncorrected / corrected",
        xlabel="learning rate",
        xscale="log",
        ylabel="ratio",
    )
    ax.legend(fontsize=8)
    return fig
