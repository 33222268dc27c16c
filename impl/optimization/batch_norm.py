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
and ``nnx.BatchStat`` attributes) hold those trees and call the same functions. Keyword names,
defaults (``momentum=0.99``, ``epsilon=1e-5``, ``axis``, ``dtype``, ``param_dtype``,
``use_bias``, ``use_scale``), variables and the running-average rule are those of
``flax.linen.BatchNorm`` / ``nnx.BatchNorm``, so Flax's variables load into these modules
unchanged. As in Flax, statistics are computed in at least float32 (a bfloat16 or float16
input is promoted, then the output is cast to ``dtype``, by default the input's and
parameters' common dtype) and the running statistics are kept in float32. Differences from
Flax: the variance is always computed in two passes, $E[|x - E[x]|^2]$ (Flax's default
``use_fast_variance=True`` uses $E[|x|^2] - |E[x]|^2$, which loses digits when the mean is
large); there is no ``axis_name`` (cross-device statistics), ``mask``, custom initialisers or
``force_float32_reductions=False``; ``epsilon`` must be > 0.
:func:`init_net` and :func:`forward` are the experiment's ReLU MLP with BN after each hidden
layer; the experiment itself lives in :mod:`impl.optimization.batch_norm_experiment`.

Shapes: ``x`` is ``float[..., features]`` (dense ``[batch, d]`` or images ``[batch, h, w, c]``;
real or complex), normalised over every axis except the feature ``axis`` (an int or a tuple of
axes); parameters and statistics are ``[features]`` (the feature axes' sizes).
"""

from __future__ import annotations

from typing import Any

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
    "squared_magnitude",
    "statistics_dtype",
]


def check_features(x, axes, name: str = "axis", **params) -> tuple[int, ...]:
    """Validate ``axes`` (an int or a tuple of ints, named ``name``) against ``x``, and each
    parameter (``None`` or an array) against ``x``'s sizes along them; return the axes, positive and
    sorted."""
    checks.array_shape("x", x, [None] * getattr(x, "ndim", 0))  # an array, of any shape
    axes_tuple = axes if isinstance(axes, tuple | list) else (axes,)
    for a in axes_tuple:
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"{name}: expected an int or a tuple of ints, got {axes!r}")
        if not -x.ndim <= a < x.ndim:
            raise ValueError(
                f"{name}: expected axes of x (rank {x.ndim}), in [{-x.ndim}, {x.ndim}), got {axes}"
            )
    axes_tuple = tuple(sorted({a % x.ndim for a in axes_tuple}))
    expected = tuple(x.shape[a] for a in axes_tuple)
    for param, value in params.items():
        if value is None:
            continue
        checks.array_shape(param, value, [None] * len(expected), dims="[features]")
        if tuple(value.shape) != expected:
            where = "axis" if len(axes_tuple) == 1 else "axes"
            along = axes_tuple[0] if len(axes_tuple) == 1 else axes_tuple
            count = expected[0] if len(expected) == 1 else expected
            raise ValueError(
                f"x: expected {value.shape[0] if value.ndim == 1 else tuple(value.shape)} "
                f"features along {where} {along} to match {param} {tuple(value.shape)}, "
                f"got x of shape {tuple(x.shape)} ({count} there)"
            )
    return axes_tuple


def statistics_dtype(x: jax.Array):
    """The dtype statistics are computed in: at least float32 (bfloat16 and float16 sums lose the
    mean and overflow the variance), float64 or complex where ``x`` is. Flax does the same."""
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def squared_magnitude(x: jax.Array) -> jax.Array:
    """$|x|^2$ elementwise: ``x**2`` for real ``x``, ``re**2 + im**2`` for complex ``x`` (as
    Flax)."""
    return jnp.square(x.real) + jnp.square(x.imag) if jnp.iscomplexobj(x) else jnp.square(x)


def _along(v: jax.Array | None, ndim: int, axes: tuple[int, ...]) -> jax.Array | None:
    """``[features] -> [1, ..., features, ..., 1]`` so that it broadcasts along ``axes`` of a
    rank-``ndim`` array."""
    if v is None:
        return None
    shape = [1] * ndim
    for a, size in zip(axes, v.shape, strict=True):
        shape[a] = size
    return v.reshape(shape)


def _output_dtype(dtype, x, *params):
    """``dtype``, or (as Flax infers it) the common dtype of ``x`` and the parameters in use."""
    return dtype if dtype is not None else jnp.result_type(x, *(p for p in params if p is not None))


# --8<-- [start:core]
def batch_stats(x: jax.Array, axis: int | tuple[int, ...] = -1) -> tuple[jax.Array, jax.Array]:
    """Mini-batch mean and (biased) variance of each feature: Algorithm 1, lines 1–2.

    ``x [..., features]`` -> ``(mean [features], var [features])``, reduced over every axis but
    ``axis``, in at least float32 (`statistics_dtype`); the variance is the mean of $|x - \\mu|^2$.
    """
    axes = tuple(
        sorted({a % x.ndim for a in (axis if isinstance(axis, tuple | list) else (axis,))})
    )
    reduce = tuple(i for i in range(x.ndim) if i not in axes)
    x = x.astype(statistics_dtype(x))
    mean = jnp.mean(x, axis=reduce)  # mu_B, [features]
    centred = x - _along(mean, x.ndim, axes)
    # sigma_B^2 = mean |x - mu_B|^2, [features]
    var = jnp.mean(squared_magnitude(centred), axis=reduce)
    return mean, var


def normalize(
    x, mean, var, scale, bias, *, epsilon: float = 1e-5, axis=-1, dtype=None
) -> jax.Array:
    """Algorithm 1, lines 3–4: ``y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta``. Shape of
    ``x``.

    ``scale`` or ``bias`` may be ``None`` (skipped). Computed in the statistics' dtype, returned
    in ``dtype`` (default: the common dtype of ``x``, ``scale`` and ``bias``).
    """
    axes = tuple(
        sorted({a % x.ndim for a in (axis if isinstance(axis, tuple | list) else (axis,))})
    )
    out = _output_dtype(dtype, x, scale, bias)
    # line 3
    y = (x - _along(mean, x.ndim, axes)) * _along(jax.lax.rsqrt(var + epsilon), x.ndim, axes)
    if scale is not None:
        y = y * _along(scale, x.ndim, axes)  # line 4: gamma
    if bias is not None:
        y = y + _along(bias, x.ndim, axes)  # line 4: beta
    return y.astype(out)


def batch_norm(
    x: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    running_mean: jax.Array,
    running_var: jax.Array,
    *,
    use_running_average: bool,
    momentum: float = 0.99,
    epsilon: float = 1e-5,
    axis: int | tuple[int, ...] = -1,
    dtype=None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Batch normalization in training or evaluation mode; returns
    ``(y, (running_mean, running_var))``.

    Training (``use_running_average=False``): normalise with the batch's own statistics and
    fold them into exponential moving averages, ``r <- momentum * r + (1 - momentum) * batch``.
    Evaluation: normalise with the running averages, which come back unchanged. The paper's
    Algorithm 2 estimates the population variance with the unbiased ``m / (m - 1)`` factor;
    like Flax, this moving average uses the biased batch variance (the difference is 1/m).

    Args:
        x: ``[..., features]`` pre-activations.
        scale, bias: gamma and beta, ``[features]``, or ``None`` for none.
        running_mean, running_var: the moving averages, ``[features]`` (float32).
        use_running_average: ``True`` for evaluation.
        momentum: decay of the moving averages, in ``[0, 1)``.
        epsilon: added to the variance, > 0.
        axis: the feature axis (or axes); statistics are taken over all the others.
        dtype: the output's dtype (default: the common dtype of ``x``, ``scale`` and ``bias``).
    """
    axis = check_features(
        x, axis, scale=scale, bias=bias, running_mean=running_mean, running_var=running_var
    )
    checks.rate("momentum", momentum)
    checks.in_range("epsilon", epsilon, 0.0, float("inf"), low_inclusive=False)
    if use_running_average:  # Algorithm 2: inference with population estimates
        y = normalize(
            x, running_mean, running_var, scale, bias, epsilon=epsilon, axis=axis, dtype=dtype
        )
        return y, (running_mean, running_var)
    mean, var = batch_stats(x, axis)  # [features] each, float32 at least
    y = normalize(x, mean, var, scale, bias, epsilon=epsilon, axis=axis, dtype=dtype)
    new_mean = momentum * running_mean + (1.0 - momentum) * mean
    new_var = momentum * running_var + (1.0 - momentum) * var
    return y, (new_mean, new_var)


def init_batch_norm(
    num_features: int | tuple[int, ...],
    *,
    param_dtype=jnp.float32,
    use_bias: bool = True,
    use_scale: bool = True,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """``(params, stats)`` for ``num_features`` units (an int, or the feature axes' sizes).

    ``params = {"scale": 1, "bias": 0}`` (gamma and beta: the identity transform, Sec. 3; in
    ``param_dtype``, either left out by ``use_scale``/``use_bias``) and ``stats = {"mean": 0,
    "var": 1}`` (the running averages before any batch has been seen, float32 as in Flax).
    """
    shape = num_features if isinstance(num_features, tuple) else (num_features,)
    shape = tuple(checks.positive_int("num_features", n) for n in shape)
    # gamma, beta
    params = {"scale": jnp.ones(shape, param_dtype), "bias": jnp.zeros(shape, param_dtype)}
    params = {k: v for k, v in params.items() if {"scale": use_scale, "bias": use_bias}[k]}
    # running mean, variance
    stats = {"mean": jnp.zeros(shape, jnp.float32), "var": jnp.ones(shape, jnp.float32)}
    return params, stats


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenBatchNorm(nn.Module):
    """Functional twin: ``{"params": {scale, bias}, "batch_stats": {mean, var}}``, as in
    ``flax.linen.BatchNorm``.

    The two trees are those `init_batch_norm` declares. Train with
    ``apply(variables, x, use_running_average=False, mutable=["batch_stats"])``, which returns
    ``(y, {"batch_stats": new})``; evaluate with ``use_running_average=True``.
    """

    use_running_average: bool | None = None
    axis: int | tuple[int, ...] = -1
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    use_bias: bool = True
    use_scale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        axes = check_features(x, self.axis)
        params, stats = init_batch_norm(
            tuple(x.shape[a] for a in axes), param_dtype=self.param_dtype, use_bias=self.use_bias,
            use_scale=self.use_scale,
        )  # initial values: constants, so no key is used  # fmt: skip
        # gamma, [features]
        scale = self.param("scale", lambda _: params["scale"]) if self.use_scale else None
        # beta, [features]
        bias = self.param("bias", lambda _: params["bias"]) if self.use_bias else None
        mean = self.variable("batch_stats", "mean", lambda: stats["mean"])  # [features]
        var = self.variable("batch_stats", "var", lambda: stats["var"])  # [features]
        y, (new_mean, new_var) = batch_norm(
            x, scale, bias, mean.value, var.value, use_running_average=use_running_average,
            momentum=self.momentum, epsilon=self.epsilon, axis=axes, dtype=self.dtype,
        )  # fmt: skip
        if not use_running_average and not self.is_initializing():
            mean.value, var.value = new_mean, new_var
        return y


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxBatchNorm(nnx.Module):
    """Object-oriented twin: ``scale``/``bias`` are ``nnx.Param``, ``mean``/``var`` are
    ``nnx.BatchStat``.

    The entries are those `init_batch_norm` declares. A training-mode call updates ``mean`` and
    ``var`` in place; ``model.eval()`` / ``model.train()`` flip ``use_running_average``, as they do
    for ``nnx.BatchNorm`` (whose keywords these are; no ``rngs``: the initial values are constants).
    """

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool = False,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        dtype=None,
        param_dtype=jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
    ):
        params, stats = init_batch_norm(
            num_features, param_dtype=param_dtype, use_bias=use_bias, use_scale=use_scale
        )
        self.use_running_average, self.axis, self.momentum = use_running_average, axis, momentum
        self.epsilon = epsilon
        self.dtype = dtype
        for name, value in params.items():  # scale (gamma) and bias (beta), unless switched off
            setattr(self, name, twins.to_nnx(value))
        self.mean = twins.to_nnx(stats["mean"], nnx.BatchStat)
        self.var = twins.to_nnx(stats["var"], nnx.BatchStat)

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        # {"scale", "bias"}, {"mean", "var"}
        params, stats = twins.pure(self), twins.pure(self, nnx.BatchStat)
        y, (mean, var) = batch_norm(
            x,
            params.get("scale"),
            params.get("bias"),
            stats["mean"],
            stats["var"],
            use_running_average=use_running_average,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis=self.axis,
            dtype=self.dtype,
        )
        if not use_running_average:
            self.mean[...], self.var[...] = mean, var
        return y


# --8<-- [end:nnx]


# --8<-- [start:network]
def init_net(key: jax.Array, sizes, *, use_bn: bool):
    """Parameters ``{"layers": [...], "bn": [...]}`` and running statistics
    ``[{"mean", "var"}, ...]``.

    ``sizes = [d_in, hidden..., n_out]``; with ``use_bn`` every hidden layer gets
    `init_batch_norm`'s trees.
    """
    layers = init_mlp(key, sizes)  # dense layers from topic 1.1
    # (params, stats) per hidden layer
    norms = [init_batch_norm(d) for d in sizes[1:-1]] if use_bn else []
    return {"layers": layers, "bn": [params for params, _ in norms]}, [stats for _, stats in norms]


def forward(params, stats, x: jax.Array, *, training: bool):
    """``x [b, 64] -> (logits [b, 10], new stats)``: dense -> (BN) -> ReLU per hidden layer, as in
    Sec. 3.2."""
    new_stats = []
    for i, layer in enumerate(params["layers"][:-1]):
        # [batch, d_hidden]; before BN its bias is redundant (beta subsumes it), but harmless
        z = dense(layer, x)
        if params["bn"]:
            bn, s = params["bn"][i], stats[i]
            z, (mean, var) = batch_norm(
                z, bn["scale"], bn["bias"], s["mean"], s["var"], use_running_average=not training
            )
            new_stats.append({"mean": mean, "var": var})
        x = relu(z)
    return dense(params["layers"][-1], x), new_stats


# --8<-- [end:network]
