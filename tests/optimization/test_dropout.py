import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.deep_networks import dnn
from impl.optimization import dropout as dr
from impl.optimization import dropout_experiment

from twin_checks import assert_twins_agree


def _x(shape=(64, 32), seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("shape", [(5,), (8, 16), (2, 4, 4, 3)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dropout_shapes_and_dtypes(shape, dtype):
    x = jnp.ones(shape, dtype)
    y = dr.dropout(jax.random.key(0), x, 0.3)
    chex.assert_shape(y, shape)
    chex.assert_type(y, dtype)
    kept = np.asarray(y[y != 0], np.float32)
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-2)  # survivors scaled by 1 / (1 - rate)


def test_dropout_rate_zero_and_deterministic_are_the_identity():
    x = _x()
    assert dr.dropout(jax.random.key(0), x, 0.0) is x
    assert dr.dropout(jax.random.key(0), x, 0.9, deterministic=True) is x
    assert dr.LinenDropout(0.0).apply({}, x, deterministic=False) is x  # no rng needed at rate 0
    assert dr.NnxDropout(0.0)(x) is x


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keep_rate_and_mean_statistically(rate):
    n = 1_000_000
    y = dr.dropout(jax.random.key(1), jnp.ones((n,)), rate)
    keep = float(jnp.mean(y > 0))
    # Binomial standard error of the keep fraction, and of the mean of y (values 0 or 1/p).
    p = 1 - rate
    assert abs(keep - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(float(jnp.mean(y)) - 1.0) < 5 * np.sqrt((1 - p) / (p * n))


def test_dropout_expected_activation_is_preserved_for_any_input():
    x = _x((16, 8))
    keys = jax.random.split(jax.random.key(2), 20_000)
    mean = jax.vmap(lambda k: dr.dropout(k, x, 0.5))(keys).mean(axis=0)
    # per entry: std of the mean is |x| / sqrt(20000), so 6 sigma is about 0.043 |x|
    np.testing.assert_array_less(jnp.abs(mean - x), 0.05 * jnp.abs(x) + 1e-6)


def test_dropout_masks_are_independent_across_keys_and_fixed_by_a_key():
    x = jnp.ones((1000,))
    a, b = dr.dropout(jax.random.key(0), x, 0.5), dr.dropout(jax.random.key(1), x, 0.5)
    chex.assert_trees_all_equal(a, dr.dropout(jax.random.key(0), x, 0.5))
    agree = float(jnp.mean((a > 0) == (b > 0)))
    assert 0.45 < agree < 0.55  # independent masks agree half the time


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout_matches_flax_linen_dropout(rate):
    x, key = _x(), jax.random.key(3)
    ours = dr.dropout(key, x, rate)
    chex.assert_trees_all_equal(ours, nn.Dropout(rate).apply({}, x, deterministic=False, rng=key))
    # through the RNG stream: both are top-level modules, so make_rng gives the same key
    linen = dr.LinenDropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
    flax_linen = nn.Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
    chex.assert_trees_all_equal(linen, flax_linen)


def test_nnx_dropout_matches_flax_nnx_dropout_over_several_calls():
    x = _x()
    ours = dr.NnxDropout(0.4, rngs=nnx.Rngs(dropout=7))
    theirs = nnx.Dropout(0.4, rngs=nnx.Rngs(dropout=7))
    for _ in range(3):  # each call draws a fresh key from the module's own stream
        chex.assert_trees_all_equal(ours(x), theirs(x))


def test_linen_and_nnx_twins_give_the_same_mask_and_gradient_for_the_same_key():
    x, key = _x(), jax.random.key(4)
    linen = dr.LinenDropout(0.5)
    model = dr.NnxDropout(0.5, rngs=nnx.Rngs(dropout=0))
    _, y_linen, _ = assert_twins_agree(  # outputs and input gradients, the same key on both sides
        linen,
        model,
        (x,),
        loss=lambda y: jnp.sum(y**2),
        linen_apply=lambda v, x: linen.apply(v, x, deterministic=False, key=key),
        nnx_apply=lambda m, x: m(x, key=key),
        init_kwargs={"deterministic": True},
        rtol=0.0,
        atol=0.0,
    )
    chex.assert_trees_all_equal(y_linen, dr.dropout(key, x, 0.5))
    g_linen = jax.grad(lambda v: jnp.sum(linen.apply({}, v, deterministic=False, key=key) ** 2))(x)
    mask = y_linen != 0
    # d/dx (r x / p)^2
    chex.assert_trees_all_close(g_linen, jnp.where(mask, 2 * x / 0.25, 0.0), rtol=1e-6)


def test_nnx_dropout_follows_eval_and_train():
    x = _x()
    model = dr.NnxDropout(0.5, rngs=nnx.Rngs(dropout=0))
    model.eval()
    assert model(x) is x
    model.train()
    assert not jnp.array_equal(model(x), x)


def test_linen_dropout_requires_deterministic_somewhere():
    with pytest.raises(ValueError, match="deterministic"):
        dr.LinenDropout(0.5).apply({}, _x())


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rejects_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match="rate"):
        dr.dropout(jax.random.key(0), _x(), rate)
    with pytest.raises(ValueError, match="rate"):
        dr.NnxDropout(rate)
    with pytest.raises(ValueError, match="rate"):
        dr.LinenDropout(rate).apply({}, _x(), deterministic=False, key=jax.random.key(0))


def test_dropout_rejects_a_non_array_and_a_missing_key():
    with pytest.raises(TypeError, match="x"):
        dr.dropout(jax.random.key(0), [1.0, 2.0], 0.5)
    with pytest.raises(TypeError, match="rate"):
        dr.dropout(jax.random.key(0), _x(), "half")
    with pytest.raises(ValueError, match="key"):
        dr.NnxDropout(0.5)(_x())


def test_mlp_with_dropout_is_deterministic_in_eval_mode():
    params = dnn.init_mlp(jax.random.key(0), dropout_experiment.SIZES)
    x = _x((10, 2))
    a = dr.mlp_with_dropout(params, x, jax.random.key(1), 0.5, deterministic=True)
    b = dr.mlp_with_dropout(params, x, jax.random.key(2), 0.5, deterministic=True)
    chex.assert_trees_all_equal(a, b)
    chex.assert_shape(a, (10, 2))


@pytest.mark.claim
def test_claim_dropout_narrows_the_train_test_gap(seed):
    m = dropout_experiment.experiment(seed=seed).metrics
    assert m["plain_train_accuracy"] >= 0.98  # the plain net memorises the noisy training set
    assert m["dropout_accuracy_gap"] < m["plain_accuracy_gap"] - 0.03
    assert m["dropout_loss_gap"] < 0.5 * m["plain_loss_gap"]
    assert m["dropout_test_accuracy"] > m["plain_test_accuracy"]
    # weight scaling (one deterministic pass) is as good as
    # averaging 100 thinned nets, within 2 points
    assert abs(m["mc_average_test_accuracy"] - m["dropout_test_accuracy"]) < 0.02
    assert abs(m["keep_fraction"] - 0.5) < 0.005 and abs(m["mean_activation"] - 1.0) < 0.01
