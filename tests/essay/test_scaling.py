import chex
import jax
import jax.numpy as jnp
import pytest

from impl.deep_networks import dnn
from impl.essay import scaling


def test_n_params_counts_a_one_hidden_layer_net():
    params = dnn.init_mlp(jax.random.key(0), [scaling.D_IN, 7, 1])
    assert scaling.n_params(7) == sum(leaf.size for leaf in jax.tree.leaves(params))
    with pytest.raises(ValueError, match="width"):
        scaling.n_params(0)


def test_teacher_data_shapes_and_scale():
    x, y, xt, yt = scaling.teacher_data(jax.random.key(0), 500, 100)
    chex.assert_shape((x, y, xt, yt), ((500, 4), (500,), (100, 4), (100,)))
    assert abs(float(jnp.std(y)) - 1.0) < 1e-4
    with pytest.raises(ValueError, match="n_train"):
        scaling.teacher_data(jax.random.key(0), 0, 10)


def test_a_masked_student_equals_the_same_network_built_at_its_width():
    key = jax.random.key(1)
    x = jax.random.normal(key, (9, scaling.D_IN))
    padded = scaling.padded_student(key, 5, 16)
    mask = scaling.width_masks(jnp.asarray([5]), 16)[0]
    small = dnn.init_mlp(key, [scaling.D_IN, 5, 1])
    chex.assert_trees_all_close(
        scaling.masked_mlp(padded, mask, x), dnn.mlp(small, x)[:, 0], rtol=1e-6
    )
    # and the switched-off units receive no gradient
    grads = jax.grad(lambda p: jnp.sum(scaling.masked_mlp(p, mask, x) ** 2))(padded)
    assert float(jnp.abs(grads[0]["kernel"][:, 5:]).max()) == 0.0
    assert float(jnp.abs(grads[1]["kernel"][5:]).max()) == 0.0
    with pytest.raises(ValueError, match="width"):
        scaling.padded_student(key, 17, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": (2, 4)}, "widths"),
        ({"widths": (2, 0, 8)}, "widths"),
        ({"steps": -1}, "steps"),
        ({"repeats": 0}, "repeats"),
    ],
)
def test_experiment_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        scaling.experiment(**kwargs)


@pytest.mark.slow
def test_experiment_is_deterministic():
    kwargs = {"widths": (2, 4, 8), "repeats": 1, "steps": 250}
    a, b = scaling.experiment(5, **kwargs), scaling.experiment(5, **kwargs)
    assert a.metrics == b.metrics
    assert {"alpha", "fit_r2", "loss_ratio", "test_loss_w8", "n_params_w8"} <= set(a.metrics)


@pytest.mark.claim
def test_loss_falls_as_a_power_law_of_size(seed):
    r = scaling.experiment(seed).metrics
    assert r["alpha"] > 0.25  # observed: 0.42-0.49
    assert r["fit_r2"] > 0.85  # observed: 0.94-0.98
    assert r["loss_ratio"] > 3  # the smallest student's loss over the largest's; observed 4.7-6.4
