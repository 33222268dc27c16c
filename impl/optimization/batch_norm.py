"""2.5 Batch normalization — standardise each unit over the mini-batch, then let the net rescale it.

Ioffe & Szegedy, *Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift*, ICML 2015 (PMLR 37, 448–456). https://arxiv.org/abs/1502.03167

The idea: the distribution of each layer's inputs shifts whenever the layers below it change,
which forces small learning rates and careful initialisation. Batch normalization makes the
shift harmless by construction: every unit's pre-activation is standardised to zero mean and
unit variance *over the current mini-batch*, then scaled and shifted by two learned parameters
(``scale`` = gamma, ``bias`` = beta) so that the layer loses no expressive power. Because the
statistics come from the batch, the network behaves differently in training (batch statistics)
and evaluation (running averages of them, collected while training): the module has *state*.

Layout: pure functions hold the math; :class:`LinenBatchNorm` (parameters in ``"params"``,
running statistics in the mutable ``"batch_stats"`` collection) and :class:`NnxBatchNorm`
(``nnx.Param`` and ``nnx.BatchStat`` attributes) call the same functions. Names, defaults
(``momentum=0.99``, ``eps=1e-5``) and the running-average rule match ``flax.linen.BatchNorm``.

Shapes: ``x`` is ``float[..., features]`` (dense ``[batch, d]`` or images ``[batch, h, w, c]``),
normalised over every axis except the feature ``axis``; parameters and statistics are ``[features]``.
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
from impl.optimization.adam import sgd
from impl.optimization.relu import relu
from impl.report import Report
from impl.training import train

__all__ = [
    "LinenBatchNorm",
    "NnxBatchNorm",
    "batch_norm",
    "batch_stats",
    "check_features",
    "experiment",
    "forward",
    "normalize",
]


def check_features(x, axis: int, **params) -> int:
    """Validate ``axis`` against ``x`` and each ``[features]`` parameter; return the axis as a positive int."""
    checks.array_shape("x", x, [None] * getattr(x, "ndim", 0))  # an array, of any shape
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis: expected an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: expected an axis of x (rank {x.ndim}), in [{-x.ndim}, {x.ndim}), got {axis}")
    axis %= x.ndim
    for name, value in params.items():
        checks.array_shape(name, value, ("features",), dims="[features]")
        if value.shape[0] != x.shape[axis]:
            raise ValueError(
                f"x: expected {value.shape[0]} features along axis {axis} to match {name} {tuple(value.shape)},"
                f" got x of shape {tuple(x.shape)}"
            )
    return axis


def _along(v: jax.Array, ndim: int, axis: int) -> jax.Array:
    """``[features] -> [1, ..., features, ..., 1]`` so that it broadcasts along ``axis`` of a rank-``ndim`` array."""
    return v.reshape([-1 if i == axis else 1 for i in range(ndim)])


# --8<-- [start:core]
def batch_stats(x: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """Mini-batch mean and (biased) variance of each feature: Algorithm 1, lines 1–2.

    ``x [..., features]`` -> ``(mean [features], var [features])``, reduced over every axis but ``axis``.
    """
    axis %= x.ndim
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    mean = jnp.mean(x, axis=reduce)  # mu_B, [features]
    var = jnp.mean(jnp.square(x - _along(mean, x.ndim, axis)), axis=reduce)  # sigma_B^2, [features]
    return mean, var


def normalize(x, mean, var, scale, bias, *, eps: float = 1e-5, axis: int = -1) -> jax.Array:
    """Algorithm 1, lines 3–4: ``y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta``. Shape of ``x``."""
    axis %= x.ndim
    x_hat = (x - _along(mean, x.ndim, axis)) * _along(jax.lax.rsqrt(var + eps), x.ndim, axis)  # line 3
    return x_hat * _along(scale, x.ndim, axis) + _along(bias, x.ndim, axis)  # line 4


def batch_norm(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    running_mean: jax.Array,
    running_var: jax.Array,
    *,
    use_running_average: bool,
    momentum: float = 0.99,
    eps: float = 1e-5,
    axis: int = -1,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Batch normalization in training or evaluation mode; returns ``(y, (running_mean, running_var))``.

    Training (``use_running_average=False``): normalise with the batch's own statistics and
    fold them into exponential moving averages, ``r <- momentum * r + (1 - momentum) * batch``.
    Evaluation: normalise with the running averages, which come back unchanged. The paper's
    Algorithm 2 estimates the population variance with the unbiased ``m / (m - 1)`` factor;
    like Flax, this moving average uses the biased batch variance (the difference is 1/m).

    Args:
        x: ``[..., features]`` pre-activations.
        scale, bias: gamma and beta, ``[features]``.
        running_mean, running_var: the moving averages, ``[features]``.
        use_running_average: ``True`` for evaluation.
        momentum: decay of the moving averages, in ``[0, 1)``.
        eps: added to the variance, > 0.
        axis: the feature axis; statistics are taken over all the others.
    """
    axis = check_features(x, axis, scale=scale, bias=bias, running_mean=running_mean, running_var=running_var)
    checks.rate("momentum", momentum)
    checks.in_range("eps", eps, 0.0, float("inf"), low_inclusive=False)
    if use_running_average:  # Algorithm 2: inference with population estimates
        return normalize(x, running_mean, running_var, scale, bias, eps=eps, axis=axis), (running_mean, running_var)
    mean, var = batch_stats(x, axis)  # [features] each
    y = normalize(x, mean, var, scale, bias, eps=eps, axis=axis)
    new_mean = momentum * running_mean + (1.0 - momentum) * mean
    new_var = momentum * running_var + (1.0 - momentum) * var
    return y, (new_mean, new_var)


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenBatchNorm(nn.Module):
    """Functional twin: ``{"params": {scale, bias}, "batch_stats": {mean, var}}``, as in ``flax.linen.BatchNorm``.

    Train with ``apply(variables, x, use_running_average=False, mutable=["batch_stats"])``,
    which returns ``(y, {"batch_stats": new})``; evaluate with ``use_running_average=True``.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    eps: float = 1e-5
    axis: int = -1

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        axis = check_features(x, self.axis)
        features = (x.shape[axis],)
        scale = self.param("scale", nn.initializers.ones, features)  # gamma, [features]
        bias = self.param("bias", nn.initializers.zeros, features)  # beta, [features]
        mean = self.variable("batch_stats", "mean", jnp.zeros, features)  # [features]
        var = self.variable("batch_stats", "var", jnp.ones, features)  # [features]
        y, (new_mean, new_var) = batch_norm(
            x, scale, bias, mean.value, var.value, use_running_average=use_running_average,
            momentum=self.momentum, eps=self.eps, axis=axis,
        )  # fmt: skip
        if not use_running_average and not self.is_initializing():
            mean.value, var.value = new_mean, new_var
        return y


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxBatchNorm(nnx.Module):
    """Object-oriented twin: ``scale``/``bias`` are ``nnx.Param``, ``mean``/``var`` are ``nnx.BatchStat``.

    A training-mode call updates ``mean`` and ``var`` in place; ``model.eval()`` / ``model.train()``
    flip ``use_running_average``, as they do for ``nnx.BatchNorm``.
    """

    def __init__(
        self, num_features: int, *, use_running_average: bool = False, momentum: float = 0.99,
        eps: float = 1e-5, axis: int = -1,
    ):  # fmt: skip
        checks.positive_int("num_features", num_features)
        self.use_running_average, self.momentum, self.eps, self.axis = use_running_average, momentum, eps, axis
        self.scale = nnx.Param(jnp.ones((num_features,)))  # gamma
        self.bias = nnx.Param(jnp.zeros((num_features,)))  # beta
        self.mean = nnx.BatchStat(jnp.zeros((num_features,)))  # running mean
        self.var = nnx.BatchStat(jnp.ones((num_features,)))  # running variance

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        y, (mean, var) = batch_norm(
            x, self.scale[...], self.bias[...], self.mean[...], self.var[...],
            use_running_average=use_running_average, momentum=self.momentum, eps=self.eps, axis=self.axis,
        )  # fmt: skip
        if not use_running_average:
            self.mean[...], self.var[...] = mean, var
        return y


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: a learning-rate sweep of a ReLU MLP on digits, with and without BN.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
def init_net(key: jax.Array, sizes, *, use_bn: bool):
    """Parameters ``{"layers": [...], "bn": [...]}`` and running statistics ``[{"mean", "var"}, ...]``."""
    layers = init_mlp(key, sizes)  # dense layers from topic 1.1
    hidden = sizes[1:-1]
    bn = [{"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))} for d in hidden] if use_bn else []
    stats = [{"mean": jnp.zeros((d,)), "var": jnp.ones((d,))} for d in hidden] if use_bn else []
    return {"layers": layers, "bn": bn}, stats


def forward(params, stats, x: jax.Array, *, training: bool):
    """``x [b, 64] -> (logits [b, 10], new stats)``: dense -> (BN) -> ReLU per hidden layer, as in Sec. 3.2."""
    new_stats = []
    for i, layer in enumerate(params["layers"][:-1]):
        z = dense(layer, x)  # [batch, d_hidden]; before BN its bias is redundant (beta subsumes it), but harmless
        if params["bn"]:
            bn, s = params["bn"][i], stats[i]
            z, (mean, var) = batch_norm(
                z, bn["scale"], bn["bias"], s["mean"], s["var"], use_running_average=not training
            )
            new_stats.append({"mean": mean, "var": var})
        x = relu(z)
    return dense(params["layers"][-1], x), new_stats


LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@functools.cache
def sweep_loss(learning_rates: tuple[float, ...]):
    """One loss for a whole sweep: copy ``i`` of the net, stacked on a leading axis, has its own rate.

    ``d(sum_i eta_i L_i) / d theta_i = eta_i grad L_i``, so one step of SGD with unit learning rate
    moves each copy with its own ``eta_i``: the sweep compiles once and runs as one ``vmap``. A copy
    whose loss stops being finite is marked dead in the state and drops out of the sum.
    """
    eta = jnp.asarray(learning_rates)  # [n_lr]

    def loss_fn(params, state, batch, key):
        del key

        def one(p, s):
            logits, s = forward(p, s, batch["x"], training=True)
            return cross_entropy(logits, batch["y"]), s

        losses, stats = jax.vmap(one)(params, state["stats"])  # [n_lr], stacked stats
        alive = state["alive"] & jnp.isfinite(losses)  # bool[n_lr]
        total = jnp.sum(jnp.where(alive, eta * losses, 0.0))
        metrics = {"loss_per_rate": jnp.where(alive, losses, 0.0), "alive": alive.astype(jnp.float32)}
        return total, (metrics, {"stats": stats, "alive": alive})

    return loss_fn


OPTIMIZER = sgd(learning_rate=1.0)  # the rates live in the loss: see sweep_loss
SIZES = [64, 100, 100, 100, 10]


def sweep(key, x, y, *, use_bn: bool, steps: int, batch_size: int = 64, progress=None):
    """Train one copy of the net per learning rate (same initial weights), mini-batches of 64."""
    params, stats = init_net(key, SIZES, use_bn=use_bn)
    n = len(LEARNING_RATES)
    stack = lambda tree: jax.tree.map(lambda a: jnp.stack([a] * n), tree)  # noqa: E731
    state = {"stats": stack(stats), "alive": jnp.ones((n,), bool)}
    return train(
        sweep_loss(LEARNING_RATES), stack(params), OPTIMIZER, {"x": x, "y": y}, key=key, steps=steps,
        batch_size=batch_size, model_state=state, progress=progress, label=f"2.5 sweep {'BN' if use_bn else 'plain'}",
    )  # fmt: skip


# --8<-- [end:experiment]


TRAINED = 0.1  # a net "trains" at a rate if its final training loss is below this (chance: ln 10 = 2.3)


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 500) -> Report:
    """Learning-rate sweep with and without BN on digits; train-mode vs eval-mode batch norm.

    Metrics: the smallest and largest learning rate at which each net trains (final training
    loss < 0.1), how many of the swept rates train, the steps to reach that loss at each net's
    best rate, and the BN net's test accuracy in evaluation mode and in training mode for
    several batch sizes.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    split = data.load_digits()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    key = jax.random.key(seed)

    results, final, metrics = {}, {}, {}
    for name, use_bn in {"plain": False, "bn": True}.items():
        result = sweep(key, x, y, use_bn=use_bn, steps=steps, progress=progress)  # same initial weights
        losses = jax.vmap(lambda p, s: cross_entropy(forward(p, s, x, training=False)[0], y))(
            result.params, result.model_state["stats"]
        )  # [n_lr], evaluation mode, whole training set
        alive = np.asarray(result.model_state["alive"])
        final[name] = np.where(alive & np.isfinite(losses), np.asarray(losses), np.inf)
        results[name] = result
        ok = [lr for lr, loss in zip(LEARNING_RATES, final[name]) if loss < TRAINED]
        metrics[f"{name}_rates_that_train"] = float(len(ok))
        metrics[f"{name}_min_rate"] = min(ok, default=float("nan"))
        metrics[f"{name}_max_rate"] = max(ok, default=float("nan"))
        metrics[f"{name}_diverged"] = float(np.sum(~alive))
        metrics |= {f"{name}_final_loss_rate_{lr:g}": float(v) for lr, v in zip(LEARNING_RATES, final[name])}
        # Steps until the (smoothed) mini-batch loss first drops below TRAINED, at the rates that train.
        history = np.where(result.history["alive"] > 0, result.history["loss_per_rate"], 1e3)  # [steps, n_lr]
        below = _smooth(history) < TRAINED
        reached = [int(np.argmax(below[:, i])) + 1 for i, loss in enumerate(final[name]) if loss < TRAINED]
        metrics[f"{name}_steps_to_train"] = float(min(reached, default=steps))

    # Train mode vs eval mode: the BN net trained at 0.3, tested with batches of different sizes.
    i = LEARNING_RATES.index(0.3)
    params, stats = jax.tree.map(lambda a: a[i], (results["bn"].params, results["bn"].model_state["stats"]))
    metrics["bn_eval_test_accuracy"] = float(accuracy(forward(params, stats, x_test, training=False)[0], y_test))
    by_batch = {}
    for b in (1, 2, 4, 16, 64, 448):
        n = (x_test.shape[0] // b) * b
        logits = jax.vmap(lambda xb: forward(params, stats, xb, training=True)[0])(x_test[:n].reshape(-1, b, 64))
        by_batch[b] = float(accuracy(logits.reshape(n, -1), y_test[:n]))
        metrics[f"bn_train_mode_test_accuracy_batch_{b}"] = by_batch[b]

    lines = [f"{'learning rate':<14}" + "".join(f"{lr:>9g}" for lr in LEARNING_RATES)]
    for name in final:
        cells = "".join(f"{v:>9.3g}" if np.isfinite(v) else f"{'diverged':>9}" for v in final[name])
        lines.append(f"{('plain' if name == 'plain' else 'with BN') + ' loss':<14}{cells}")
    for name, label in {"plain": "plain", "bn": "with BN"}.items():
        lines.append(
            f"{label}: trains (final loss < {TRAINED}) at rates {metrics[f'{name}_min_rate']:g}"
            f"–{metrics[f'{name}_max_rate']:g}; fastest reaches it in {metrics[f'{name}_steps_to_train']:.0f} steps"
        )
    lines += [
        f"BN net (rate 0.3), test accuracy in eval mode: {metrics['bn_eval_test_accuracy']:.1%}",
        "  in train mode, test batches of " + ", ".join(f"{b}: {a:.1%}" for b, a in by_batch.items()),
    ]
    fig = _figure(final, results, by_batch, metrics["bn_eval_test_accuracy"])
    return Report(
        "2.5 Batch normalization — learning-rate sweep with and without BN", metrics, lines, fig,
        time.perf_counter() - start,
    )  # fmt: skip


def _smooth(h: np.ndarray, window: int = 20) -> np.ndarray:
    """Running mean over ``window`` steps of ``h [steps, k]`` (the mini-batch losses are noisy)."""
    c = np.cumsum(np.pad(h, ((window, 0), (0, 0)), mode="edge"), axis=0)
    return (c[window:] - c[:-window]) / window


def _figure(final, results, by_batch, eval_accuracy):
    fig, axes = plotting.figure(3, 1, width=10.5, height=3.6)
    labels = {"plain": "plain", "bn": "with BN"}
    ceiling = 30.0
    ax = axes[0]
    for i, (name, losses) in enumerate(final.items()):
        shown = np.where(np.isfinite(losses), np.minimum(losses, ceiling), np.nan)  # gaps where diverged
        ax.plot(LEARNING_RATES, shown, "o-", color=plotting.PALETTE[i], label=labels[name])
        bad = ~np.isfinite(losses)
        ax.plot(np.asarray(LEARNING_RATES)[bad], np.full(bad.sum(), ceiling), "x", ms=10, color=plotting.PALETTE[i])
    ax.axhline(TRAINED, ls=":", color=plotting.PALETTE[2], label=f"trained (loss < {TRAINED})")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final training loss",
           title="learning-rate sweep (x = diverged)")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, name in enumerate(results):
        for lr, ls in ((0.1, "-"), (1.0, "--")):
            j = LEARNING_RATES.index(lr)
            h = results[name].history["loss_per_rate"][:, j]
            alive = results[name].history["alive"][:, j] > 0
            ax.plot(np.where(alive, _smooth(h[:, None])[:, 0], np.nan), ls=ls, color=plotting.PALETTE[i],
                    label=f"{labels[name]}, rate {lr:g}")  # fmt: skip
    ax.set(yscale="log", ylim=(1e-3, 10), xlabel="step", title="training loss (mini-batch, smoothed)")
    ax.legend(fontsize=8)
    ax = axes[2]
    sizes = list(by_batch)
    ax.plot(sizes, [by_batch[b] for b in sizes], "o-", color=plotting.PALETTE[1], label="train mode (batch statistics)")
    ax.axhline(eval_accuracy, ls="--", color=plotting.PALETTE[0], label="eval mode (running averages)")
    ax.set(xscale="log", xlabel="test batch size", ylabel="test accuracy", title="BN net: train vs eval mode")
    ax.legend(fontsize=8)
    return fig
