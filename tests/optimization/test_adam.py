import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from impl.optimization import adam


def _tree(seed):
    k = jax.random.split(jax.random.key(seed), 3)
    return {
        "a": jax.random.normal(k[0], (3, 4)),
        "nested": {"b": jax.random.normal(k[1], (5,)), "c": jax.random.normal(k[2], ())},
    }


def _run(opt, steps=200):
    params = _tree(0)
    state = opt.init(params)

    @jax.jit
    def step(params, state, i):
        grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1.0)) + p, params)  # a changing gradient
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(steps):
        params, state = step(params, state, i)
    return params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.01},
        {"learning_rate": 0.01, "momentum": 0.9},
        {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
        {"learning_rate": optax.linear_schedule(0.02, 0.0, 200), "momentum": 0.5},
    ],
)
def test_sgd_equals_optax(kwargs):
    chex.assert_trees_all_close(_run(adam.sgd(**kwargs)), _run(optax.sgd(**kwargs)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: adam.sgd(-0.1), "learning_rate"), (lambda: adam.sgd(0.1, momentum=1.0), "decay")],
)
def test_sgd_rejects_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()
