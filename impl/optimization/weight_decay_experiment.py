"""2.1 Weight decay — the experiment: decay strength against test error, and L2 inside Adam.

Krogh & Hertz's own setting, at toy scale: a linear network learns a noisy linear teacher from
fewer examples than it has weights (80 examples, 100 weights), so without a penalty it fits the
noise. Sweeping the decay strength $\\lambda$ traces the test error: too little decay overfits,
too much shrinks the true signal away, and the bottom of the U beats $\\lambda = 0$.

All strengths train at once: the parameters are ``[n_lambdas, d]`` rows, the loss is the sum of
independent per-row losses each with its own penalty, and SGD acts row by row.

A second, tiny run shows why L2 inside Adam is not AdamW: with the data gradient switched off,
the penalty's gradient $\\lambda w$ goes through Adam's normalisation and comes out as a step of
about the learning rate, whatever $\\lambda$ and whatever the weight's size; AdamW's decay
bypasses the normalisation and shrinks every weight by the same factor $1 - \\eta\\lambda$.

Also here: the regularised loss of a Linen and an NNX model (:func:`linen_loss`, :func:`nnx_loss`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl import checks, plotting, twins
from impl.deep_networks import dnn
from impl.optimization.adam import adamw, scale_by_adam, scale_by_learning_rate, sgd
from impl.optimization.weight_decay import add_l2_to_gradient, l2_penalty, matrices_only
from impl.report import Report
from impl.training import train

__all__ = ["LAMBDAS", "experiment", "linen_loss", "nnx_loss", "pure_decay", "teacher_task"]


# --8<-- [start:linen]
def linen_loss(model, variables, x, y, weight_decay: float):
    """Mean squared error of a Linen model plus the L2 penalty on its matrices (not its biases)."""
    prediction = model.apply(variables, x)[:, 0]  # [batch]
    return jnp.mean((prediction - y) ** 2) + l2_penalty(variables, weight_decay, mask=matrices_only)


# --8<-- [end:linen]


# --8<-- [start:nnx]
def nnx_loss(model, x, y, weight_decay: float):
    """The same objective for an NNX model: the penalty reads the model's ``nnx.Param`` state."""
    prediction = model(x)[:, 0]  # [batch]
    # the model's nnx.Params as a plain tree: {"layers": [...]}, as in Linen
    params = twins.pure(model)
    return jnp.mean((prediction - y) ** 2) + l2_penalty(params, weight_decay, mask=matrices_only)


# --8<-- [end:nnx]


# --8<-- [start:experiment]
D, N_TRAIN, N_TEST, NOISE = 100, 80, 2000, 0.5  # more weights than examples, noisy targets
LAMBDAS = np.concatenate([[0.0], np.logspace(-3, 1.5, 10)]).astype(np.float32)  # decay strengths


def teacher_task(key):
    """A noisy linear teacher ``y = x . w* + noise``; returns train and test ``(x, y)`` and
    ``w*``."""
    k_w, k_train, k_test, k_noise = jax.random.split(key, 4)
    w_star = jax.random.normal(k_w, (D,)) / jnp.sqrt(D)  # |w*|^2 ~ 1: signal variance 1
    x_train = jax.random.normal(k_train, (N_TRAIN, D))
    x_test = jax.random.normal(k_test, (N_TEST, D))
    y_train = x_train @ w_star + NOISE * jax.random.normal(k_noise, (N_TRAIN,))
    # test error measured against the clean teacher
    return (
        (x_train, y_train),
        (x_test, x_test @ w_star),
        w_star,
    )


def loss_fn(params, batch, key):
    """Sum over rows ``r`` of ``mse_r + l2_penalty(kernel_r, lambda_r)``: every strength at once."""
    del key

    def one(layer, lam):  # layer {"kernel": [D, 1], "bias": [1]}
        mse = jnp.mean((dnn.dense(layer, batch["x"])[:, 0] - batch["y"]) ** 2)
        # coupled L2: the penalty on the cost
        return mse + l2_penalty(layer, lam, mask=matrices_only)

    losses = jax.vmap(one)(params, jnp.asarray(LAMBDAS))  # [n_lambdas]
    return jnp.sum(losses), {"per_lambda": losses}


def sweep(key, steps: int = 1500):
    """Train one linear network per strength in ``LAMBDAS``, full batch, SGD with momentum."""
    (x, y), test, _ = teacher_task(key)
    params = {"kernel": jnp.zeros((len(LAMBDAS), D, 1)), "bias": jnp.zeros((len(LAMBDAS), 1))}
    result = train(
        loss_fn,
        params,
        sgd(0.05, momentum=0.9),
        {"x": x, "y": y},
        key=key,
        steps=steps,
        progress=False,
    )
    return result, (x, y), test


def pure_decay(optimizer, w0: jax.Array, steps: int):
    """Weights under the penalty alone (no data): ``w [steps + 1, n]`` from ``w0 [n]``."""
    state = optimizer.init(w0)

    def step(carry, _):
        w, state = carry
        # zero data gradient: everything that moves w comes from the decay term
        updates, state = optimizer.update(jnp.zeros_like(w), state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), w

    _, path = jax.lax.scan(step, (w0, state), None, length=steps)
    return jnp.concatenate([w0.reshape(1, -1), path])


def adam_with_l2(learning_rate, weight_decay):
    """L2 *inside* Adam: the penalty's gradient joins the data gradient before Adam's
    normalisation."""
    return optax.chain(
        add_l2_to_gradient(weight_decay), scale_by_adam(), scale_by_learning_rate(learning_rate)
    )


# --8<-- [end:experiment]


def _test_error(params, test):
    x, y = test  # [n_test, D], [n_test]
    # [n_lambdas, n_test]
    prediction = jnp.einsum("nd,ldo->ln", x, params["kernel"]) + params["bias"]
    # + irreducible noise
    return np.asarray(jnp.mean((prediction - y.reshape(1, -1)) ** 2, axis=1)) + NOISE**2


def _train_error(params, train_set):
    x, y = train_set
    prediction = jnp.einsum("nd,ldo->ln", x, params["kernel"]) + params["bias"]
    return np.asarray(jnp.mean((prediction - y.reshape(1, -1)) ** 2, axis=1))


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1500) -> Report:
    """Test error against decay strength; then L2-inside-Adam against AdamW under the penalty alone.

    Metrics: test error without decay and at the best strength, the best strength itself, and, for
    the pure-decay run, how much a tenfold larger ``weight_decay`` changes each method's result.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed)
    result, train_set, test = sweep(key, steps)
    test_error = _test_error(result.params, test)  # [n_lambdas]
    train_error = _train_error(result.params, train_set)
    best = int(np.argmin(test_error))
    metrics = {
        "test_error_no_decay": float(test_error[0]),
        "test_error_best": float(test_error[best]),
        "best_lambda": float(LAMBDAS[best]),
        "test_error_largest_lambda": float(test_error[-1]),
        "train_error_no_decay": float(train_error[0]),
    }
    metrics["best_over_no_decay"] = metrics["test_error_best"] / metrics["test_error_no_decay"]

    # L2 inside Adam vs AdamW, and SGD, under the penalty alone.
    w0 = jnp.array([3.0, 1.0, 0.3])  # three weights of different sizes
    lr, decay_steps, paths = 0.01, 300, {}
    for lam in (0.1, 1.0):
        paths[("Adam + L2", lam)] = pure_decay(adam_with_l2(lr, lam), w0, decay_steps)
        paths[("AdamW", lam)] = pure_decay(adamw(lr, weight_decay=lam), w0, decay_steps)
        paths[("SGD + L2", lam)] = pure_decay(
            optax.chain(add_l2_to_gradient(lam), scale_by_learning_rate(lr)), w0, decay_steps
        )
    for name in ["Adam + L2", "AdamW"]:
        small, large = np.asarray(paths[(name, 0.1)][-1]), np.asarray(paths[(name, 1.0)][-1])
        slug = name.lower().replace(" + ", "_").replace(" ", "_")
        metrics[f"{slug}_tenfold_decay_change"] = float(
            np.abs(large - small).max() / np.abs(w0).max()
        )
    adamw_final = np.asarray(paths[("AdamW", 1.0)][-1])
    metrics["adamw_shrink_factor_spread"] = float(np.ptp(adamw_final / np.asarray(w0)))
    metrics["adamw_vs_sgd_l2_max_diff"] = float(
        np.abs(adamw_final - np.asarray(paths[("SGD + L2", 1.0)][-1])).max()
    )

    lines = [
        f"linear network, {D} weights, {N_TRAIN} noisy "
        f"examples (noise sd {NOISE}), {steps} steps of SGD"
    ]
    lines.append(f"{'lambda':>8} {'train error':>12} {'test error':>11}")
    for lam, tr, te in zip(LAMBDAS, train_error, test_error, strict=True):
        mark = "  <- best" if lam == LAMBDAS[best] else ""
        lines.append(f"{lam:>8.3g} {tr:>12.3f} {te:>11.3f}{mark}")
    lines.append(
        f"under the penalty alone ({decay_steps} steps, rate {lr}), a tenfold larger lambda moves "
        f"the final weights by {metrics['adam_l2_tenfold_decay_change']:.3f} with L2 inside Adam, "
        f"{metrics['adamw_tenfold_decay_change']:.3f} with AdamW (relative to the largest weight)"
    )
    fig = _figure(test_error, train_error, best, paths, w0, lr)
    return Report(
        "2.1 Weight decay — a U in the test error; L2 inside Adam is not AdamW",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
        extra={"test_error": test_error, "paths": paths},
    )


# --8<-- [end:run]


def _figure(test_error, train_error, best, paths, w0, lr):
    fig, axes = plotting.figure(3, 1, height=3.4)
    x = np.where(LAMBDAS > 0, LAMBDAS, LAMBDAS[1] / 3)  # draw lambda = 0 just left of the grid
    ax = axes[0]
    ax.plot(x[1:], test_error[1:], "-o", ms=3, label="test error", color=plotting.PALETTE[0])
    ax.plot(x[1:], train_error[1:], "-o", ms=3, label="training error", color=plotting.PALETTE[1])
    ax.plot(x[:1], test_error[:1], "s", color=plotting.PALETTE[0], label="λ = 0 (drawn at left)")
    ax.plot(x[:1], train_error[:1], "s", color=plotting.PALETTE[1])
    ax.plot(x[best], test_error[best], "*", ms=12, color=plotting.PALETTE[3], label="best λ")
    ax.axhline(NOISE**2, color="#888888", lw=0.8, ls=":", label="noise floor")
    ax.set(
        title="test error is U-shaped in λ",
        xlabel="weight decay λ",
        xscale="log",
        ylabel="mean squared error",
    )
    ax.legend(fontsize=8)
    for ax, lam in zip(axes[1:], (0.1, 1.0), strict=True):
        for i, w in enumerate(np.asarray(w0)):
            color = plotting.PALETTE[i]
            ax.plot(
                np.asarray(paths[("AdamW", lam)])[:, i],
                color=color,
                label="AdamW" if i == 0 else None,
            )
            ax.plot(
                np.asarray(paths[("Adam + L2", lam)])[:, i],
                "--",
                color=color,
                label="Adam + L2" if i == 0 else None,
            )
            del w
        ax.set(title=f"penalty alone, λ = {lam}, rate {lr}", xlabel="step", ylabel="weight")
        ax.legend(fontsize=8)
    return fig
