import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import ndtr

from impl.optimization import gelu as g
from impl.optimization import gelu_experiment

from twin_checks import assert_twins_agree


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 4, 3)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_shapes_and_dtypes(shape, dtype, approximate):
    x = jax.random.normal(jax.random.key(0), shape).astype(dtype)
    y = g.gelu(x, approximate)
    chex.assert_shape(y, shape)
    chex.assert_type(y, dtype)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_matches_jax_nn_gelu(approximate):
    x = jnp.linspace(-12.0, 12.0, 100_001)
    chex.assert_trees_all_close(
        g.gelu(x, approximate), jax.nn.gelu(x, approximate=approximate), rtol=1e-6, atol=1e-6
    )
    grad = jax.vmap(jax.grad(lambda v: g.gelu(v, approximate)))
    grad_jax = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=approximate)))
    # atol: where 1 + tanh cancels (x near -5) both gradients are float32 noise of size ~1e-6
    chex.assert_trees_all_close(grad(x), grad_jax(x), rtol=1e-5, atol=1e-5)


def test_gelu_exact_is_x_times_the_normal_cdf_even_in_the_left_tail():
    x = np.concatenate([np.linspace(-12, 6, 1801), [-20.0, -30.0]]).astype(np.float32)
    expected = x.astype(np.float64) * ndtr(x.astype(np.float64))  # float64 reference
    got = np.asarray(g.gelu_exact(jnp.asarray(x)), np.float64)
    big = np.abs(expected) > 1e-30  # float32's smallest normals
    # relative, even at -7.6e-23
    np.testing.assert_allclose(got[big], expected[big], rtol=2e-5, atol=0)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-37)


def test_tanh_form_error_is_below_the_stated_bound():
    x = np.linspace(-10, 10, 2_000_001)  # step 1e-5, float64
    exact = x * ndtr(x)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    err = np.abs(exact - tanh_form)
    assert err.max() < g.TANH_MAX_ERROR  # the bound holds ...
    assert err.max() > 0.98 * g.TANH_MAX_ERROR  # ... and is tight (4.73e-4 vs 4.8e-4)
    assert abs(abs(x[err.argmax()]) - 2.70) < 0.01
    # the paper's other approximation, x sigmoid(1.702 x), is about forty times coarser
    sigmoid_form = x / (1 + np.exp(-1.702 * x))
    assert 0.019 < np.abs(exact - sigmoid_form).max() < 0.021
    # the float32 implementations obey the bound too
    xs = jnp.linspace(-10.0, 10.0, 2_000_001)
    assert float(jnp.max(jnp.abs(g.gelu(xs) - g.gelu(xs, approximate=True)))) < g.TANH_MAX_ERROR


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_at_large_inputs_has_the_right_limits_and_no_overflow(approximate):
    x = jnp.asarray([-3e38, -1e20, -1e13, -1e4, -50.0, 50.0, 1e4, 1e13, 1e20, 3e38])
    y = g.gelu(x, approximate)
    chex.assert_tree_all_finite(y)
    chex.assert_trees_all_close(y, jnp.maximum(x, 0.0), rtol=1e-7, atol=0)  # ReLU in both tails
    dy = jax.vmap(jax.grad(lambda v: g.gelu(v, approximate)))(x)
    chex.assert_tree_all_finite(dy)  # jax.nn.gelu(approximate=True) gives nan here: x**3 overflows
    chex.assert_trees_all_close(dy, (x > 0).astype(jnp.float32), atol=1e-6)


def test_tanh_form_written_out_derivative_equals_autodiff_of_the_formula():
    """`gelu_tanh` carries its derivative by hand (a custom JVP): it must be the derivative."""

    def traced(x):  # the same formula, differentiated by JAX
        c = jnp.clip(x, -10.0, 10.0)
        inner = np.sqrt(2.0 / np.pi).astype(x.dtype) * (c + 0.044715 * c * c * c)
        return 0.5 * x * (1.0 + jnp.tanh(inner))

    x = jnp.linspace(-12.0, 12.0, 20_001)  # float32; both sides of the clip at |x| = 10
    ours = jax.vmap(jax.grad(g.gelu_tanh))(x)
    np.testing.assert_allclose(ours, jax.vmap(jax.grad(traced))(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(g.gelu_tanh(x), traced(x))  # the forward is unchanged
    forward_mode = jax.jacfwd(lambda v: g.gelu_tanh(v).sum())(x[::100])
    np.testing.assert_allclose(forward_mode, ours[::100], rtol=1e-6)
    second = jax.grad(jax.grad(g.gelu_tanh))(0.0)  # differentiable twice: GELU''(0) = sqrt(2/pi)
    np.testing.assert_allclose(second, np.sqrt(2.0 / np.pi), rtol=1e-5)


def test_gelu_at_zero_and_its_minimum():
    assert float(g.gelu(jnp.zeros(()))) == 0.0
    assert float(jax.grad(g.gelu)(jnp.zeros(()))) == pytest.approx(0.5)
    x = jnp.linspace(-3.0, 0.0, 30_001)
    y = g.gelu(x)
    assert float(x[jnp.argmin(y)]) == pytest.approx(-0.7518, abs=1e-3)  # the dip below zero
    assert float(y.min()) == pytest.approx(-0.1700, abs=1e-3)


@pytest.mark.parametrize("approximate", [False, True])
def test_linen_and_nnx_twins_agree_on_outputs_and_gradients(approximate):
    x = jax.random.normal(jax.random.key(1), (6, 8)) * 3
    model = g.NnxGELU(approximate=approximate)
    variables, out, _ = assert_twins_agree(
        g.LinenGELU(approximate=approximate), model, (x,), loss=lambda y: jnp.sum(y**2)
    )  # outputs and input gradients: there are no parameters
    assert variables == {}
    chex.assert_trees_all_close(out, g.gelu(x, approximate), rtol=1e-6)
    assert nnx.state(model, nnx.Param) == nnx.State({})


def test_gelu_rejects_bad_input():
    with pytest.raises(TypeError, match="x: expected a floating-point array"):
        g.gelu(jnp.arange(3))
    with pytest.raises(TypeError, match="x"):
        g.gelu([1.0, 2.0])
    with pytest.raises(TypeError, match="approximate"):
        g.gelu(jnp.ones(3), approximate="tanh")
    with pytest.raises(TypeError, match="approximate"):
        g.NnxGELU(approximate=1)


@pytest.mark.claim
def test_claim_tanh_error_is_bounded_and_gelu_trains_as_well_as_relu(seed):
    m = gelu_experiment.experiment(seed=seed).metrics
    assert m["tanh_max_error"] < g.TANH_MAX_ERROR
    assert abs(m["tanh_max_error_at"] - 2.70) < 0.02
    # GELU's loss falls a little faster over the run; final losses and test accuracy tie.
    assert m["gelu_mean_training_loss"] < m["relu_mean_training_loss"]
    assert m["gelu_final_train_loss"] < 1.5 * m["relu_final_train_loss"]
    assert abs(m["gelu_test_accuracy"] - m["relu_test_accuracy"]) < 0.015
    assert min(m["gelu_test_accuracy"], m["relu_test_accuracy"]) > 0.94
