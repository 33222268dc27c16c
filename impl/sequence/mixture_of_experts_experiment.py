"""3.8 Mixture of experts — the experiment: 16 regression sub-tasks, balanced and unbalanced
gates, and more experts at the same compute per token.

Models with 2 to 16 experts (top 2 of each) and two 16-expert models without and with the
balancing losses train side by side in one compiled loop, with the hand-written Adam of topic
2.8. The layer and its math live in :mod:`impl.sequence.mixture_of_experts`.

Run it: ``python -m impl 3.8`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.mixture_of_experts import (
    cv_squared,
    init_experts,
    init_gate,
    moe,
    moe_dense,
    noisy_top_k_gating,
)
from impl.training import train

__all__ = [
    "OPTIMIZER",
    "SIZES",
    "W_BALANCE",
    "K",
    "costs",
    "evaluate",
    "experiment",
    "fit",
    "init_models",
    "loss_fn",
    "make_data",
    "make_task",
    "sample_task",
]

# ---------------------------------------------------------------------------------------
# The experiment: 16 regression sub-tasks in 16 regions of input space. Does the gate
# spread tokens over the experts, and does adding experts help at the same compute per token?
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
# sub-tasks; token and target widths; expert MLP; top-k
N_TASKS, D_IN, D_OUT, HIDDEN, K = 16, 8, 4, 16, 2
# numbers of experts compared, all with k = 2 (n = 2: both experts always run)
SIZES = (2, 4, 8, 16)
W_BALANCE = 0.1  # w_importance = w_load for the balanced models


def make_task(key: jax.Array, n_tasks: int = N_TASKS) -> dict[str, jax.Array]:
    """``n_tasks`` sub-tasks: a centre in input space and a random map ``tanh(z A + b)`` for
    each."""
    draw = jax.random.normal(key, (n_tasks, D_IN + D_IN * D_OUT + D_OUT))  # one draw, cut in three
    return {
        "centres": 3.0 * draw[:, :D_IN],  # [n_tasks, D_IN], well apart: distance ~ 3 sqrt(2 D_IN)
        "maps": 1.5 * draw[:, D_IN:-D_OUT].reshape(n_tasks, D_IN, D_OUT) / jnp.sqrt(D_IN),  # A
        "offsets": draw[:, -D_OUT:],  # b, [n_tasks, D_OUT]
    }


def sample_task(
    key: jax.Array, task: dict[str, jax.Array], n: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``n`` tokens ``x [n, D_IN]`` near a random sub-task's centre, targets ``y [n, D_OUT]``,
    sub-task ids."""
    k_which, k_z = jax.random.split(key)
    which = jax.random.randint(k_which, (n,), 0, task["centres"].shape[0])  # int[n]
    z = jax.random.normal(k_z, (n, D_IN))  # position relative to the centre
    # [n, D_OUT]
    y = jnp.tanh(jnp.einsum("nd,nde->ne", z, task["maps"][which]) + task["offsets"][which])
    return task["centres"][which] + z, y, which


@jax.jit
def make_data(key: jax.Array) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """One draw of sub-tasks; 4096 training and 2048 held-out tokens from them."""
    k_task, k_tokens = jax.random.split(key)
    x, y, _ = sample_task(k_tokens, make_task(k_task), 4096 + 2048)
    return (x[:4096], y[:4096]), (x[4096:], y[4096:])


def _mse_and_loads(params, batch, key, w):
    y, aux = moe(params, batch["x"], k=K, key=key, w_importance=w, w_load=w)
    # [n] tokens per expert in this batch
    chosen = jnp.sum(aux["gates"] > 0, axis=0).astype(jnp.float32)
    return jnp.mean(jnp.square(y - batch["y"])), aux["loss"], jnp.sqrt(cv_squared(chosen))


def loss_fn(params, batch, key):
    """Every model side by side (they share only the batch):
    ``params = {"n2": ..., "pair16": ...}``.

    ``"pair16"`` holds two 16-expert models stacked on a leading axis, trained without and with
    the balancing losses — one ``vmap``, so one compiled program for both.
    """
    total, metrics = 0.0, {}
    for n in SIZES[:-1]:
        mse, balance, _ = _mse_and_loads(
            params[f"n{n}"], batch, jax.random.fold_in(key, n), W_BALANCE
        )
        total, metrics[f"mse_n{n}"] = total + mse + balance, mse
    pair = functools.partial(_mse_and_loads, batch=batch, key=jax.random.fold_in(key, SIZES[-1]))
    mse, balance, load_cv = jax.vmap(lambda p, w: pair(p, w=w))(
        params["pair16"], jnp.array([0.0, W_BALANCE])
    )
    metrics |= {"mse_pair16": mse, "load_cv_pair16": load_cv}  # [2] each: (without, with)
    return total + jnp.sum(mse + balance), metrics


OPTIMIZER = adam(learning_rate=3e-3)


@jax.jit
def init_models(key: jax.Array) -> dict:
    """Every model with a zero gate; the model with ``n`` experts gets the first ``n`` of one draw
    of 16, and the two 16-expert models start identical."""
    experts = init_experts(key, SIZES[-1], [D_IN, HIDDEN, D_OUT])  # one draw of the largest set

    def first(n):
        return {"gate": init_gate(D_IN, n), "experts": jax.tree.map(lambda a: a[:n], experts)}

    params = {f"n{n}": first(n) for n in SIZES[:-1]}
    params["pair16"] = jax.tree.map(lambda a: jnp.stack([a, a]), first(SIZES[-1]))
    return params


def fit(key: jax.Array, x: jax.Array, y: jax.Array, *, steps: int, progress=None):
    """Train all models side by side in one compiled loop, mini-batches of 256 tokens."""
    return train(
        loss_fn,
        init_models(key),
        OPTIMIZER,
        {"x": x, "y": y},
        key=key,
        steps=steps,
        batch_size=256,
        chunk=steps,
        progress=progress,
        label="3.8 mixture of experts",
    )


# --8<-- [end:experiment]


_forward = jax.jit(functools.partial(moe, k=K))  # evaluation: no noise, only the chosen experts run
# all run
_forward_dense = jax.jit(lambda p, x: moe_dense(p, x, noisy_top_k_gating(p["gate"], x, K).gates))


def evaluate(params, x: jax.Array, y: jax.Array) -> dict[str, float | np.ndarray]:
    """Held-out error (as a fraction of the targets' variance) and the gate's load, without
    noise."""
    out, aux = _forward(params, x)  # no noise; capacity factor 2, as in training
    n = aux["gates"].shape[-1]
    # [n] shares
    load = np.asarray(jnp.sum(aux["gates"] > 0, axis=0), dtype=np.float64) / (K * x.shape[0])
    importance = np.asarray(jnp.sum(aux["gates"], axis=0), dtype=np.float64)
    return {
        "fvu": float(jnp.mean(jnp.square(out - y)) / jnp.mean(jnp.var(y, axis=0))),
        "load": load,
        "load_cv": float(np.std(load) / np.mean(load)),
        "importance_cv": float(np.std(importance) / np.mean(importance)),
        "max_over_mean_load": float(load.max() * n),
        "idle_experts": float(np.sum(load < 0.01)),  # experts given under 1% of the assignments
        "busiest_quarter_share": float(np.sort(load)[::-1][: max(1, n // 4)].sum()),
        "dropped_fraction": float(1.0 - jnp.mean(aux["kept"])),
    }


def costs(n: int) -> dict[str, int]:
    """Parameters in the layer, and parameters / multiply-adds used per token at evaluation."""
    expert = D_IN * HIDDEN + HIDDEN + HIDDEN * D_OUT + D_OUT  # one expert MLP
    return {
        "params": n * expert + 2 * D_IN * n,  # experts + W_g + W_noise
        "active_params": K * expert + D_IN * n,  # k experts + W_g (no noise at evaluation)
        "macs_per_token": K * (D_IN * HIDDEN + HIDDEN * D_OUT) + D_IN * n,
    }


def _milliseconds(fn, *args, repeats: int = 20) -> float:
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return 1e3 * (time.perf_counter() - start) / repeats


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1500) -> Report:
    """Load balance with and without the auxiliary losses; held-out error as experts are added.

    ``seed`` draws the sub-tasks, the data and the initial experts. Metrics: for the two
    16-expert models (``unbalanced_*``, ``balanced_*``) the held-out load statistics, and for
    every number of experts ``n`` its held-out error ``experts_{n}_test_fvu`` and costs.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU
    (x, y), (x_test, y_test) = make_data(key)
    result = fit(jax.random.fold_in(key, 1), x, y, steps=steps, progress=progress)

    models = {f"n{n}": result.params[f"n{n}"] for n in SIZES[:-1]}
    for i, name in enumerate(("unbalanced", "balanced")):
        models[name] = jax.tree.map(lambda a, i=i: a[i], result.params["pair16"])
    scores = {name: evaluate(p, x_test, y_test) for name, p in models.items()}
    metrics = {}
    for name in ("unbalanced", "balanced"):
        metrics |= {f"{name}_{stat}": v for stat, v in scores[name].items() if stat != "load"}
    for n in SIZES:
        score = scores["balanced" if n == SIZES[-1] else f"n{n}"]
        metrics[f"experts_{n}_test_fvu"] = score["fvu"]
        metrics |= {f"experts_{n}_{k}": float(v) for k, v in costs(n).items()}

    # Sparse dispatch vs running every expert on every token, forward pass, this CPU.
    metrics["sparse_forward_ms"] = _milliseconds(_forward, models["balanced"], x_test)
    metrics["dense_forward_ms"] = _milliseconds(_forward_dense, models["balanced"], x_test)

    header = (
        f"{'':<22}{'CV(load)':>9}{'CV(imp.)':>9}{'max/mean':>9}"
        f"{'idle':>6}{'top 4':>7}{'dropped':>8}{'error':>7}"
    )
    lines = [
        f"{N_TASKS} regression sub-tasks, tokens of width {D_IN}; experts are MLPs "
        f"{D_IN}-{HIDDEN}-{D_OUT}, "
        f"top k = {K}; {steps} Adam steps, batch 256",
        f"16 experts, held-out load (share of the {K} x 2048 assignments):",
        header,
    ]
    for name, label in (
        ("unbalanced", "without balancing"),
        ("balanced", f"with w = {W_BALANCE:g}"),
    ):
        s = scores[name]
        lines.append(
            f"{label:<22}{s['load_cv']:>9.2f}{s['importance_cv']:>9.2f}"
            f"{s['max_over_mean_load']:>9.2f}{s['idle_experts']:>6.0f}"
            f"{s['busiest_quarter_share']:>7.0%}{s['dropped_fraction']:>8.1%}{s['fvu']:>7.3f}"
        )
    lines.append(
        "(even load: CV 0, max/mean 1, top 4 of 16 take "
        "25%; error = held-out MSE / target variance)"
    )
    lines.append(
        f"{'experts':>8}{'params':>8}{'active/token':>13}{'MACs/token':>11}{'held-out error':>15}"
    )
    for n in SIZES:
        row = [
            metrics[f"experts_{n}_{k}"]
            for k in ("params", "active_params", "macs_per_token", "test_fvu")
        ]
        lines.append(f"{n:>8}{row[0]:>8.0f}{row[1]:>13.0f}{row[2]:>11.0f}{row[3]:>15.3f}")
    lines.append(
        "forward pass, 2048 tokens, 16 experts, this CPU: sparse dispatch "
        f"{metrics['sparse_forward_ms']:.2f} ms, "
        f"every expert on every token {metrics['dense_forward_ms']:.2f} ms"
    )
    fig = _figure(scores, result.history, metrics)
    return Report(
        "3.8 Mixture of experts — load balance, and capacity at constant compute",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(scores, history, metrics):
    fig, axes = plotting.figure(3, height=3.4, gridspec_kw={"width_ratios": [1.2, 1.0, 1.0]})
    ax = axes[0]
    n = SIZES[-1]
    for j, (name, label) in enumerate(
        (("unbalanced", "without balancing"), ("balanced", "with balancing"))
    ):
        share = np.sort(scores[name]["load"])[::-1]
        ax.bar(
            np.arange(n) + (j - 0.5) * 0.4,
            100 * share,
            0.4,
            label=label,
            color=plotting.PALETTE[3 - 3 * j],
        )
    ax.axhline(100 / n, color="grey", ls=":", lw=1, label="even share")
    ax.set_xticks(range(0, n, 3), [str(i + 1) for i in range(0, n, 3)])
    ax.set(
        xlabel="expert (busiest first)",
        ylabel="% of assignments",
        title="held-out load, 16 experts",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    cv = history["load_cv_pair16"]  # [steps, 2]
    window = 25
    for j, label in enumerate(("without balancing", "with balancing")):
        smooth = np.convolve(cv[:, j], np.ones(window) / window, mode="valid")
        ax.plot(
            np.arange(len(smooth)) + window, smooth, label=label, color=plotting.PALETTE[3 - 3 * j]
        )
    ax.set(
        xlabel="step",
        ylabel="CV of tokens per expert",
        title="load imbalance during training (batch)",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    errors = [metrics[f"experts_{m}_test_fvu"] for m in SIZES]
    ax.plot(SIZES, errors, "o-", color=plotting.PALETTE[0])
    for m, e in zip(SIZES, errors):
        ax.annotate(
            f"{metrics[f'experts_{m}_params']:.0f} "
            f"params\n{metrics[f'experts_{m}_active_params']:.0f} active",
            (m, e),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set(xscale="log", xlabel="experts (k = 2 run per token)", ylabel="held-out MSE / variance",
           title="more experts, same compute")  # fmt: skip
    ax.set_xticks(SIZES, [str(m) for m in SIZES])
    ax.minorticks_off()
    ax.set_xlim(SIZES[0] / 1.3, SIZES[-1] * 2.2)
    ax.set_ylim(0, 1.2 * max(errors))
    return fig
