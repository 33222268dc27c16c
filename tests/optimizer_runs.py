"""Shared by the optimizer tests: run an optimizer for many steps on a pytree and compare results.

Imported as ``import optimizer_runs`` (``pythonpath = ["tests"]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.cache
def gradient_noise(tree_fn, seed: int, steps: int):
    """Fixed noise ``[steps, *leaf.shape]`` per leaf of ``tree_fn(seed)``, drawn once and reused."""
    rng = np.random.default_rng(seed + 100)
    return jax.tree.map(
        lambda x: jnp.asarray(0.3 * rng.standard_normal((steps, *x.shape)), jnp.float32),
        tree_fn(seed),
    )


def run_steps(opt: optax.GradientTransformation, tree_fn, seed: int = 0, steps: int = 200):
    """``steps`` updates of ``opt`` from ``tree_fn(seed)``, in one compiled ``lax.scan``.

    The gradient is that of a non-quadratic loss, ``sum(cos p + 0.1 p^2)``, plus fixed noise: it
    changes with the parameters and with the step, so that every part of an optimizer's state
    matters. ``tree_fn`` draws the starting pytree with NumPy (eager ``jax.random`` would compile
    once per leaf shape) and must be hashable (a module-level function).
    """

    def loss(p):
        return sum(jnp.sum(jnp.cos(x) + 0.1 * x**2) for x in jax.tree.leaves(p))

    def step(carry, noise):
        params, state = carry
        grads = jax.tree.map(jnp.add, jax.grad(loss)(params), noise)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    params = tree_fn(seed)
    run = jax.jit(lambda carry, noise: jax.lax.scan(step, carry, noise))
    (params, _), _ = run((params, opt.init(params)), gradient_noise(tree_fn, seed, steps))
    return params


def relative_difference(ours, theirs) -> float:
    """Largest elementwise ``|a - b| / max(|b|, 1e-6)`` over every leaf of two pytrees."""
    diffs = jax.tree.map(
        lambda a, b: jnp.max(jnp.abs(a - b) / jnp.maximum(jnp.abs(b), 1e-6)), ours, theirs
    )
    return float(max(jax.tree.leaves(diffs)))
