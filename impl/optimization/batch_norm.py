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

Layout: pure functions hold the math, and :func:`init_batch_norm` declares the parameters and
the running statistics once; :class:`LinenBatchNorm` (parameters in ``"params"``, running
statistics in the mutable ``"batch_stats"`` collection) and :class:`NnxBatchNorm` (``nnx.Param``
and ``nnx.BatchStat`` attributes) hold those trees and call the same functions. Names, defaults
(``momentum=0.99``, ``eps=1e-5``) and the running-average rule match ``flax.linen.BatchNorm``.
:func:`init_net` and :func:`forward` are the experiment's ReLU MLP with BN after each hidden
layer; the experiment itself lives in :mod:`impl.optimization.batch_norm_experiment`.

Shapes: ``x`` is ``float[..., features]`` (dense ``[batch, d]`` or images ``[batch, h, w, c]``),
normalised over every axis except the feature ``axis``; parameters and statistics are ``[features]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import dense, init_mlp
from impl.optimization.relu import relu

__all__ = [
    "LinenBatchNorm",
    "NnxBatchNorm",
    "batch_norm",
    "batch_stats",
    "check_features",
    "forward",
    "init_batch_norm",
    "init_net",
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


def init_batch_norm(num_features: int) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """``(params, stats)`` for ``num_features`` units, each entry ``[features]``.

    ``params = {"scale": 1, "bias": 0}`` (gamma and beta: the identity transform, Sec. 3) and
    ``stats = {"mean": 0, "var": 1}`` (the running averages, before any batch has been seen).
    """
    num_features = checks.positive_int("num_features", num_features)
    params = {"scale": jnp.ones((num_features,)), "bias": jnp.zeros((num_features,))}  # gamma, beta
    stats = {"mean": jnp.zeros((num_features,)), "var": jnp.ones((num_features,))}  # running mean, variance
    return params, stats


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenBatchNorm(nn.Module):
    """Functional twin: ``{"params": {scale, bias}, "batch_stats": {mean, var}}``, as in ``flax.linen.BatchNorm``.

    The two trees are those `init_batch_norm` declares. Train with
    ``apply(variables, x, use_running_average=False, mutable=["batch_stats"])``, which returns
    ``(y, {"batch_stats": new})``; evaluate with ``use_running_average=True``.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    eps: float = 1e-5
    axis: int = -1

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        axis = check_features(x, self.axis)
        params, stats = init_batch_norm(x.shape[axis])  # initial values: constants, so no key is used
        scale = self.param("scale", lambda _: params["scale"])  # gamma, [features]
        bias = self.param("bias", lambda _: params["bias"])  # beta, [features]
        mean = self.variable("batch_stats", "mean", lambda: stats["mean"])  # [features]
        var = self.variable("batch_stats", "var", lambda: stats["var"])  # [features]
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

    The entries are those `init_batch_norm` declares. A training-mode call updates ``mean`` and
    ``var`` in place; ``model.eval()`` / ``model.train()`` flip ``use_running_average``, as they
    do for ``nnx.BatchNorm``.
    """

    def __init__(
        self, num_features: int, *, use_running_average: bool = False, momentum: float = 0.99,
        eps: float = 1e-5, axis: int = -1,
    ):  # fmt: skip
        params, stats = init_batch_norm(num_features)
        self.use_running_average, self.momentum, self.eps, self.axis = use_running_average, momentum, eps, axis
        self.scale, self.bias = twins.to_nnx(params["scale"]), twins.to_nnx(params["bias"])  # gamma, beta
        self.mean, self.var = twins.to_nnx(stats["mean"], nnx.BatchStat), twins.to_nnx(stats["var"], nnx.BatchStat)

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        params, stats = twins.pure(self), twins.pure(self, nnx.BatchStat)  # {"scale", "bias"}, {"mean", "var"}
        y, (mean, var) = batch_norm(
            x, params["scale"], params["bias"], stats["mean"], stats["var"],
            use_running_average=use_running_average, momentum=self.momentum, eps=self.eps, axis=self.axis,
        )  # fmt: skip
        if not use_running_average:
            self.mean[...], self.var[...] = mean, var
        return y


# --8<-- [end:nnx]


# --8<-- [start:network]
def init_net(key: jax.Array, sizes, *, use_bn: bool):
    """Parameters ``{"layers": [...], "bn": [...]}`` and running statistics ``[{"mean", "var"}, ...]``.

    ``sizes = [d_in, hidden..., n_out]``; with ``use_bn`` every hidden layer gets `init_batch_norm`'s trees.
    """
    layers = init_mlp(key, sizes)  # dense layers from topic 1.1
    norms = [init_batch_norm(d) for d in sizes[1:-1]] if use_bn else []  # (params, stats) per hidden layer
    return {"layers": layers, "bn": [params for params, _ in norms]}, [stats for _, stats in norms]


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


# --8<-- [end:network]
