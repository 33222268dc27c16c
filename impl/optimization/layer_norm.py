"""2.6 Layer normalization — standardise each example over its own features, not over the batch.

Ba, Kiros & Hinton, *Layer Normalization*, arXiv:1607.06450 (2016).
https://arxiv.org/abs/1607.06450

The idea: batch normalization (topic 2.5) takes its statistics over the mini-batch, so its
output for one example depends on the others, it needs running averages for evaluation and it
does not fit recurrent nets, whose statistics change at every time step. Layer normalization
takes the mean and variance over the *hidden units of one layer for one example* instead.
Nothing depends on the batch, training and evaluation compute the same thing, and the same
function applies unchanged at every time step of a recurrent net. A learned gain and bias per
unit (``scale`` and ``bias``) give back the freedom the standardisation took away. This is the
normalization of the Transformer, GPT-2 and ViT, which import it from here.

Layout: pure functions hold the math and :func:`init_layer_norm` declares the parameters;
:class:`LinenLayerNorm` and :class:`NnxLayerNorm` hold that tree and call the same functions.
Keyword names and defaults (``epsilon=1e-6``, ``reduction_axes``, ``feature_axes``, ``dtype``,
``param_dtype``, ``use_bias``, ``use_scale``) and the parameters ``scale`` and ``bias`` are
those of ``flax.linen.LayerNorm`` / ``nnx.LayerNorm``, so Flax's variables load unchanged. As in
Flax, the statistics are computed in at least float32 and the output is cast to ``dtype`` (by
default the common dtype of the input and the parameters); complex inputs are normalised by
$|x - \\mu|^2$. Differences from Flax: the variance is always computed in two passes (Flax's
default ``use_fast_variance=True`` subtracts $|E[x]|^2$ from $E[|x|^2]$ and loses digits when
the mean is large); no ``axis_name``, ``mask`` or custom initialisers; ``epsilon`` must be > 0.
:func:`init_rnn` and :func:`rnn` are the paper's layer-normalised recurrent net (eq. 4), run
by topic 3.1's recurrence; the experiment lives in :mod:`impl.optimization.layer_norm_experiment`.

Shapes: ``x`` is ``float[..., features]``, normalised over ``reduction_axes`` (the last by
default); ``scale`` and ``bias`` are ``[features]``, the sizes of ``feature_axes`` (the last by
default). The output has the shape of ``x``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import init_layer
from impl.optimization.batch_norm import check_features, squared_magnitude, statistics_dtype
from impl.sequence.rnn import scan_over_time

__all__ = [
    "LinenLayerNorm",
    "NnxLayerNorm",
    "init_layer_norm",
    "init_rnn",
    "layer_norm",
    "layer_stats",
    "rnn",
]


# --8<-- [start:core]
def layer_stats(
    x: jax.Array, reduction_axes: int | tuple[int, ...] = -1
) -> tuple[jax.Array, jax.Array]:
    """Eq. 3: mean and variance over the ``H`` units of one layer, per example.

    ``x [..., H, ...]`` -> ``(mean, var)``, each shaped like ``x`` with the ``reduction_axes`` of
    size 1, in at least float32 (`statistics_dtype`); the variance is the mean of $|a - \\mu|^2$.
    """
    x = x.astype(statistics_dtype(x))
    mean = jnp.mean(x, axis=reduction_axes, keepdims=True)  # mu = 1/H sum_i a_i
    centred = x - mean
    # 1/H sum |a_i - mu|^2
    var = jnp.mean(squared_magnitude(centred), axis=reduction_axes, keepdims=True)
    return mean, var


def layer_norm(
    x: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    *,
    epsilon: float = 1e-6,
    reduction_axes: int | tuple[int, ...] = -1,
    feature_axes: int | tuple[int, ...] = -1,
    dtype=None,
) -> jax.Array:
    """``y = scale * (x - mu) / sqrt(sigma^2 + epsilon) + bias`` with ``mu, sigma`` from
    :func:`layer_stats`.

    Args:
        x: ``[..., features]`` summed inputs of a layer.
        scale, bias: the paper's gain ``g`` and bias ``b``, ``[features]``, or ``None`` for none.
        epsilon: added to the variance, > 0: keeps a constant input finite (it maps to ``bias``).
        reduction_axes: the axis (or axes) the statistics are taken over.
        feature_axes: the axis (or axes) ``scale`` and ``bias`` run along.
        dtype: the output's dtype (default: the common dtype of ``x``, ``scale`` and ``bias``).
    """
    feature_axes = check_features(x, feature_axes, "feature_axes", scale=scale, bias=bias)
    reduction_axes = check_features(x, reduction_axes, "reduction_axes")
    checks.in_range("epsilon", epsilon, 0.0, float("inf"), low_inclusive=False)
    # [1, ..., features, ..., 1]
    shape = [x.shape[i] if i in feature_axes else 1 for i in range(x.ndim)]
    out = (
        dtype
        if dtype is not None
        else jnp.result_type(x, *(p for p in (scale, bias) if p is not None))
    )
    mean, var = layer_stats(x, reduction_axes)
    y = (x - mean) * jax.lax.rsqrt(var + epsilon)  # (a - mu) / sigma, in the statistics' dtype
    if scale is not None:
        y = y * scale.reshape(shape)  # g * x_hat (eq. 4's inner part) ...
    if bias is not None:
        y = y + bias.reshape(shape)  # ... + b
    return y.astype(out)


def init_layer_norm(
    num_features: int | tuple[int, ...],
    *,
    param_dtype=jnp.float32,
    use_bias: bool = True,
    use_scale: bool = True,
) -> dict[str, jax.Array]:
    """``{"scale": 1, "bias": 0}``, each ``[features]`` in ``param_dtype``: the gain ``g`` and bias
    ``b`` start as the identity. ``num_features`` is an int or the feature axes' sizes;
    ``use_scale=False`` or ``use_bias=False`` leaves that entry out."""
    shape = num_features if isinstance(num_features, tuple) else (num_features,)
    shape = tuple(checks.positive_int("num_features", n) for n in shape)
    params = {"scale": jnp.ones(shape, param_dtype), "bias": jnp.zeros(shape, param_dtype)}  # g, b
    return {k: v for k, v in params.items() if {"scale": use_scale, "bias": use_bias}[k]}


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenLayerNorm(nn.Module):
    """Functional twin: ``{"params": init_layer_norm(features)}`` = ``{"scale", "bias"}``; no state,
    no modes."""

    epsilon: float = 1e-6
    dtype: Any = None
    param_dtype: Any = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    reduction_axes: int | tuple[int, ...] = -1
    feature_axes: int | tuple[int, ...] = -1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axes = check_features(x, self.feature_axes, "feature_axes")
        params = init_layer_norm(
            tuple(x.shape[a] for a in axes), param_dtype=self.param_dtype, use_bias=self.use_bias,
            use_scale=self.use_scale,
        )  # initial values: constants, so no key is used  # fmt: skip
        # g, [features]
        scale = self.param("scale", lambda _: params["scale"]) if self.use_scale else None
        # b, [features]
        bias = self.param("bias", lambda _: params["bias"]) if self.use_bias else None
        return layer_norm(
            x,
            scale,
            bias,
            epsilon=self.epsilon,
            reduction_axes=self.reduction_axes,
            feature_axes=axes,
            dtype=self.dtype,
        )


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxLayerNorm(nnx.Module):
    """Object-oriented twin: ``scale`` and ``bias`` are the ``nnx.Param``s `init_layer_norm`
    declares.

    Keywords as ``nnx.LayerNorm``'s (no ``rngs``: the initial values are constants).
    """

    def __init__(
        self, num_features: int, *, epsilon: float = 1e-6, dtype=None, param_dtype=jnp.float32,
        use_bias: bool = True, use_scale: bool = True, reduction_axes: int | tuple[int, ...] = -1,
        feature_axes: int | tuple[int, ...] = -1,
    ):  # fmt: skip
        params = init_layer_norm(
            num_features, param_dtype=param_dtype, use_bias=use_bias, use_scale=use_scale
        )
        self.epsilon, self.dtype, self.reduction_axes = epsilon, dtype, reduction_axes
        self.feature_axes = feature_axes
        for name, value in params.items():  # scale (g) and bias (b), unless switched off
            setattr(self, name, twins.to_nnx(value))

    def __call__(self, x: jax.Array) -> jax.Array:
        params = twins.pure(self)  # {"scale": [features], "bias": [features]}
        return layer_norm(
            x,
            params.get("scale"),
            params.get("bias"),
            epsilon=self.epsilon,
            reduction_axes=self.reduction_axes,
            feature_axes=self.feature_axes,
            dtype=self.dtype,
        )


# --8<-- [end:nnx]


# --8<-- [start:rnn]
def init_rnn(key: jax.Array, vocab: int, hidden: int, gain: float) -> dict:
    """A tanh RNN whose input and recurrent weights start with standard deviation ``gain``
    (``gain / sqrt(H)``)."""
    k_x, k_h, k_out = jax.random.split(key, 3)
    return {
        "w_x": gain * jax.random.normal(k_x, (vocab, hidden)),  # W_xh as an embedding table
        "w_h": gain * jax.random.normal(k_h, (hidden, hidden)) / jnp.sqrt(hidden),  # W_hh
        **init_layer_norm(hidden),  # g = 1 (used with layer norm only), b = 0: [H] each
        "out": init_layer(k_out, hidden, vocab),
    }


def rnn(params: dict, tokens: jax.Array, *, use_ln: bool) -> jax.Array:
    """``tokens int[b, T] -> hidden states [b, T, H]``, by topic 3.1's ``lax.scan`` recurrence.

    ``a_t = W_hh h_{t-1} + W_xh x_t``; plain: ``h_t = tanh(a_t + b)``; with layer norm (eq. 4 of
    the paper): ``h_t = tanh(g / sigma_t * (a_t - mu_t) + b)``, statistics over the H units.
    """
    b, hidden = tokens.shape[0], params["w_h"].shape[0]

    def step(params, h, x_t):  # h [b, H], x_t int[b, 1]
        a = params["w_x"][x_t[:, 0]] + h @ params["w_h"]  # summed inputs a_t, [b, H]
        if use_ln:
            a = layer_norm(a, params["scale"], params["bias"])
        else:
            a = a + params["bias"].reshape(1, -1)
        h = jnp.tanh(a)
        return h, h

    # topic 3.1's recurrence: [b, T, H]
    return scan_over_time(step, params, tokens[..., None], jnp.zeros((b, hidden)))


# --8<-- [end:rnn]
