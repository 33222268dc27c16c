import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl import twins
from impl.deep_networks import dnn
from impl.optimization import relu, relu_experiment

from twin_checks import assert_twins_agree

POINTS = jnp.array([-50.0, -3.0, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 2.0, 50.0])


def _batch(seed=0, n=16, d=5, classes=3):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, classes)


# --- ours against jax.nn: values and gradients at typical points (0 included) --------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (relu.relu, jax.nn.relu),
        (relu.leaky_relu, jax.nn.leaky_relu),
        (lambda x: relu.leaky_relu(x, 0.2), lambda x: jax.nn.leaky_relu(x, 0.2)),
        (relu.softplus, jax.nn.softplus),
        (relu.ACTIVATIONS["sigmoid"], jax.nn.sigmoid),
        (relu.ACTIVATIONS["tanh"], jax.nn.tanh),
    ],
)
def test_activation_matches_jax_nn_in_value_and_gradient(ours, theirs):
    chex.assert_trees_all_close(ours(POINTS), theirs(POINTS), rtol=1e-6, atol=1e-7)
    grad_ours = jax.vmap(jax.grad(ours))(POINTS)
    grad_theirs = jax.vmap(jax.grad(theirs))(POINTS)
    chex.assert_trees_all_close(grad_ours, grad_theirs, rtol=1e-6, atol=1e-7)


def test_relu_derivative_is_exactly_zero_or_one():
    grads = jax.vmap(jax.grad(relu.relu))(POINTS)
    np.testing.assert_array_equal(np.asarray(grads), np.asarray(POINTS > 0, dtype=np.float32))


@pytest.mark.parametrize("name", sorted(relu.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 3, 4)])
def test_activation_keeps_shape_and_dtype(name, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    y = relu.activation(name)(x)
    chex.assert_shape(y, shape)
    chex.assert_type(y, jnp.float32)


def test_sparsity_counts_exact_zeros():
    h = jnp.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1e-30]])
    assert float(relu.sparsity(h)) == pytest.approx(4 / 8)
    assert float(relu.sparsity(relu.relu(jnp.array([-1.0, -2.0, 3.0])))) == pytest.approx(2 / 3)
    assert float(relu.sparsity(jnp.tanh(jnp.array([-1.0, 2.0])))) == 0.0


# --- the deep stack --------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_deep_mlp_shapes_and_dtypes(depth, name):
    params = relu.init_deep_mlp(jax.random.key(0), 5, 16, depth, 3, init_scheme="he")
    assert len(params) == depth + 1
    x, y = _batch()
    logits = relu.deep_mlp(params, x, name)
    chex.assert_shape(logits, (16, 3))
    chex.assert_type(logits, jnp.float32)
    hs = relu.hidden_activations(params, x, name)
    assert len(hs) == depth
    chex.assert_shape(hs, (16, 16))
    norms = relu.layer_gradient_norms(params, x, y, name)
    chex.assert_shape(norms, (depth + 1,))
    chex.assert_tree_all_finite(norms)


@pytest.mark.parametrize(
    ("init", "variance"), [("lecun", 1 / 256), ("he", 2 / 256), ("glorot", 2 / (256 + 128))]
)
def test_init_schemes_have_their_variance(init, variance):
    layer = relu.init_scaled_layer(jax.random.key(0), 256, 128, init)
    assert float(jnp.var(layer["kernel"])) == pytest.approx(variance, rel=0.03)
    np.testing.assert_array_equal(np.asarray(layer["bias"]), 0.0)


def test_layer_gradient_norms_match_jax_grad():
    params = relu.init_deep_mlp(jax.random.key(1), 5, 8, 4, 3, init_scheme="glorot")
    x, y = _batch(1)
    grads = jax.grad(lambda p: dnn.cross_entropy(relu.deep_mlp(p, x, "tanh"), y))(params)
    expected = jnp.array([jnp.sqrt(jnp.sum(g["kernel"] ** 2)) for g in grads])
    chex.assert_trees_all_close(
        relu.layer_gradient_norms(params, x, y, "tanh"), expected, rtol=1e-6
    )


def test_sigmoid_gradient_shrinks_by_about_a_quarter_per_layer():
    # f'(z) <= 1/4 for the sigmoid: the backward pass loses about that factor at every layer.
    x, y, *_ = relu.digits_standardized()
    params = relu.init_deep_mlp(jax.random.key(0), 64, 64, 12, 10, init_scheme="glorot")
    norms = np.asarray(relu.layer_gradient_norms(params, x[:256], y[:256], "sigmoid"))
    per_layer = (norms[0] / norms[-2]) ** (1 / 11)
    assert 0.15 < per_layer < 0.3


# --- Linen / NNX twins -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "init"), [("relu", "he"), ("tanh", "glorot"), ("sigmoid", "lecun")]
)
def test_linen_and_nnx_twins_agree(name, init):
    x, y = _batch(0, n=6, d=4)
    assert_twins_agree(
        relu.LinenDeepMLP(width=8, depth=3, n_out=3, activation=name, init_scheme=init),
        relu.NnxDeepMLP(4, 8, 3, 3, activation=name, init_scheme=init, rngs=nnx.Rngs(1)),
        (x,),
        loss=lambda logits: dnn.cross_entropy(logits, y),
    )


def test_linen_module_matches_the_pure_function_and_its_init():
    x, _ = _batch(0, n=6, d=4)
    linen = relu.LinenDeepMLP(width=8, depth=4, n_out=3)
    variables = linen.init(jax.random.key(0), x)
    expected = relu.init_deep_mlp(jax.random.key(0), 4, 8, 4, 3, init_scheme="he")
    # the tree init_deep_mlp declares
    chex.assert_trees_all_equal_structs(variables["params"]["layers"], expected)
    chex.assert_trees_all_close(
        linen.apply(variables, x),
        relu.deep_mlp(variables["params"]["layers"], x, "relu"),
        rtol=1e-6,
    )
    # He init: hidden kernels are sqrt(2) times LeCun's
    model = relu.NnxDeepMLP(64, 256, 2, 3, rngs=nnx.Rngs(0))
    assert float(jnp.var(twins.pure(model.layers)[1]["kernel"])) == pytest.approx(2 / 256, rel=0.05)


# --- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: relu.activation("swish"), ValueError, "activation: expected one of"),
        (
            lambda: relu.deep_mlp(
                [{"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}], jnp.ones((1, 2)), "elu"
            ),
            ValueError,
            "activation",
        ),
        (
            lambda: relu.init_deep_mlp(jax.random.key(0), 4, 8, 0, 3, init_scheme="he"),
            ValueError,
            "depth: expected a positive",
        ),
        (
            lambda: relu.init_deep_mlp(jax.random.key(0), 4, -8, 2, 3, init_scheme="he"),
            ValueError,
            "width",
        ),
        (
            lambda: relu.init_deep_mlp(jax.random.key(0), 4, 8, 2, 3, init_scheme="xavier"),
            ValueError,
            "init_scheme: expected one of",
        ),
        (
            lambda: relu.init_deep_mlp(jax.random.key(0), 4, 8, 2.5, 3, init_scheme="he"),
            TypeError,
            "depth",
        ),
        (lambda: relu.NnxDeepMLP(4, 8, 0, 3, rngs=nnx.Rngs(0)), ValueError, "depth"),
        (
            lambda: relu.NnxDeepMLP(4, 8, 2, 3, activation="gelu", rngs=nnx.Rngs(0)),
            ValueError,
            "activation",
        ),
        (
            lambda: relu.NnxDeepMLP(4, 8, 2, 3, rngs=nnx.Rngs(0))(jnp.ones((2, 5))),
            ValueError,
            r"x: expected shape \[batch, d_in\]",
        ),
        (
            lambda: relu.LinenDeepMLP(8, 0, 3).init(jax.random.key(0), jnp.ones((1, 4))),
            ValueError,
            "depth",
        ),
        (
            lambda: relu.LinenDeepMLP(8, 2, 3, init_scheme="he!").init(
                jax.random.key(0), jnp.ones((1, 4))
            ),
            ValueError,
            "init_scheme",
        ),
        (
            lambda: relu.LinenDeepMLP(8, 2, 3).init(jax.random.key(0), jnp.ones(4)),
            ValueError,
            "x: expected shape",
        ),
        (
            lambda: relu.hidden_activations(
                [{"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}] * 2, jnp.ones((1, 4)), "relu"
            ),
            ValueError,
            "x: expected shape",
        ),
        (lambda: relu_experiment.experiment(seed=-1), ValueError, "seed"),
        (lambda: relu_experiment.experiment(seed=0, steps=0), ValueError, "steps"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# --- the claim -----------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_sigmoid_gradients_vanish_relu_gradients_do_not_relu_is_sparse(seed):
    report = relu_experiment.experiment(seed=seed)
    m = report.metrics
    # At initialisation, |grad W_1| / |grad W_20| in a 20-layer stack:
    assert m["sigmoid_grad_ratio"] < 1e-9  # sigmoid: vanished (about 1e-12)
    assert 0.15 < m["sigmoid_grad_factor_per_layer"] < 0.3  # ... by about f'(0) = 1/4 per layer
    assert m["relu_grad_ratio"] > 0.1  # ReLU with He init: same order of magnitude
    assert m["tanh_grad_ratio"] > 0.1  # tanh with Glorot init: does not vanish either (honest)
    # The consequence for training with the same SGD: the sigmoid stack does not learn at all.
    assert m["sigmoid_train_loss"] > 2.2  # ln 10 = 2.30 is chance
    assert m["relu_train_loss"] < 0.05
    assert m["relu_test_accuracy"] > 0.9
    # Sparsity: about half of ReLU outputs are exact zeros, at init and after training.
    assert 0.4 < m["relu_sparsity_init"] < 0.6
    assert 0.45 < m["relu_sparsity_trained"] < 0.8
    assert report.seconds < 90
