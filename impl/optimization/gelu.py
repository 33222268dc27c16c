"""2.7 GELU — weight an input by how likely a standard normal is to fall below it.

Hendrycks & Gimpel, *Gaussian Error Linear Units (GELUs)*, arXiv:1606.08415 (2016).
https://arxiv.org/abs/1606.08415

The idea: ReLU gates its input by its sign, ``x * 1[x > 0]``. GELU gates it by a probability
instead, ``x * P(X <= x)`` with ``X ~ N(0, 1)``, that is ``x * Phi(x)``: the expected value of
a stochastic gate that keeps ``x`` more often the larger it is (the paper relates it to dropout
and zoneout). The curve is smooth, equals ReLU far from zero, and dips slightly below zero for
negative inputs. BERT, GPT-2 and ViT use it, and import it from here. Because ``Phi`` (an
``erf``) was slow on some hardware, the paper also gives a tanh approximation, which GPT-2 used;
this module computes both and measures how far apart they are.

Layout: pure functions hold the math; :class:`LinenGELU` and :class:`NnxGELU` (parameter-free) call
them, so that GELU can sit in a layer list like any other module. The experiment (the gap between
the two forms, GELU against ReLU on the digits) lives in :mod:`impl.optimization.gelu_experiment`.

Shapes: ``x`` is any floating ``[...]`` array; the output has the same shape and dtype.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["TANH_MAX_ERROR", "LinenGELU", "NnxGELU", "gelu", "gelu_exact", "gelu_tanh"]

# max_x |x Phi(x) - tanh form| is 4.73e-4, reached at |x| = 2.70 (measured in float64 on a grid of
# step 1e-5 over [-10, 10]; the error is even in x and vanishes beyond). Stated with a margin:
TANH_MAX_ERROR = 4.8e-4
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


# --8<-- [start:core]
def gelu_exact(x: jax.Array) -> jax.Array:
    """``GELU(x) = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`` (Sec. 2 of the paper). Shape of ``x``.

    Written with ``erfc(-x / sqrt 2) = 1 + erf(x / sqrt 2)``, which keeps its relative accuracy
    in the left tail (``1 + erf`` cancels to 0 there).
    """
    return 0.5 * x * jax.lax.erfc(-x * np.sqrt(0.5).astype(x.dtype))


def _tanh_form(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``c = clip(x, -10, 10)``, ``t = tanh(sqrt(2/pi) (c + 0.044715 c^3))`` and the form."""
    c = jnp.clip(x, -10.0, 10.0)  # only inside the tanh
    t = jnp.tanh(_SQRT_2_OVER_PI.astype(x.dtype) * (c + 0.044715 * c * c * c))
    return c, t, 0.5 * x * (1.0 + t)


@jax.custom_jvp
def gelu_tanh(x: jax.Array) -> jax.Array:
    """The paper's approximation ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``. Shape of
    ``x``.

    Beyond ``|x| = 10`` the tanh is exactly +-1 in float32 and float64, so ``x`` is clipped
    inside it: the cube cannot overflow, and the gradient keeps its limits (1 and 0) instead
    of becoming ``0 * inf = nan``. The derivative is written out (below) rather than traced:
    the same numbers as autodiff to rounding, but the backward pass keeps only ``x`` and one
    tanh instead of every intermediate — a third off GPT-2's training step on a CPU
    (`benchmarks/gpt.py`).
    """
    return _tanh_form(x)[2]


@gelu_tanh.defjvp
def _gelu_tanh_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    c, t, y = _tanh_form(x)
    # d/dx: (1 + t) / 2 + x/2 * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2), the last two
    # factors only where the clip lets x through.
    inner_slope = _SQRT_2_OVER_PI.astype(x.dtype) * (1.0 + 0.134145 * c * c)
    slope = 0.5 * (1.0 + t) + jnp.where(
        jnp.abs(x) < 10.0, 0.5 * x * (1.0 - t * t) * inner_slope, 0.0
    )
    return y, slope * dx


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """GELU, exact (``approximate=False``) or in its tanh form;
    ``|exact - tanh| < TANH_MAX_ERROR``."""
    if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x: expected a floating-point array, got {getattr(x, 'dtype', type(x).__name__)}"
        )
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate: expected True or False, got {approximate!r}")
    return gelu_tanh(x) if approximate else gelu_exact(x)


# --8<-- [end:core]


# --8<-- [start:linen]
class LinenGELU(nn.Module):
    """Functional twin: no parameters, so ``init`` returns an empty dict and ``apply`` is
    :func:`gelu`."""

    approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(x, self.approximate)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxGELU(nnx.Module):
    """Object-oriented twin: holds only the choice of form."""

    def __init__(self, *, approximate: bool = False):
        if not isinstance(approximate, bool):
            raise TypeError(f"approximate: expected True or False, got {approximate!r}")
        self.approximate = approximate

    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(x, self.approximate)


# --8<-- [end:nnx]
