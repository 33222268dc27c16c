"""Two-dimensional classification sets, the oldest toys of the field.

Every generator takes an explicit PRNG key (or an int seed) and returns ``(x, y)`` with
``x: float32[n, 2]`` and ``y: int32[n]``. Classes are balanced: ``n`` must split evenly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from impl import checks

__all__ = ["gaussian_mixture", "moons", "two_spirals", "xor"]


def _split_count(n: int, classes: int) -> int:
    checks.positive_int("n", n)
    if n % classes:
        raise ValueError(
            f"n: expected a multiple of {classes} (one equal share per class), got {n}"
        )
    return n // classes


def xor(key: jax.Array | int, n: int = 200, *, noise: float = 0.15) -> tuple[jax.Array, jax.Array]:
    """Noisy XOR: four clusters at ``(±1, ±1)``; the label is 1 where the signs differ.

    No straight line separates the classes: the problem Minsky and Papert used (1969) to
    show the limits of one-layer perceptrons, and that a hidden layer solves.
    """
    key = checks.prng_key("key", key)
    per = _split_count(n, 4)
    checks.in_range("noise", noise, 0.0, 10.0)
    corners = jnp.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    labels = jnp.array([0, 0, 1, 1], dtype=jnp.int32)
    x = jnp.repeat(corners, per, axis=0) + noise * jax.random.normal(key, (n, 2))
    return x.astype(jnp.float32), jnp.repeat(labels, per)


def two_spirals(
    key: jax.Array | int, n: int = 400, *, noise: float = 0.05, turns: float = 1.75
) -> tuple[jax.Array, jax.Array]:
    """Two interleaved spirals (Lang & Witbrock, 1988), one per class, radius in ``[0, 1]``."""
    key = checks.prng_key("key", key)
    per = _split_count(n, 2)
    checks.in_range("noise", noise, 0.0, 10.0)
    checks.in_range("turns", turns, 0.0, 10.0, low_inclusive=False)
    k_t, k_noise = jax.random.split(key)
    t = jnp.sqrt(jax.random.uniform(k_t, (per,), minval=0.02, maxval=1.0))  # denser near the centre
    angle = 2 * jnp.pi * turns * t
    arm = jnp.stack([t * jnp.cos(angle), t * jnp.sin(angle)], axis=1)
    x = jnp.concatenate([arm, -arm]) + noise * jax.random.normal(k_noise, (n, 2))
    y = jnp.concatenate([jnp.zeros(per, jnp.int32), jnp.ones(per, jnp.int32)])
    return x.astype(jnp.float32), y


def moons(key: jax.Array | int, n: int = 200, *, noise: float = 0.1) -> tuple[jax.Array, jax.Array]:
    """Two interleaving half circles, centred so that ``x`` has roughly zero mean."""
    key = checks.prng_key("key", key)
    per = _split_count(n, 2)
    checks.in_range("noise", noise, 0.0, 10.0)
    k_t, k_noise = jax.random.split(key)
    t = jax.random.uniform(k_t, (2, per), maxval=jnp.pi)
    upper = jnp.stack([jnp.cos(t[0]), jnp.sin(t[0])], axis=1)
    lower = jnp.stack([1.0 - jnp.cos(t[1]), 0.5 - jnp.sin(t[1])], axis=1)
    x = jnp.concatenate([upper, lower]) - jnp.array([[0.5, 0.25]])
    x = x + noise * jax.random.normal(k_noise, (n, 2))
    y = jnp.concatenate([jnp.zeros(per, jnp.int32), jnp.ones(per, jnp.int32)])
    return x.astype(jnp.float32), y


def gaussian_mixture(
    key, n: int = 800, *, n_components: int = 8, radius: float = 2.0, std: float = 0.1
) -> tuple[jax.Array, jax.Array]:
    """``n_components`` Gaussians evenly spaced on a circle; the label is the component.

    The ring of eight modes is the standard test of mode collapse for GANs.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n_components", n_components)
    per = _split_count(n, n_components)
    checks.in_range("radius", radius, 0.0, 100.0, low_inclusive=False)
    checks.in_range("std", std, 0.0, 100.0, low_inclusive=False)
    angles = 2 * jnp.pi * jnp.arange(n_components) / n_components
    centres = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    y = jnp.repeat(jnp.arange(n_components, dtype=jnp.int32), per)
    x = centres[y] + std * jax.random.normal(key, (n, 2))
    return x.astype(jnp.float32), y
