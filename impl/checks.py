"""Argument checks shared by every module: fail early, name the argument, say what was expected.

Every public function in ``impl`` validates its inputs with these helpers *before* any
compute, so a wrong setting produces one readable line instead of an XLA stack trace::

    >>> positive_int("n_samples", -3)
    Traceback (most recent call last):
    ValueError: n_samples: expected a positive integer, got -3

Shape checks use chex underneath and re-raise its ``AssertionError`` as a ``ValueError``
that names the argument and spells the expected shape with symbolic dimensions.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "array_shape",
    "hyperparameter",
    "in_range",
    "non_negative_int",
    "one_of",
    "positive_int",
    "prng_key",
    "rate",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer > 0, else raise naming ``name``."""
    if not _is_int(value):
        raise TypeError(
            f"{name}: expected a positive integer, got {value!r} ({type(value).__name__})"
        )
    if value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 0, else raise naming ``name``."""
    if not _is_int(value):
        raise TypeError(
            f"{name}: expected a non-negative integer, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value}")
    return int(value)


def in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise naming ``name``.

    The interval is written in the error the way a paper would: ``[0, 1)``.
    """
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    interval = f"{left}{low:g}, {high:g}{right}"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"{name}: expected a number in {interval}, got {value!r} ({type(value).__name__})"
        )
    v = float(value)
    ok_low = v >= low if low_inclusive else v > low
    ok_high = v <= high if high_inclusive else v < high
    if not (ok_low and ok_high) or np.isnan(v):
        raise ValueError(f"{name}: expected a number in {interval}, got {value}")
    return v


def hyperparameter(name: str, value: Any, low: float, high: float = float("inf"), **kwargs) -> None:
    """`in_range` for an optimizer's number: a Python number or a scalar array of any numeric dtype.

    ``optax.inject_hyperparams`` hands an optimizer's factory its numbers as ``jnp`` scalars (in
    the parameters' dtype: float, or complex for complex parameters; an ``int`` stays an integer
    array), concrete at ``init`` and traced inside ``jit``. The same values are accepted either
    way: a scalar array's shape and dtype are checked always, its value wherever it is concrete
    (a traced value is unknown until run time). A complex scalar must have a zero imaginary part.
    """
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        if value.ndim != 0 or not jnp.issubdtype(value.dtype, jnp.number):
            raise TypeError(
                f"{name}: expected a scalar number, got an "
                f"array of shape {value.shape} ({value.dtype})"
            )
        if isinstance(value, jax.core.Tracer):
            return  # shape and dtype are fine; the value is only known at run time
        if jnp.issubdtype(value.dtype, jnp.complexfloating):
            if np.imag(value) != 0:
                raise ValueError(f"{name}: expected a real number, got {value}")
            value = np.real(value)
        value = int(value) if jnp.issubdtype(value.dtype, jnp.integer) else float(value)
    in_range(name, value, low, high, **kwargs)


def rate(name: str, value: Any) -> float:
    """A probability-like rate in ``[0, 1)`` (dropout rate, label noise, test fraction)."""
    return in_range(name, value, 0.0, 1.0, high_inclusive=False)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    options = tuple(choices)
    if value not in options:
        listed = ", ".join(repr(c) for c in options)
        raise ValueError(f"{name}: expected one of {listed}; got {value!r}")
    return value


def array_shape(
    name: str, x: Any, shape: Sequence[int | str | None], *, dims: str | None = None
) -> None:
    """Check that ``x`` is an array of the given shape (``None`` or a string = any size).

    Args:
        name: the argument's name, used in the error.
        x: the array to check.
        shape: expected shape; an ``int`` must match exactly, ``None`` or a symbolic name
            (``"batch"``) matches any size. A string entry is also used in the message.
        dims: optional human-readable layout to print, e.g. ``"[batch, height, width, channels]"``.

    Raises:
        TypeError: if ``x`` is not an array.
        ValueError: if the rank or a fixed dimension differs.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    pattern = [s if _is_int(s) else None for s in shape]
    layout = dims or "[" + ", ".join(str(s) for s in shape) + "]"
    try:
        chex.assert_shape(x, pattern)
    except AssertionError as error:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(x.shape)}") from error


def prng_key(name: str, key: Any) -> jax.Array:
    """Accept a JAX PRNG key (typed or raw ``uint32[2]``) or an ``int`` seed; return a key.

    Accepting an integer keeps page code short (``dnn.experiment(seed=0)``) while the
    library itself only ever passes keys around.
    """
    if _is_int(key):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if key.shape == (2,) and key.dtype == np.uint32:
            return jax.random.wrap_key_data(key)
    raise TypeError(f"{name}: expected a jax.random.key(...) or an int seed, got {key!r}")
