import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from impl.deep_networks import dnn, dnn_experiment

from twin_checks import assert_twins_agree

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def _batch(seed=0, n=32, d=2, classes=3):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, classes)


@pytest.mark.parametrize("sizes", [[2, 3], [2, 8, 3], [5, 16, 16, 4]])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_mlp_shapes_and_dtypes(sizes, activation):
    params = dnn.init_mlp(jax.random.key(0), sizes)
    x = jnp.ones((7, sizes[0]))
    logits = dnn.mlp(params, x, activation)
    chex.assert_shape(logits, (7, sizes[-1]))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)


@pytest.mark.parametrize("sizes", [[2, 3], [2, 16, 3], [4, 8, 8, 8, 3]])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_equals_jax_grad(sizes, activation, seed):
    params = dnn.init_mlp(jax.random.key(seed), sizes)
    x, y = _batch(seed, d=sizes[0], classes=sizes[-1])
    loss, by_hand = dnn.backprop(params, x, y, activation)
    loss_ref, by_jax = jax.value_and_grad(
        lambda p: dnn.cross_entropy(dnn.mlp(p, x, activation), y)
    )(params)
    chex.assert_trees_all_close(loss, loss_ref, rtol=1e-6)
    chex.assert_trees_all_equal_structs(by_hand, by_jax)
    chex.assert_trees_all_close(by_hand, by_jax, rtol=1e-5, atol=1e-6)
    assert dnn.max_relative_difference(by_hand, by_jax) < 1e-5


def test_cross_entropy_matches_optax():
    import optax

    logits, labels = jax.random.normal(jax.random.key(0), (9, 4)), jnp.arange(9) % 4
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    chex.assert_trees_all_close(dnn.cross_entropy(logits, labels), ref, rtol=1e-6)


@pytest.mark.parametrize("sizes", [[2, 2], [2, 16, 3], [3, 8, 8, 2]])
def test_linen_and_nnx_twins_agree(sizes):
    x, _ = _batch(0, n=6, d=sizes[0])
    labels = jnp.arange(x.shape[0]) % sizes[-1]
    assert_twins_agree(
        dnn.LinenMLP(features=sizes[1:]),
        dnn.NnxMLP(sizes, rngs=nnx.Rngs(1)),
        (x,),
        loss=lambda logits: dnn.cross_entropy(logits, labels),
    )


def test_linen_params_are_the_tree_init_mlp_declares():
    x, _ = _batch(0, n=6, d=2)
    variables = dnn.LinenMLP(features=[8, 3]).init(jax.random.key(0), x)
    chex.assert_trees_all_equal_structs(
        variables["params"]["layers"], dnn.init_mlp(jax.random.key(0), [2, 8, 3])
    )
    chex.assert_trees_all_close(
        dnn.LinenMLP(features=[8, 3]).apply(variables, x), dnn.mlp(variables["params"]["layers"], x)
    )


def test_dense_matches_flax_dense():
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (4, 5))
    ref = nn.Dense(3)
    variables = ref.init(jax.random.key(1), x)
    ours = dnn.dense(variables["params"], x)
    chex.assert_trees_all_close(ours, ref.apply(variables, x), rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: dnn.NnxMLP([2], rngs=nnx.Rngs(0)), ValueError, "sizes: expected"),
        (lambda: dnn.NnxMLP([2, -4, 2], rngs=nnx.Rngs(0)), ValueError, r"sizes\[1\]"),
        (
            lambda: dnn.NnxMLP([2, 4, 2], activation="relu", rngs=nnx.Rngs(0)),
            ValueError,
            "activation: expected one of",
        ),
        (
            lambda: dnn.NnxMLP([2, 4, 2], rngs=nnx.Rngs(0))(jnp.ones((3, 5))),
            ValueError,
            r"x: expected shape \[batch, d_in\]",
        ),
        (
            lambda: dnn.LinenMLP([4, 2]).init(jax.random.key(0), jnp.ones(3)),
            ValueError,
            "x: expected shape",
        ),
        (
            lambda: dnn.LinenMLP([4, 2], activation="swish").init(
                jax.random.key(0), jnp.ones((1, 3))
            ),
            ValueError,
            "activation",
        ),
        (lambda: dnn_experiment.experiment(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.claim
def test_claim_hidden_layer_solves_what_a_linear_model_cannot(seed):
    report = dnn_experiment.experiment(seed=seed)
    m = report.metrics
    assert m["backprop_max_rel_diff"] < 1e-5
    # XOR: the linear model is near chance, the hidden layer near perfect.
    assert m["linear_xor_test_accuracy"] < 0.65
    assert m["mlp_xor_test_accuracy"] > 0.95
    # Two spirals: one straight cut gets well under 75%; the hidden layer over 90%.
    assert m["linear_two_spirals_test_accuracy"] < 0.75
    assert m["mlp_two_spirals_test_accuracy"] > 0.90
    assert report.seconds < 60
