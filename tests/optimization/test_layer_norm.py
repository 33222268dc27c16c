import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl import twins
from impl.optimization import layer_norm as ln
from impl.optimization import layer_norm_experiment

from twin_checks import assert_twins_agree


def _x(shape=(64, 16), seed=0):
    return 2.0 + 3.0 * jax.random.normal(jax.random.key(seed), shape)


def _params(d, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return 1.0 + 0.1 * jax.random.normal(k1, (d,)), 0.1 * jax.random.normal(k2, (d,))


@pytest.mark.parametrize("shape", [(8, 16), (2, 5, 16), (2, 3, 4, 16)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_layer_norm_shapes_and_dtypes(shape, dtype):
    scale, bias = _params(shape[-1])
    y = ln.layer_norm(_x(shape).astype(dtype), scale.astype(dtype), bias.astype(dtype))
    chex.assert_shape(y, shape)
    chex.assert_type(y, dtype)


def test_layer_norm_standardises_each_example():
    d = 16
    y = ln.layer_norm(_x(), jnp.ones(d), jnp.zeros(d))
    chex.assert_trees_all_close(y.mean(axis=-1), jnp.zeros(64), atol=1e-5)
    chex.assert_trees_all_close(y.std(axis=-1), jnp.ones(64), atol=1e-4)


@pytest.mark.parametrize(("shape", "axis"), [((8, 16), -1), ((2, 7, 16), -1), ((4, 16, 3), 1)])
def test_layer_norm_matches_flax_linen_layernorm(shape, axis):
    x = _x(shape)
    scale, bias = _params(shape[axis])
    theirs = nn.LayerNorm(reduction_axes=axis, feature_axes=axis)
    variables = {"params": {"scale": scale, "bias": bias}}
    chex.assert_trees_all_equal_structs(variables, theirs.init(jax.random.key(0), x))
    expected = theirs.apply(variables, x)
    chex.assert_trees_all_close(
        ln.layer_norm(x, scale, bias, reduction_axes=axis, feature_axes=axis),
        expected,
        rtol=1e-5,
        atol=1e-5,
    )
    chex.assert_trees_all_close(
        ln.LinenLayerNorm(reduction_axes=axis, feature_axes=axis).apply(variables, x),
        expected,
        rtol=1e-5,
        atol=1e-5,
    )


def test_linen_and_nnx_twins_agree_on_outputs_and_gradients():
    x = _x((6, 3, 16))
    target = jnp.sin(x)
    linen, model = ln.LinenLayerNorm(), ln.NnxLayerNorm(16)
    assert_twins_agree(linen, model, (x,), loss=lambda y: jnp.mean((y - target) ** 2))
    # with a learned gain and bias, and through the input as well
    scale, bias = _params(16)
    variables = {"params": {"scale": scale, "bias": bias}}
    twins.load_linen(model, variables)
    chex.assert_trees_all_close(linen.apply(variables, x), model(x), rtol=1e-6)
    g_x_linen = jax.grad(lambda v: jnp.sum(linen.apply(variables, v) * target))(x)
    g_x_nnx = jax.grad(lambda v: jnp.sum(model(v) * target))(x)
    chex.assert_trees_all_close(g_x_linen, g_x_nnx, rtol=1e-5, atol=1e-6)


def test_layer_norm_gives_the_same_output_for_batch_size_1_and_64():
    x = _x()
    scale, bias = _params(16)
    whole = ln.layer_norm(x, scale, bias)
    alone = jnp.concatenate([ln.layer_norm(x[i : i + 1], scale, bias) for i in range(64)])
    chex.assert_trees_all_close(alone, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("c", [1e-2, 0.5, 3.0, 1e3, 1e6])
def test_layer_norm_is_invariant_to_rescaling_and_shifting_its_input(c):
    x = _x()
    scale, bias = _params(16)
    y = ln.layer_norm(x, scale, bias)
    # exactly: LN(c x; eps) = LN(x; eps / c^2), so eps is the only thing that sees the scale
    chex.assert_trees_all_close(
        ln.layer_norm(c * x, scale, bias),
        ln.layer_norm(x, scale, bias, epsilon=1e-6 / c**2),
        atol=1e-5,
    )
    if c >= 0.5:  # eps = 1e-6 is negligible next to a variance of about 9 c^2
        chex.assert_trees_all_close(ln.layer_norm(c * x, scale, bias), y, atol=1e-5)
    chex.assert_trees_all_close(ln.layer_norm(x + 100.0, scale, bias), y, atol=1e-4)


def test_layer_norm_of_a_constant_input_is_finite_and_honours_eps():
    d = 16
    scale, bias = _params(d)
    x = jnp.full((3, d), 7.0)
    y = ln.layer_norm(x, scale, bias)
    chex.assert_trees_all_close(y, jnp.broadcast_to(bias, x.shape))
    chex.assert_tree_all_finite(jax.grad(lambda v: jnp.sum(ln.layer_norm(v, scale, bias) ** 2))(x))
    # a tiny spread next to a large eps: (x - mu) / sqrt(var + eps), with eps in the formula
    x = jnp.asarray([[-1e-3, 1e-3]])
    y = ln.layer_norm(x, jnp.ones(2), jnp.zeros(2), epsilon=1e-6)
    chex.assert_trees_all_close(y, x / np.sqrt(1e-6 + 1e-6), rtol=1e-4)


def test_layer_norm_rnn_is_invariant_to_rescaling_its_weights():
    """Ba et al., Sec. 5: normalising the summed inputs removes the scale of W_xh and W_hh
    together."""
    params = ln.init_rnn(jax.random.key(0), vocab=12, hidden=16, gain=1.0)
    tokens = jax.random.randint(jax.random.key(1), (4, 9), 0, 12)
    scaled = {**params, "w_x": 5.0 * params["w_x"], "w_h": 5.0 * params["w_h"]}
    hs = ln.rnn(params, tokens, use_ln=True)
    chex.assert_shape(hs, (4, 9, 16))
    chex.assert_trees_all_close(ln.rnn(scaled, tokens, use_ln=True), hs, atol=1e-5)
    assert not np.allclose(
        ln.rnn(scaled, tokens, use_ln=False), ln.rnn(params, tokens, use_ln=False), atol=1e-2
    )


def test_layer_norm_rejects_a_missing_axis():
    d = 16
    with pytest.raises(ValueError, match="axes"):
        ln.layer_norm(_x(), jnp.ones(d), jnp.zeros(d), feature_axes=2)
    with pytest.raises(ValueError, match="axes"):
        ln.LinenLayerNorm(feature_axes=-3).init(jax.random.key(0), _x())
    with pytest.raises(ValueError, match="axes"):
        ln.NnxLayerNorm(d, feature_axes=5)(_x())


def test_layer_norm_rejects_a_feature_size_that_does_not_match_the_parameters():
    with pytest.raises(ValueError, match=r"x: expected 8 features along axis 1 to match scale"):
        ln.layer_norm(_x(), jnp.ones(8), jnp.zeros(8))
    with pytest.raises(ValueError, match="bias"):
        ln.layer_norm(_x(), jnp.ones(16), jnp.zeros((16, 1)))
    with pytest.raises(ValueError, match="x: expected 8 features"):
        ln.NnxLayerNorm(8)(_x())
    with pytest.raises(ValueError, match="num_features"):
        ln.NnxLayerNorm(-1)


@pytest.mark.claim
def test_claim_layer_norm_is_batch_independent_scale_invariant_and_stabilises_an_rnn(seed):
    m = layer_norm_experiment.experiment(seed=seed).metrics
    assert m["ln_batch1_vs_64"] < 1e-6
    assert m["bn_batch1_vs_64"] > 0.5  # batch norm in training mode depends on the batch
    assert m["ln_rescale_x10"] < 1e-5 and m["ln_rescale_x0.1"] < 1e-4
    # with layer norm the RNN learns the task from every initial scale
    for gain in layer_norm_experiment.GAINS:
        assert m[f"ln_accuracy_gain_{gain:g}"] > 0.99
    assert m["plain_accuracy_gain_1"] > 0.99  # the plain RNN learns it too from a standard scale...
    assert m["plain_accuracy_gain_4"] < 0.6  # ...but not from a large one


# ---------------------------------------------------------------------------------------
# Drop-in for Flax (issue #11): statistics in float32,
# complex inputs, Flax's keywords and variables.
# ---------------------------------------------------------------------------------------
def test_bfloat16_statistics_are_computed_in_float32():
    """bfloat16 input 100 + N(0, 1): a bfloat16 mean is off by up to 0.5, i.e. half a standard
    deviation."""
    x = (100.0 + jax.random.normal(jax.random.key(0), (8, 64))).astype(jnp.bfloat16)
    d = 64
    y = ln.layer_norm(x, jnp.ones(d, jnp.bfloat16), jnp.zeros(d, jnp.bfloat16))
    exact = np.asarray(x, np.float64)
    exact = (exact - exact.mean(-1, keepdims=True)) / np.sqrt(exact.var(-1, keepdims=True) + 1e-6)
    chex.assert_type(y, jnp.bfloat16)
    # bfloat16 rounding of y only
    assert float(np.max(np.abs(np.asarray(y, np.float64) - exact))) < 0.05


def test_complex_input_is_normalised_by_its_squared_magnitude():
    x = _x((4, 16)) + 1j * _x((4, 16), seed=3)
    scale, bias = _params(16)
    variables = {"params": {"scale": scale, "bias": bias}}
    y = ln.LinenLayerNorm().apply(variables, x)
    expected = nn.LayerNorm(use_fast_variance=False).apply(variables, x)
    chex.assert_type(y, jnp.complex64)
    chex.assert_trees_all_close(y, expected, rtol=1e-5, atol=1e-5)
    _, var = ln.layer_stats(x)
    # mean |x - mu|^2, real and positive
    assert float(jnp.min(var)) > 0 and var.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_bias": False},
        {"use_scale": False, "epsilon": 1e-3},
        {"reduction_axes": (1, 2), "feature_axes": -1},
        {"reduction_axes": (1, 2, 3), "feature_axes": (2, 3)},
        {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16},
    ],
    ids=[
        "default",
        "no-bias",
        "no-scale-epsilon",
        "instance-norm-like",
        "two-feature-axes",
        "bfloat16",
    ],
)
def test_flax_layernorm_variables_load_into_ours(kwargs):
    """Init ``flax.linen.LayerNorm`` (Flax's default fast variance), apply ours to its variables."""
    x = _x((2, 3, 4, 5))
    theirs = nn.LayerNorm(**kwargs)
    # not the identity
    variables = jax.tree.map(lambda v: v + 0.1, theirs.init(jax.random.key(0), x))
    ours = ln.LinenLayerNorm(**kwargs)
    chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(0), x), variables)
    y, expected = ours.apply(variables, x), theirs.apply(variables, x)
    chex.assert_type(y, expected.dtype)
    tol = 2e-2 if kwargs.get("dtype") == jnp.bfloat16 else 1e-5
    chex.assert_trees_all_close(y, expected, rtol=tol, atol=tol)
    # NNX takes one feature axis, as nnx.LayerNorm
    if not isinstance(kwargs.get("feature_axes", -1), tuple):
        model = ln.NnxLayerNorm(5, **kwargs)
        twins.load_linen(model, variables)
        chex.assert_trees_all_close(model(x), expected, rtol=tol, atol=tol)
