import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.deep_networks import dnn
from impl.optimization import relu, residuals, residuals_experiment

from twin_checks import assert_twins_agree


def _x(shape=(6, 8), seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


# --- the block -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8), (8,)])
@pytest.mark.parametrize("d_out", [None, 8, 12])
def test_residual_block_shapes_and_dtypes(shape, d_out):
    params = residuals.init_block(jax.random.key(0), 8, d_out, branch_scale=1.0)
    y = residuals.residual_block(params, _x(shape))
    chex.assert_shape(y, (*shape[:-1], d_out or 8))
    chex.assert_type(y, jnp.float32)
    assert ("shortcut" in params) == (d_out == 12)


def test_residual_block_is_eq_1_written_out():
    params = residuals.init_block(jax.random.key(1), 8, branch_scale=1.0)
    x = _x()
    branch = dnn.dense(params["dense_1"], relu.relu(dnn.dense(params["dense_0"], x)))
    chex.assert_trees_all_close(
        residuals.residual_block(params, x), relu.relu(branch + x), rtol=1e-6
    )
    chex.assert_trees_all_close(residuals.plain_block(params, x), relu.relu(branch), rtol=1e-6)


def test_residual_block_with_projection_is_eq_2_written_out():
    params = residuals.init_block(jax.random.key(2), 8, 4, branch_scale=1.0)
    x = _x()
    branch = dnn.dense(params["dense_1"], relu.relu(dnn.dense(params["dense_0"], x)))
    expected = relu.relu(branch + dnn.dense(params["shortcut"], x))
    chex.assert_trees_all_close(residuals.residual_block(params, x), expected, rtol=1e-6)


def test_zero_branch_block_starts_as_the_identity_on_relu_outputs():
    params = residuals.init_block(jax.random.key(3), 8)  # branch_scale=0: F(x) = 0
    h = relu.relu(_x())  # what a block sees inside a ReLU network: x >= 0
    np.testing.assert_array_equal(np.asarray(residuals.residual_block(params, h)), np.asarray(h))
    # ... and the whole residual network starts as "input layer -> output layer".
    net = residuals.init_network(jax.random.key(4), 8, 8, 6, 3, residual=True)
    shallow = dnn.dense(net["output"], relu.relu(dnn.dense(net["input"], _x())))
    chex.assert_trees_all_close(residuals.network(net, _x(), residual=True), shallow, rtol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_network_shapes_and_scan_equals_a_python_loop(residual):
    params = residuals.init_network(jax.random.key(5), 8, 16, 5, 3, residual=residual)
    chex.assert_shape(params["blocks"]["dense_0"]["kernel"], (5, 16, 16))
    x = _x()
    logits = residuals.network(params, x, residual=residual)
    chex.assert_shape(logits, (6, 3))
    chex.assert_type(logits, jnp.float32)
    block = residuals.residual_block if residual else residuals.plain_block
    h = relu.relu(dnn.dense(params["input"], x))
    for i in range(5):
        h = block(jax.tree.map(lambda leaf, i=i: leaf[i], params["blocks"]), h)
    chex.assert_trees_all_close(logits, dnn.dense(params["output"], h), rtol=1e-5, atol=1e-6)


def test_plain_blocks_are_he_initialised_and_residual_branches_start_at_zero():
    plain = residuals.init_network(jax.random.key(6), 8, 256, 3, 3, residual=False)
    res = residuals.init_network(jax.random.key(6), 8, 256, 3, 3, residual=True)
    assert float(jnp.var(plain["blocks"]["dense_1"]["kernel"])) == pytest.approx(2 / 256, rel=0.03)
    np.testing.assert_array_equal(np.asarray(res["blocks"]["dense_1"]["kernel"]), 0.0)
    assert float(jnp.var(res["blocks"]["dense_0"]["kernel"])) == pytest.approx(2 / 256, rel=0.03)


# --- Linen / NNX twins -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("d_out", "activation"), [(None, "relu"), (12, "relu"), (None, "tanh"), (4, "leaky_relu")]
)
def test_linen_and_nnx_twins_agree(d_out, activation):
    x = _x((5, 8))
    linen = residuals.LinenResidualBlock(features=d_out, activation=activation, branch_scale=1.0)
    model = residuals.NnxResidualBlock(
        8, d_out, activation=activation, branch_scale=1.0, rngs=nnx.Rngs(1)
    )
    target = jnp.cos(jnp.arange(x.shape[0] * (d_out or 8), dtype=jnp.float32)).reshape(
        x.shape[0], -1
    )

    def loss(y):
        return jnp.mean((y - target) ** 2)

    variables, _, _ = assert_twins_agree(linen, model, (x,), loss=loss)
    assert set(variables["params"]["block"]) == (
        {"dense_0", "dense_1"} | ({"shortcut"} if d_out else set())
    )
    # and the input gradient, which later topics back-propagate through the block
    chex.assert_trees_all_close(
        jax.grad(lambda z: loss(linen.apply(variables, z)))(x),
        jax.grad(lambda z: loss(model(z)))(x),
        rtol=1e-5,
    )


def test_linen_module_matches_the_pure_function_and_its_init():
    x = _x((5, 8))
    linen = residuals.LinenResidualBlock(features=12, branch_scale=1.0)
    variables = linen.init(jax.random.key(0), x)
    block = variables["params"]["block"]
    chex.assert_trees_all_equal_structs(
        block, residuals.init_block(jax.random.key(0), 8, 12, branch_scale=1.0)
    )
    chex.assert_trees_all_close(
        linen.apply(variables, x), residuals.residual_block(block, x), rtol=1e-6
    )


def test_default_modules_start_as_the_identity():
    h = relu.relu(_x())
    linen = residuals.LinenResidualBlock()
    np.testing.assert_array_equal(
        np.asarray(linen.apply(linen.init(jax.random.key(0), h), h)), np.asarray(h)
    )
    np.testing.assert_array_equal(
        np.asarray(residuals.NnxResidualBlock(8, rngs=nnx.Rngs(0))(h)), np.asarray(h)
    )


# --- bad input ---------------------------------------------------------------------------
def _block(d_in=8, d_out=None):
    return residuals.init_block(jax.random.key(0), d_in, d_out)


def _without_shortcut():
    params = _block(8, 4)
    del params["shortcut"]
    return params


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: residuals.residual_block(_block(8), jnp.ones((2, 5))),
            ValueError,
            "x: expected last axis of size 8",
        ),
        (
            lambda: residuals.residual_block(_without_shortcut(), jnp.ones((2, 8))),
            ValueError,
            "params: the block maps 8 -> 4",
        ),
        (
            lambda: residuals.residual_block({"dense_0": {}}, jnp.ones((2, 8))),
            ValueError,
            "params: expected a block",
        ),
        (
            lambda: residuals.residual_block(_block(8), jnp.ones(())),
            ValueError,
            r"x: expected an array of shape \[..., d_in\]",
        ),
        (lambda: residuals.residual_block(_block(8), [1.0] * 8), TypeError, "x: expected an array"),
        (
            lambda: residuals.residual_block(_block(8), jnp.ones((2, 8)), activation_name="swish"),
            ValueError,
            "activation",
        ),
        (
            lambda: residuals.init_block(jax.random.key(0), 0),
            ValueError,
            "d_in: expected a positive",
        ),
        (lambda: residuals.init_block(jax.random.key(0), 8, -2), ValueError, "d_out"),
        (
            lambda: residuals.init_block(jax.random.key(0), 8, branch_scale=-1.0),
            ValueError,
            "branch_scale",
        ),
        (
            lambda: residuals.init_network(jax.random.key(0), 8, 16, 0, 3, residual=True),
            ValueError,
            "n_blocks",
        ),
        (
            lambda: residuals.NnxResidualBlock(8, activation="gelu", rngs=nnx.Rngs(0)),
            ValueError,
            "activation",
        ),
        (lambda: residuals.NnxResidualBlock(8, 0, rngs=nnx.Rngs(0)), ValueError, "d_out"),
        (
            lambda: residuals.NnxResidualBlock(8, rngs=nnx.Rngs(0))(jnp.ones((2, 6))),
            ValueError,
            "x: expected last axis",
        ),
        (
            lambda: residuals.LinenResidualBlock(features=-1).init(
                jax.random.key(0), jnp.ones((2, 8))
            ),
            ValueError,
            "features",
        ),
        (
            lambda: residuals.LinenResidualBlock(activation="elu").init(
                jax.random.key(0), jnp.ones((2, 8))
            ),
            ValueError,
            "activation",
        ),
        (lambda: residuals_experiment.experiment(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# --- the claim -----------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_deep_plain_net_trains_worse_than_shallow_its_residual_twin_does_not(seed):
    report = residuals_experiment.experiment(seed=seed)
    m = report.metrics
    # Degradation: 42 plain layers end with a far higher training loss than 10 plain layers.
    assert m["deep_plain_train_loss"] > 0.1
    assert m["deep_plain_train_loss"] > 30 * m["shallow_plain_train_loss"]
    # The residual twin of the deep net does not degrade: no worse than the shallow net.
    assert m["deep_residual_train_loss"] < m["shallow_plain_train_loss"]
    assert m["deep_residual_test_accuracy"] > 0.9
    assert m["deep_residual_test_accuracy"] > m["deep_plain_test_accuracy"]
    assert report.seconds < 90
