"""2.4 Dropout — randomly silencing units while training, so that none can rely on another.

Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, *Dropout: A Simple Way to Prevent
Neural Networks from Overfitting*, JMLR 15(56), 1929–1958 (2014).
https://jmlr.org/papers/v15/srivastava14a.html

The idea: while training, multiply every unit's output by an independent Bernoulli variable,
so that each step trains a different "thinned" network drawn from the exponentially many that
share the weights, and no unit can count on any particular other unit being there. At test
time use all units: the full network approximates the average of the thinned ones. This module
implements *inverted* dropout: the kept units are scaled by ``1 / (1 - rate)`` during training,
so the expected activation is unchanged and evaluation is the plain network, with no rescaling.

Layout: pure functions hold the math; :class:`LinenDropout` and :class:`NnxDropout` call them
(dropout has no parameters: the twins differ only in where the random key comes from);
:func:`mlp_with_dropout` is the network of the experiment, which lives in
:mod:`impl.optimization.dropout_experiment`.

Shapes: ``x`` is any ``float[...]`` array; the output has the same shape and dtype.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks
from impl.deep_networks.dnn import dense
from impl.optimization.relu import relu

__all__ = ["LinenDropout", "NnxDropout", "dropout", "dropout_mask", "mlp_with_dropout"]


# --8<-- [start:core]
def dropout_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """The mask ``r_j ~ Bernoulli(p)`` of the paper's Sec. 4, ``p = 1 - rate`` the keep probability.
    ``bool[shape]``."""
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def dropout(key: jax.Array, x: jax.Array, rate: float, *, deterministic: bool = False) -> jax.Array:
    """Inverted dropout: keep each entry with probability ``1 - rate``, scaled by
    ``1 / (1 - rate)``.

    The paper (Sec. 4, model description) multiplies a layer's output ``y`` by a mask ``r`` of
    independent ``Bernoulli(p)`` variables and, at test time, scales the outgoing weights by ``p``.
    Dividing the kept entries by ``p`` during training instead gives ``E[dropout(x)] = x`` entry by
    entry, so evaluation uses the network exactly as trained.

    Args:
        key: PRNG key for the mask (unused when ``deterministic`` or ``rate == 0``).
        x: activations, any shape ``[...]``.
        rate: probability of *dropping* an entry, in ``[0, 1)``.
        deterministic: ``True`` at evaluation time: return ``x`` unchanged.

    Returns:
        An array shaped and typed like ``x``.
    """
    rate = checks.rate("rate", rate)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x: expected an array, got {type(x).__name__}")
    if deterministic or rate == 0.0:
        return x
    p = 1.0 - rate  # keep probability
    r = dropout_mask(key, x.shape, rate)  # r_j ~ Bernoulli(p), bool[...]
    # y~ = r * y, scaled by 1/p
    return jax.lax.select(r, x / jnp.asarray(p, x.dtype), jnp.zeros_like(x))


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenDropout(nn.Module):
    """Functional twin. The mask's key comes from the ``"dropout"`` RNG stream given to ``apply``
    (``rngs={"dropout": key}``), or directly as ``key=``.
    """

    rate: float
    deterministic: bool | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, deterministic: bool | None = None, key: jax.Array | None = None
    ):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        checks.rate("rate", self.rate)
        if deterministic or self.rate == 0.0:
            return x
        key = self.make_rng("dropout") if key is None else key
        return dropout(key, x, self.rate)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxDropout(nnx.Module):
    """Object-oriented twin. It forks its own ``"dropout"`` stream from ``rngs`` and draws a new
    key at every call (or takes ``key=``). ``model.eval()`` / ``model.train()`` flip
    ``deterministic``, as they do for ``nnx.Dropout``.
    """

    def __init__(self, rate: float, *, deterministic: bool = False, rngs: nnx.Rngs | None = None):
        self.rate = checks.rate("rate", rate)
        self.deterministic = deterministic
        self.rngs = rngs["dropout"].fork() if rngs is not None else nnx.data(None)

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None, key: jax.Array | None = None
    ):
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic or self.rate == 0.0:
            return x
        if key is None:
            if self.rngs is None:
                raise ValueError(
                    "key: NnxDropout needs rngs=nnx.Rngs(dropout=...) "
                    "or a key= when not deterministic"
                )
            key = self.rngs()
        return dropout(key, x, self.rate)


# --8<-- [end:nnx]


# --8<-- [start:network]
def mlp_with_dropout(
    params, x: jax.Array, key: jax.Array, rate: float, *, deterministic: bool
) -> jax.Array:
    """ReLU MLP (layers from topic 1.1) with dropout after every hidden layer.
    ``[b, d_in] -> [b, n_out]``."""
    keys = jax.random.split(key, len(params) - 1)
    for layer, k in zip(params[:-1], keys):
        h = relu(dense(layer, x))  # [batch, d_hidden]
        x = dropout(k, h, rate, deterministic=deterministic)
    return dense(params[-1], x)  # [batch, n_classes]


# --8<-- [end:network]
