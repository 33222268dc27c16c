"""2.6 Layer normalization, the experiment: invariances, and a tanh RNN with and without it.

First, the two invariances on random inputs: one example alone gives the same output as in a
batch of 64 (batch norm in training mode, for contrast, does not), and re-scaling the input
changes nothing until its variance nears ``eps``. Then a tanh RNN learns to recall the token
seen four steps earlier, from four initial weight scales, with and without layer norm; every
scale of one net trains side by side in one compiled loop. The model and the math live in
`impl.optimization.layer_norm`.

Run it: ``python -m impl 2.6`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import dense
from impl.optimization.adam import adam
from impl.optimization.batch_norm import batch_norm
from impl.optimization.layer_norm import init_rnn, layer_norm, rnn
from impl.report import Report
from impl.training import train

__all__ = [
    "GAINS",
    "HIDDEN",
    "LAG",
    "OPTIMIZER",
    "experiment",
    "fit_rnns",
    "lag_logits",
    "lag_loss",
    "loss_for",
]


# --8<-- [start:experiment]
LAG = 4  # the task: at every step, output the token seen LAG steps earlier
GAINS = (0.5, 1.0, 2.0, 4.0)
HIDDEN = 48


def lag_logits(params, tokens, *, use_ln: bool) -> jax.Array:
    """Predictions for steps ``LAG..T-1`` of the recall task, ``[b, T - LAG, vocab]``."""
    return dense(params["out"], rnn(params, tokens, use_ln=use_ln)[:, LAG:])


def lag_loss(params, tokens, *, use_ln: bool) -> jax.Array:
    """Cross-entropy of recalling ``tokens[:, t - LAG]`` at step ``t``."""
    logp = jax.nn.log_softmax(lag_logits(params, tokens, use_ln=use_ln))  # [b, T - LAG, vocab]
    return -jnp.mean(jnp.take_along_axis(logp, tokens[:, :-LAG, None], axis=-1))


@functools.cache
def loss_for(use_ln: bool):
    """All initial gains train side by side: parameters stacked on a leading axis, losses summed.

    Each copy's gradient is that of its own loss, and Adam works entry by entry, so this is
    exactly ``len(GAINS)`` independent runs in one compiled loop.
    """

    def loss_fn(params, batch, key):
        del key
        losses = jax.vmap(lambda p: lag_loss(p, batch["x"], use_ln=use_ln))(params)  # [n_gains]
        return jnp.sum(losses), {"loss_per_gain": losses}

    return loss_fn


OPTIMIZER = adam(learning_rate=5e-3)


def fit_rnns(
    key, tokens, *, use_ln: bool, steps: int, vocab: int, hidden: int = HIDDEN, progress=None
):
    # same draw, scaled
    params = jax.vmap(lambda g: init_rnn(key, vocab, hidden, g))(jnp.asarray(GAINS))
    return train(
        loss_for(use_ln), params, OPTIMIZER, {"x": tokens}, key=key, steps=steps, batch_size=64,
        progress=progress, label=f"2.6 RNN {'with' if use_ln else 'without'} layer norm",
    )  # fmt: skip


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 500) -> Report:
    """Batch independence and scale invariance of layer norm; a tanh RNN with and without it.

    Metrics: max output differences for batch size 1 vs 64 (layer norm and, for contrast,
    batch norm in training mode), for inputs re-scaled by 10 and 0.1, and for each RNN and
    initial gain the test accuracy of recalling the token ``LAG`` steps back.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    k_x, k_train, k_test, k_model = jax.random.split(jax.random.key(seed), 4)
    metrics = {}

    # 1. Batch size 1 vs 64, and re-scaled inputs.
    x = 2.0 + 3.0 * jax.random.normal(k_x, (64, 32))  # [batch, features]
    ones, zeros = jnp.ones((32,)), jnp.zeros((32,))
    ln = lambda v: layer_norm(v, ones, zeros)  # noqa: E731

    def bn(v):
        return batch_norm(v, ones, zeros, zeros, ones, use_running_average=False)[0]

    metrics["ln_batch1_vs_64"] = float(jnp.max(jnp.abs(ln(x[:1]) - ln(x)[:1])))
    metrics["bn_batch1_vs_64"] = float(jnp.max(jnp.abs(bn(x[:1]) - bn(x)[:1])))
    scales = np.logspace(-4, 4, 32)  # c = 1 (no re-scaling) is not among them
    rescaled = [float(jnp.max(jnp.abs(ln(c * x) - ln(x)))) for c in scales]
    metrics["ln_rescale_x10"] = float(jnp.max(jnp.abs(ln(10.0 * x) - ln(x))))
    metrics["ln_rescale_x0.1"] = float(jnp.max(jnp.abs(ln(0.1 * x) - ln(x))))

    # 2. The RNN: recall the token LAG steps back, for several initial weight scales.
    train_set = data.copy_task(k_train, 2048, length=16, n_symbols=8)
    test_set = data.copy_task(k_test, 512, length=16, n_symbols=8)
    runs = {}
    for name, use_ln in {"plain": False, "ln": True}.items():
        for (
            gain
        ) in GAINS:  # saturated tanh units (|h| > 0.99) at initialisation, before any training
            h = rnn(
                init_rnn(k_model, train_set.vocab_size, HIDDEN, gain),
                test_set.inputs,
                use_ln=use_ln,
            )
            metrics[f"{name}_saturated_at_init_gain_{gain:g}"] = float(jnp.mean(jnp.abs(h) > 0.99))
        result = fit_rnns(
            k_model,
            train_set.inputs,
            use_ln=use_ln,
            steps=steps,
            vocab=train_set.vocab_size,
            progress=progress,
        )
        logits = jax.vmap(functools.partial(lag_logits, tokens=test_set.inputs, use_ln=use_ln))(
            result.params
        )
        # [n_gains]
        acc = jnp.mean(jnp.argmax(logits, axis=-1) == test_set.inputs[None, :, :-LAG], axis=(1, 2))
        runs[name] = (result, np.asarray(acc))
        for gain, a in zip(GAINS, np.asarray(acc)):
            metrics[f"{name}_accuracy_gain_{gain:g}"] = float(a)

    lines = [
        "same example alone vs in a batch of 64, max |difference|: layer norm "
        f"{metrics['ln_batch1_vs_64']:.1e},"
        f" batch norm (train mode) {metrics['bn_batch1_vs_64']:.2f}",
        f"layer norm of 10x vs x: {metrics['ln_rescale_x10']:.1e}; of 0.1x vs x: "
        f"{metrics['ln_rescale_x0.1']:.1e}"
        " (eps = 1e-6 matters only once the input's variance nears it)",
        f"tanh RNN, recall the token {LAG} steps back (chance {1 / 8:.1%}), test accuracy by "
        "initial weight scale:",
        f"{'':<20}" + "".join(f"{'gain ' + format(g, 'g'):>10}" for g in GAINS),
    ]
    for name, (_, acc) in runs.items():
        lines.append(
            f"{'with layer norm' if name == 'ln' else 'plain':<20}"
            + "".join(f"{a:>10.1%}" for a in acc)
        )
    lines.append("saturated units (|h| > 0.99) at initialisation:")
    for name in runs:
        cells = "".join(f"{metrics[f'{name}_saturated_at_init_gain_{g:g}']:>10.1%}" for g in GAINS)
        lines.append(f"{'with layer norm' if name == 'ln' else 'plain':<20}" + cells)
    eps_scale = float(np.sqrt(1e-6 / jnp.mean(jnp.var(x, axis=-1))))  # where c^2 Var(x) = eps
    fig = _figure(scales, rescaled, eps_scale, runs)
    return Report(
        "2.6 Layer normalization — invariances, and an RNN with and without it",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(scales, rescaled, eps_scale, runs):
    fig, axes = plotting.figure(3, 1, height=3.4)
    ax = axes[0]
    ax.loglog(scales, rescaled, "o-", ms=3)
    ax.axvline(eps_scale, ls=":", color=plotting.PALETTE[2], label="c² Var(x) = eps")
    ax.legend(fontsize=8)
    ax.set(
        xlabel="input re-scaled by c",
        ylabel="max |LN(c x) − LN(x)|",
        title="scale invariance (eps = 1e-6)",
    )
    ax = axes[1]
    for i, name in enumerate(runs):
        ax.plot(GAINS, runs[name][1], "o-", color=plotting.PALETTE[i],
                label="with layer norm" if name == "ln" else "plain")  # fmt: skip
    ax.axhline(1 / 8, ls=":", color=plotting.PALETTE[2], label="chance")
    ax.set(
        xscale="log",
        xlabel="initial weight scale (gain)",
        ylabel="test accuracy",
        title="tanh RNN: final accuracy",
    )
    ax.set_xticks(GAINS, [f"{g:g}" for g in GAINS])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    ax = axes[2]
    for i, name in enumerate(runs):
        history = runs[name][0].history["loss_per_gain"]  # [steps, n_gains]
        for j, ls in ((1, "-"), (3, "--")):
            ax.plot(
                history[:, j],
                ls=ls,
                color=plotting.PALETTE[i],
                lw=1.2,
                label=f"{'with LN' if name == 'ln' else 'plain'}, gain {GAINS[j]:g}",
            )
    ax.set(yscale="log", xlabel="step", title="training loss")
    ax.legend(fontsize=8)
    return fig
