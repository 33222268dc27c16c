"""Chapter 2.2, *Size* — a scaling law on a laptop: test loss against parameter count.

A fixed random "teacher" network defines a smooth function of four inputs; "student"
networks with one hidden layer of 2 to 128 tanh units learn it from 20,000 examples, all
trained identically (same optimizer, schedule, steps and batches). Their test loss falls with
their parameter count ``N`` along a straight line on log-log axes — a power law
``L(N) ≈ a · N^(-α)``, the form Kaplan et al. (2020) reported for language models — until
the largest students start to run out of training steps and the line bends.

Students of every width train side by side (see :mod:`impl.essay.side_by_side`): each is
embedded in a 128-unit layer whose unused units are switched off by a fixed 0/1 mask, so
they contribute nothing and receive zero gradient. A masked student computes exactly what
the same network built at its own width would.

Shapes: inputs ``x`` are ``float32[n, 4]``; targets ``y`` ``float32[n]``; a student is
``[{"kernel": [4, W], "bias": [W]}, {"kernel": [W, 1], "bias": [1]}]`` with ``W = 128``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import NullFormatter

from impl import checks, plotting
from impl.deep_networks import dnn
from impl.essay import side_by_side
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = [
    "WIDTHS",
    "experiment",
    "loss_fn",
    "masked_mlp",
    "n_params",
    "padded_student",
    "teacher_data",
    "width_masks",
]

WIDTHS = (2, 4, 8, 16, 32, 64, 128)
N_TRAIN = 20_000
D_IN = 4
TEACHER_GAIN = 3.0  # first-layer weight scale of the teacher: more bends in its function


def n_params(width: int, d_in: int = D_IN) -> int:
    """Trainable parameters of a one-hidden-layer student: ``(d_in + 1)·w + (w + 1)``."""
    checks.positive_int("width", width)
    checks.positive_int("d_in", d_in)
    return (d_in + 1) * width + width + 1


def teacher_data(key: jax.Array, n_train: int, n_test: int, d_in: int = D_IN):
    """Inputs uniform in ``[-1, 1]^d_in`` and a random two-hidden-layer tanh teacher's outputs.

    Targets are scaled to unit variance, so a test loss of 1.0 is what always predicting the
    mean would score. Returns ``(x_train [n_train, d], y_train [n_train], x_test, y_test)``.
    """
    checks.positive_int("n_train", n_train)
    checks.positive_int("n_test", n_test)
    checks.positive_int("d_in", d_in)
    k_teacher, k_train, k_test = jax.random.split(key, 3)
    teacher = dnn.init_mlp(k_teacher, [d_in, 64, 64, 1])
    teacher[0] = {**teacher[0], "kernel": TEACHER_GAIN * teacher[0]["kernel"]}
    x_train = jax.random.uniform(k_train, (n_train, d_in), minval=-1.0, maxval=1.0)
    x_test = jax.random.uniform(k_test, (n_test, d_in), minval=-1.0, maxval=1.0)
    y_train, y_test = dnn.mlp(teacher, x_train)[:, 0], dnn.mlp(teacher, x_test)[:, 0]
    mean, std = jnp.mean(y_train), jnp.std(y_train)
    return x_train, (y_train - mean) / std, x_test, (y_test - mean) / std


def padded_student(key: jax.Array, width: int, max_width: int, d_in: int = D_IN):
    """A student initialised at its own ``width``, zero-padded to ``max_width`` hidden units."""
    checks.positive_int("width", width)
    checks.positive_int("max_width", max_width)
    if width > max_width:
        raise ValueError(f"width: expected at most max_width={max_width}, got {width}")
    first, second = dnn.init_mlp(key, [d_in, width, 1])  # LeCun init at the true width
    return [
        {
            "kernel": jnp.zeros((d_in, max_width)).at[:, :width].set(first["kernel"]),
            "bias": jnp.zeros((max_width,)).at[:width].set(first["bias"]),
        },
        {
            "kernel": jnp.zeros((max_width, 1)).at[:width].set(second["kernel"]),
            "bias": second["bias"],
        },
    ]


# --8<-- [start:experiment]
def masked_mlp(params, mask: jax.Array, x: jax.Array) -> jax.Array:
    """One hidden tanh layer whose units beyond the student's width are masked off.

    ``mask`` is ``float32[W]`` of ones then zeros; ``x [b, d]`` -> predictions ``[b]``.
    """
    hidden = jnp.tanh(dnn.dense(params[0], x)) * mask.reshape(1, -1)  # [b, W]
    return dnn.dense(params[1], hidden)[:, 0]  # [b]


def width_masks(widths: jax.Array, max_width: int) -> jax.Array:
    """``float32[runs, max_width]``: row ``r`` has ``widths[r]`` ones, then zeros."""
    return (jnp.arange(max_width)[None, :] < widths[:, None]).astype(jnp.float32)


def loss_fn(params, batch, key):
    """Sum over students of each one's mean squared error; per-student losses as a metric.

    ``batch = {"x": [b, d], "y": [b], "width": int[b, runs]}`` (the widths repeated per example).
    """
    del key  # the minibatch is drawn by `train`
    masks = width_masks(batch["width"][0], params[0]["bias"].shape[-1])  # [runs, W]
    errors = jax.vmap(lambda p, m: jnp.mean((masked_mlp(p, m, batch["x"]) - batch["y"]) ** 2))
    losses = errors(params, masks)  # [runs]
    return jnp.sum(losses), {"run_loss": losses}


def cosine_schedule(peak: float, steps: int):
    """Learning rate decaying from ``peak`` to zero along half a cosine over ``steps``."""
    return lambda t: peak * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(t, steps) / steps))


# --8<-- [end:experiment]


def experiment(
    seed: int = 0,
    *,
    progress: bool | None = None,
    widths: Sequence[int] = WIDTHS,
    repeats: int = 2,
    steps: int = 1500,
    batch_size: int = 256,
) -> Report:
    """Train ``repeats`` students per width on the same teacher; fit ``test loss ≈ a · N^(-α)``.

    Each width's test loss is the mean over its ``repeats`` students (different initial
    weights), which smooths out the luck of a single initialisation.

    Metrics: ``test_loss_w{width}`` and ``n_params_w{width}`` for every width,
    ``alpha`` (the fitted exponent, positive when loss falls with size), ``fit_r2`` (how
    straight the log-log line is) and ``loss_ratio`` (smallest over largest student's loss).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("batch_size", batch_size)
    checks.positive_int("repeats", repeats)
    if len(widths) < 3:
        raise ValueError(
            f"widths: expected at least three widths to fit a power law, got {list(widths)}"
        )
    for i, w in enumerate(widths):
        checks.positive_int(f"widths[{i}]", w)
    start = time.perf_counter()
    key = jax.random.key(seed)
    k_data, k_init, k_train = jax.random.split(key, 3)
    x, y, x_test, y_test = teacher_data(k_data, N_TRAIN, 5_000)
    max_width = max(widths)
    run_widths = [w for w in widths for _ in range(repeats)]  # runs: each width `repeats` times
    width_vec = jnp.asarray(run_widths, jnp.int32)  # [runs]
    masks = width_masks(width_vec, max_width)  # [runs, W]
    params = side_by_side.stack(
        [
            padded_student(jax.random.fold_in(k_init, i), w, max_width)
            for i, w in enumerate(run_widths)
        ]
    )
    n = x.shape[0]
    batch = {"x": x, "y": y, "width": jnp.broadcast_to(width_vec[None, :], (n, len(run_widths)))}
    optimizer = adam(cosine_schedule(3e-3, steps))
    result = train(
        loss_fn, params, optimizer, batch, key=k_train, steps=steps, batch_size=batch_size,
        progress=progress, label="2.2 size",
    )  # fmt: skip
    per_run = np.asarray(
        jax.vmap(lambda p, m: jnp.mean((masked_mlp(p, m, x_test) - y_test) ** 2))(
            result.params, masks
        )
    )  # [runs]
    test = per_run.reshape(len(widths), repeats).mean(axis=1)  # [widths]
    run_losses = result.history["run_loss"].reshape(steps, len(widths), repeats).mean(axis=2)
    sizes = [n_params(w) for w in widths]
    slope, prefactor = side_by_side.log_log_fit(sizes, test)
    logn, logl = np.log(sizes), np.log(test)
    residual = logl - (np.log(prefactor) + slope * logn)
    r2 = 1.0 - float(np.sum(residual**2) / np.sum((logl - logl.mean()) ** 2))

    metrics = {f"test_loss_w{w}": float(v) for w, v in zip(widths, test)}
    metrics |= {f"n_params_w{w}": float(p) for w, p in zip(widths, sizes)}
    metrics |= {"alpha": -slope, "fit_r2": r2, "loss_ratio": float(test[0] / test[-1])}
    lines = [
        f"{'hidden units':>12} {'parameters':>10} "
        f"{'test loss':>10}   (mean of {repeats} students each)"
    ]
    lines += [f"{w:>12} {p:>10,} {v:>10.4f}" for w, p, v in zip(widths, sizes, test)]
    lines.append(
        f"power-law fit: test loss ≈ {prefactor:.2f} · "
        f"N^(-{-slope:.2f})   (R² on log-log axes = {r2:.3f})"
    )
    lines.append("(a test loss of 1.0 is what predicting the mean would score)")
    fig = _figure(widths, sizes, test, slope, prefactor, run_losses)
    return Report(
        "2.2 Size — test loss vs parameter count", metrics, lines, fig, time.perf_counter() - start
    )


def _figure(widths, sizes, test, slope, prefactor, run_losses):
    fig, (ax_law, ax_curves) = plotting.figure(2, 1, height=3.4)
    grid = np.geomspace(min(sizes), max(sizes), 50)
    ax_law.plot(sizes, test, "o", color=plotting.PALETTE[0], label="students (mean per width)")
    ax_law.plot(
        grid,
        prefactor * grid**slope,
        "--",
        color=plotting.PALETTE[1],
        label=f"fit: loss ∝ N^-{-slope:.2f}",
    )
    ax_law.set(
        xscale="log",
        yscale="log",
        xlabel="parameters N",
        ylabel="test loss (MSE)",
        title="Loss vs size",
    )
    for axis in (ax_law.xaxis, ax_law.yaxis):
        axis.set_minor_formatter(NullFormatter())  # log axes: label the decades only
    ax_law.legend()
    steps = np.arange(1, run_losses.shape[0] + 1)
    window = 50
    kernel = np.ones(window) / window
    for i, w in enumerate(widths):
        smooth = np.convolve(run_losses[:, i], kernel, mode="valid")
        ax_curves.plot(
            steps[window - 1 :],
            smooth,
            color=plotting.PALETTE[i % len(plotting.PALETTE)],
            label=f"{w}",
        )
    ax_curves.set(
        xscale="log",
        yscale="log",
        xlabel="training step",
        ylabel="training loss",
        title="Training curves",
    )
    ax_curves.legend(title="hidden units", ncols=2, fontsize=8)
    return fig
