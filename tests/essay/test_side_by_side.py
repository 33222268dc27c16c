import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl.deep_networks import dnn
from impl.essay import side_by_side
from impl.optimization.adam import adam
from impl.training import train


def test_stack_and_unstack_round_trip():
    trees = [dnn.init_mlp(jax.random.key(i), [3, 4, 2]) for i in range(3)]
    stacked = side_by_side.stack(trees)
    chex.assert_shape(stacked[0]["kernel"], (3, 3, 4))
    for i, tree in enumerate(trees):
        chex.assert_trees_all_equal(side_by_side.unstack(stacked, i), tree)
    with pytest.raises(ValueError, match="trees"):
        side_by_side.stack([])


def test_prefix_batches_stay_inside_each_prefix():
    sizes = jnp.asarray([1, 5, 100])
    idx = side_by_side.prefix_batches(jax.random.key(0), sizes, 64)
    chex.assert_shape(idx, (3, 64))
    assert (np.asarray(idx) < np.asarray(sizes)[:, None]).all() and (np.asarray(idx) >= 0).all()
    assert set(np.asarray(idx[0]).tolist()) == {0}
    with pytest.raises(ValueError, match="sizes"):
        side_by_side.prefix_batches(jax.random.key(0), jnp.ones((2, 2), jnp.int32), 4)
    with pytest.raises(ValueError, match="batch"):
        side_by_side.prefix_batches(jax.random.key(0), sizes, 0)


def test_training_side_by_side_equals_training_alone():
    """The point of the module: stacked runs get exactly their own updates."""
    x = jax.random.normal(jax.random.key(0), (32, 3))
    y = jnp.arange(32) % 2
    inits = [dnn.init_mlp(jax.random.key(i), [3, 8, 2]) for i in range(3)]

    def alone(params, batch, key):
        return dnn.cross_entropy(dnn.mlp(params, batch["x"]), batch["y"])

    def together(params, batch, key):
        losses = jax.vmap(lambda p: dnn.cross_entropy(dnn.mlp(p, batch["x"]), batch["y"]))(params)
        return jnp.sum(losses)

    opt = adam(1e-2)
    data = {"x": x, "y": y}
    stacked = train(
        together, side_by_side.stack(inits), opt, data, key=0, steps=50, progress=False
    ).params
    for i, init in enumerate(inits):
        single = train(alone, init, opt, data, key=0, steps=50, progress=False).params
        chex.assert_trees_all_close(side_by_side.unstack(stacked, i), single, rtol=1e-5, atol=1e-6)


def test_log_log_fit_recovers_a_power_law():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    slope, prefactor = side_by_side.log_log_fit(x, 3.0 * x**-0.5)
    assert slope == pytest.approx(-0.5) and prefactor == pytest.approx(3.0)
    with pytest.raises(ValueError):
        side_by_side.log_log_fit([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError):
        side_by_side.log_log_fit([1.0], [1.0])
