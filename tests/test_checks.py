import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl import checks

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


@pytest.mark.parametrize(
    ("fn", "value", "error", "message"),
    [
        (checks.positive_int, 0, ValueError, "n: expected a positive integer, got 0"),
        (checks.positive_int, -3, ValueError, "got -3"),
        (checks.positive_int, 2.0, TypeError, "expected a positive integer"),
        (checks.positive_int, True, TypeError, "expected a positive integer"),
        (checks.non_negative_int, -1, ValueError, "n: expected a non-negative integer"),
        (checks.rate, 1.0, ValueError, r"n: expected a number in \[0, 1\), got 1.0"),
        (checks.rate, -0.1, ValueError, r"\[0, 1\)"),
        (checks.rate, float("nan"), ValueError, r"\[0, 1\)"),
        (checks.rate, "0.5", TypeError, "expected a number"),
    ],
)
def test_checks_reject_bad_values_naming_the_argument(fn, value, error, message):
    with pytest.raises(error, match=message):
        fn("n", value)


def test_checks_accept_good_values():
    assert checks.positive_int("n", np.int64(3)) == 3
    assert checks.non_negative_int("n", 0) == 0
    assert checks.rate("p", 0.0) == 0.0
    assert checks.in_range("x", 1, 0, 1) == 1.0
    assert checks.one_of("task", "copy", ["copy", "sort"]) == "copy"


def test_one_of_lists_the_choices():
    with pytest.raises(ValueError, match="task: expected one of 'copy', 'sort'; got 'sortt'"):
        checks.one_of("task", "sortt", ["copy", "sort"])


def test_array_shape_names_argument_and_layout():
    checks.array_shape("x", jnp.zeros((4, 2)), ("batch", 2))
    with pytest.raises(ValueError, match=r"x: expected shape \[batch, 2\], got \(4, 3\)"):
        checks.array_shape("x", jnp.zeros((4, 3)), ("batch", 2))
    with pytest.raises(
        ValueError, match=r"images: expected shape \[batch, height, width, channels\]"
    ):
        checks.array_shape(
            "images",
            jnp.zeros((4, 8, 8)),
            (None, None, None, None),
            dims="[batch, height, width, channels]",
        )
    with pytest.raises(TypeError, match="x: expected an array, got list"):
        checks.array_shape("x", [1, 2], (2,))


def test_prng_key_accepts_seeds_and_keys():
    a = checks.prng_key("key", 3)
    b = checks.prng_key("key", jax.random.key(3))
    c = checks.prng_key("key", jax.random.PRNGKey(3))
    assert jnp.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert jnp.array_equal(jax.random.key_data(a), jax.random.key_data(c))
    with pytest.raises(TypeError, match=r"key: expected a jax\.random\.key"):
        checks.prng_key("key", "seed")


def test_hyperparameter_accepts_concrete_integer_and_float_scalars_as_jit_does():
    # rejected before issue #11, accepted inside jit
    checks.hyperparameter("n", jnp.asarray(3), 0.0)
    checks.hyperparameter("x", np.float32(0.5), 0.0, 1.0)
    jax.jit(lambda v: checks.hyperparameter("n", v, 0.0))(jnp.asarray(3))
    with pytest.raises(ValueError, match="n: expected a number in"):
        checks.hyperparameter("n", jnp.asarray(-3), 0.0)
    with pytest.raises(ValueError, match="real"):
        checks.hyperparameter("x", jnp.asarray(1j), 0.0)
    with pytest.raises(TypeError, match="scalar"):
        checks.hyperparameter("x", jnp.ones(3), 0.0)
