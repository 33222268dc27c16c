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
Names and defaults (``eps=1e-6``, parameters ``scale`` and ``bias``) match ``flax.linen.LayerNorm``.
:func:`init_rnn` and :func:`rnn` are the paper's layer-normalised recurrent net (eq. 4), run
by topic 3.1's recurrence; the experiment lives in :mod:`impl.optimization.layer_norm_experiment`.

Shapes: ``x`` is ``float[..., features]``, normalised along ``axis`` (the last by default);
``scale`` and ``bias`` are ``[features]``. The output has the shape of ``x``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import init_layer
from impl.optimization.batch_norm import check_features
from impl.sequence.rnn import scan_over_time

__all__ = ["LinenLayerNorm", "NnxLayerNorm", "init_layer_norm", "init_rnn", "layer_norm", "layer_stats", "rnn"]


# --8<-- [start:core]
def layer_stats(x: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """Eq. 3: mean and variance over the ``H`` units of one layer, per example.

    ``x [..., H, ...]`` -> ``(mean, var)``, each shaped like ``x`` with ``axis`` of size 1.
    """
    mean = jnp.mean(x, axis=axis, keepdims=True)  # mu = 1/H sum_i a_i
    var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)  # sigma^2 = 1/H sum_i (a_i - mu)^2
    return mean, var


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, *, eps: float = 1e-6, axis: int = -1) -> jax.Array:
    """``y = scale * (x - mu) / sqrt(sigma^2 + eps) + bias`` with ``mu, sigma`` from :func:`layer_stats`.

    Args:
        x: ``[..., features]`` summed inputs of a layer.
        scale, bias: the paper's gain ``g`` and bias ``b``, ``[features]``.
        eps: added to the variance, > 0: keeps a constant input finite (it maps to ``bias``).
        axis: the feature axis that is normalised.
    """
    axis = check_features(x, axis, scale=scale, bias=bias)
    shape = [-1 if i == axis else 1 for i in range(x.ndim)]  # [1, ..., features, ..., 1]
    mean, var = layer_stats(x, axis)
    x_hat = (x - mean) * jax.lax.rsqrt(var + eps)  # (a - mu) / sigma
    return x_hat * scale.reshape(shape) + bias.reshape(shape)  # g * x_hat + b (eq. 4's inner part)


def init_layer_norm(num_features: int) -> dict[str, jax.Array]:
    """``{"scale": 1, "bias": 0}``, each ``[features]``: the gain ``g`` and bias ``b`` start as the identity."""
    num_features = checks.positive_int("num_features", num_features)
    return {"scale": jnp.ones((num_features,)), "bias": jnp.zeros((num_features,))}  # g, b


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenLayerNorm(nn.Module):
    """Functional twin: ``{"params": init_layer_norm(features)}`` = ``{"scale", "bias"}``; no state, no modes."""

    eps: float = 1e-6
    axis: int = -1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axis = check_features(x, self.axis)
        params = init_layer_norm(x.shape[axis])  # initial values: constants, so no key is used
        scale = self.param("scale", lambda _: params["scale"])  # g, [features]
        bias = self.param("bias", lambda _: params["bias"])  # b, [features]
        return layer_norm(x, scale, bias, eps=self.eps, axis=axis)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxLayerNorm(nnx.Module):
    """Object-oriented twin: ``scale`` and ``bias`` are the ``nnx.Param``s `init_layer_norm` declares."""

    def __init__(self, num_features: int, *, eps: float = 1e-6, axis: int = -1):
        params = init_layer_norm(num_features)
        self.eps, self.axis = eps, axis
        self.scale, self.bias = twins.to_nnx(params["scale"]), twins.to_nnx(params["bias"])  # g, b

    def __call__(self, x: jax.Array) -> jax.Array:
        params = twins.pure(self)  # {"scale": [features], "bias": [features]}
        return layer_norm(x, params["scale"], params["bias"], eps=self.eps, axis=self.axis)


# --8<-- [end:nnx]


# --8<-- [start:rnn]
def init_rnn(key: jax.Array, vocab: int, hidden: int, gain: float) -> dict:
    """A tanh RNN whose input and recurrent weights start with standard deviation ``gain`` (``gain / sqrt(H)``)."""
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

    return scan_over_time(step, params, tokens[..., None], jnp.zeros((b, hidden)))  # topic 3.1's recurrence: [b, T, H]


# --8<-- [end:rnn]
