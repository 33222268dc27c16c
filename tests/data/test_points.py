import jax
import jax.numpy as jnp
import pytest

from impl import data

GENERATORS = [data.xor, data.two_spirals, data.moons, data.gaussian_mixture]


@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_points_shapes_dtypes_balance(make):
    x, y = make(jax.random.key(0), 160)
    assert x.shape == (160, 2) and x.dtype == jnp.float32
    assert y.shape == (160,) and y.dtype == jnp.int32
    counts = jnp.bincount(y)
    assert jnp.all(counts == counts[0])  # balanced classes
    assert jnp.all(jnp.isfinite(x))


@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_points_deterministic_given_key(make):
    a, b, c = make(jax.random.key(1), 80), make(1, 80), make(jax.random.key(2), 80)
    assert jnp.array_equal(a[0], b[0]) and jnp.array_equal(a[1], b[1])
    assert not jnp.array_equal(a[0], c[0])


def test_xor_labels_follow_sign_rule_without_noise():
    x, y = data.xor(0, 40, noise=0.0)
    assert jnp.array_equal(y, (jnp.sign(x[:, 0]) != jnp.sign(x[:, 1])).astype(jnp.int32))


def test_gaussian_mixture_points_sit_near_their_component():
    x, y = data.gaussian_mixture(0, 800, n_components=8, radius=2.0, std=0.05)
    angle = 2 * jnp.pi * y / 8
    centres = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    assert float(jnp.max(jnp.linalg.norm(x - centres, axis=1))) < 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: data.xor(0, 10), "n: expected a multiple of 4"),
        (lambda: data.two_spirals(0, -2), "n: expected a positive integer"),
        (lambda: data.moons(0, 10, noise=-1.0), "noise"),
        (lambda: data.gaussian_mixture(0, 80, n_components=0), "n_components"),
        (lambda: data.two_spirals(0, 10, turns=0.0), "turns"),
    ],
)
def test_points_reject_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_points_reject_a_bad_key():
    with pytest.raises(TypeError, match="key"):
        data.xor("zero", 8)
