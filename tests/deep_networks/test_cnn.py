import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.deep_networks import cnn, cnn_experiment
from impl.deep_networks.dnn import cross_entropy

from twin_checks import assert_twins_agree


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


# ---------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "k", "stride", "padding", "out"),
    [
        (8, 3, 1, "SAME", 8),
        (8, 3, 1, "VALID", 6),
        (8, 3, 2, "SAME", 4),
        (9, 3, 2, "VALID", 4),
        (7, 2, 1, "CIRCULAR", 7),
        (8, 3, 2, "CIRCULAR", 4),
    ],
)
def test_conv2d_output_shape(size, k, stride, padding, out):
    x = _normal(0, (2, size, size, 3))
    y = cnn.conv2d(x, _normal(1, (k, k, 3, 5)), jnp.zeros(5), stride=stride, padding=padding)
    chex.assert_shape(y, (2, out, out, 5))
    chex.assert_type(y, jnp.float32)


@pytest.mark.parametrize("pool", [cnn.max_pool, cnn.avg_pool])
@pytest.mark.parametrize(
    ("size", "window", "stride", "padding", "out"),
    [
        (8, 2, None, "VALID", 4),
        (9, 2, None, "VALID", 4),
        (8, 3, 2, "SAME", 4),
        (9, 3, 2, "VALID", 4),
    ],
)
def test_pool_output_shape(pool, size, window, stride, padding, out):
    y = pool(_normal(0, (3, size, size, 2)), window, stride, padding)
    chex.assert_shape(y, (3, out, out, 2))
    chex.assert_type(y, jnp.float32)


@pytest.mark.parametrize("channels", [(4,), (4, 8)])
def test_cnn_shapes_and_dtypes(channels):
    params = cnn.init_cnn(jax.random.key(0), (8, 8, 1), channels, hidden=16, n_classes=10)
    logits = cnn.cnn(params, jnp.ones((5, 8, 8, 1)))
    chex.assert_shape(logits, (5, 10))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)
    chex.assert_shape(params["hidden"]["kernel"], ((8 >> len(channels)) ** 2 * channels[-1], 16))


# ---------------------------------------------------------------------------------------
# Ours against JAX / Flax
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["SAME", "VALID", "CIRCULAR"])
@pytest.mark.parametrize(("k", "stride"), [(3, 1), (3, 2), (2, 1), (5, 2)])
def test_conv2d_matches_flax_conv(padding, k, stride):
    x = _normal(0, (2, 9, 8, 3))
    ref = nn.Conv(4, (k, k), strides=stride, padding=padding)
    variables = ref.init(jax.random.key(1), x)
    p = variables["params"]

    def ours(x, p):
        return cnn.conv2d(x, p["kernel"], p["bias"], stride=stride, padding=padding)

    chex.assert_trees_all_close(ours(x, p), ref.apply(variables, x), rtol=1e-5, atol=1e-5)
    grad_ours = jax.grad(lambda x, p: jnp.sum(ours(x, p) ** 2), argnums=(0, 1))(x, p)
    grad_ref = jax.grad(lambda x, p: jnp.sum(ref.apply({"params": p}, x) ** 2), argnums=(0, 1))(
        x, p
    )
    chex.assert_trees_all_close(grad_ours, grad_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(cnn.max_pool, nn.max_pool), (cnn.avg_pool, nn.avg_pool)],
    ids=["max", "avg"],
)
@pytest.mark.parametrize(
    ("window", "stride", "padding"),
    [(2, 2, "VALID"), (3, 2, "SAME"), (3, 2, "VALID"), (2, 1, "SAME"), (3, 1, "SAME")],
)
def test_pooling_matches_flax(ours, theirs, window, stride, padding):
    x = _normal(0, (2, 9, 8, 3))
    mine = lambda x: ours(x, window, stride, padding)  # noqa: E731
    ref = lambda x: theirs(x, (window, window), (stride, stride), padding)  # noqa: E731
    chex.assert_trees_all_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)  # sums in another order
    weights = _normal(1, mine(x).shape)  # a random upstream gradient
    grad_mine = jax.grad(lambda x: jnp.sum(weights * mine(x)))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(weights * ref(x)))(x)
    chex.assert_trees_all_close(grad_mine, grad_ref, rtol=1e-5, atol=1e-6)


def test_conv2d_matches_a_direct_sum():
    """The docstring's formula, written as loops: y[i, j, o] = sum_abc x[s i + a, s j + b, c] w[a,
    b, c, o] + b[o]."""
    x, w, b = _normal(0, (1, 5, 6, 2)), _normal(1, (3, 2, 2, 3)), _normal(2, (3,))
    y = cnn.conv2d(x, w, b, stride=(2, 1), padding="VALID")
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            patch = x[0, 2 * i : 2 * i + 3, j : j + 2, :]  # [3, 2, c_in]
            expected = jnp.einsum("abc,abco->o", patch, w) + b
            chex.assert_trees_all_close(y[0, i, j], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Translation equivariance (property tests)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # 25 random shapes, each its own compilation
@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(3, 10),
    width=st.integers(3, 10),
    k=st.integers(1, 3),
    dy=st.integers(-12, 12),
    dx=st.integers(-12, 12),
    seed=st.integers(0, 2**16),
)
def test_circular_conv_commutes_with_every_circular_shift(height, width, k, dy, dx, seed):
    """With circular padding (the image is a torus), conv(shift(x)) == shift(conv(x)) exactly."""
    x = _normal(seed, (2, height, width, 2))
    w = _normal(seed + 1, (k, k, 2, 3))
    shift = lambda a: jnp.roll(a, (dy, dx), axis=(1, 2))  # noqa: E731
    left = cnn.conv2d(shift(x), w, padding="CIRCULAR")
    right = shift(cnn.conv2d(x, w, padding="CIRCULAR"))
    chex.assert_trees_all_close(left, right, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 4),
    top=st.integers(0, 5),
    left=st.integers(0, 5),
    height=st.integers(4, 7),
    width=st.integers(4, 7),
    seed=st.integers(0, 2**16),
)
def test_valid_conv_of_a_moved_window_is_the_moved_output(k, top, left, height, width, seed):
    """Without wrap-around, equivariance holds away from the border: looking at the image through a
    window moved by (top, left) moves the VALID output by the same amount (and crops it)."""
    x = _normal(seed, (1, 12, 12, 2))
    w = _normal(seed + 1, (k, k, 2, 3))
    full = cnn.conv2d(x, w, padding="VALID")  # [1, 12 - k + 1, 12 - k + 1, 3]
    window = cnn.conv2d(x[:, top : top + height, left : left + width], w, padding="VALID")
    chex.assert_trees_all_close(
        window,
        full[:, top : top + height - k + 1, left : left + width - k + 1],
        rtol=1e-5,
        atol=1e-5,
    )


def test_same_padding_breaks_equivariance_at_the_border():
    """The statement above is precise: with zero padding, a circular shift is *not* commuted
    with."""
    x, w = _normal(0, (1, 6, 6, 1)), _normal(1, (3, 3, 1, 1))
    shift = lambda a: jnp.roll(a, 2, axis=2)  # noqa: E731
    assert float(jnp.max(jnp.abs(cnn.conv2d(shift(x), w) - shift(cnn.conv2d(x, w))))) > 1e-2


# ---------------------------------------------------------------------------------------
# Linen / NNX twins
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [(4,), (4, 8)])
def test_linen_and_nnx_twins_agree(channels):
    x = _normal(0, (6, 8, 8, 1))
    labels = jnp.arange(x.shape[0]) % 10
    assert_twins_agree(
        cnn.LinenCNN(channels=channels, hidden=16),
        cnn.NnxCNN((8, 8, 1), channels, hidden=16, rngs=nnx.Rngs(1)),
        (x,),
        loss=lambda logits: cross_entropy(logits, labels),
    )


def test_linen_params_are_the_tree_init_cnn_declares():
    x = _normal(0, (6, 8, 8, 1))
    linen = cnn.LinenCNN(channels=(4, 8), hidden=16)
    variables = linen.init(jax.random.key(0), x)
    layers = variables["params"]["layers"]
    chex.assert_trees_all_equal_structs(
        layers, cnn.init_cnn(jax.random.key(0), (8, 8, 1), (4, 8), 16)
    )
    chex.assert_trees_all_close(linen.apply(variables, x), cnn.cnn(layers, x), rtol=1e-6)
    assert cnn.count_params(variables) == cnn.count_params(
        cnn.init_cnn(jax.random.key(0), (8, 8, 1), (4, 8), 16)
    )


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: cnn.conv2d(jnp.ones((2, 3, 8, 8)), jnp.ones((3, 3, 3, 4))),
            ValueError,
            "x: .*channels-first",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 4))),
            ValueError,
            r"x: expected shape \[batch",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((5, 5, 1, 2))),
            ValueError,
            "kernel: a 5x5 kernel",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1))),
            ValueError,
            "kernel: expected shape",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)), jnp.ones(3)),
            ValueError,
            "bias",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)), padding="FULL"),
            ValueError,
            "padding",
        ),
        (
            lambda: cnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)), stride=0),
            ValueError,
            "stride",
        ),
        (
            lambda: cnn.max_pool(jnp.ones((1, 2, 2, 1)), 3),
            ValueError,
            "window: a 3x3 pooling window",
        ),
        (
            lambda: cnn.avg_pool(jnp.ones((1, 4, 4, 1)), 2, padding="CIRCULAR"),
            ValueError,
            "padding",
        ),
        (lambda: cnn.max_pool(jnp.ones((4, 4, 1)), 2), ValueError, "x: expected shape"),
        (
            lambda: cnn.LinenCNN().init(jax.random.key(0), jnp.ones((2, 1, 8, 8))),
            ValueError,
            r"x: expected NHWC .* with 1 channels, got shape \(2, 1, 8, 8\); it looks "
            r"channels-first",
        ),
        (
            lambda: cnn.NnxCNN(kernel_size=9, rngs=nnx.Rngs(0)),
            ValueError,
            "kernel_size: a 9x9 kernel",
        ),
        (
            lambda: cnn.LinenCNN(kernel_size=9).init(jax.random.key(0), jnp.ones((1, 8, 8, 1))),
            ValueError,
            "kernel_",
        ),
        (
            lambda: cnn.NnxCNN(channels=(4, 4, 4, 4), rngs=nnx.Rngs(0)),
            ValueError,
            "channels: 4 conv",
        ),
        (lambda: cnn.NnxCNN(channels=(), rngs=nnx.Rngs(0)), ValueError, "channels"),
        (lambda: cnn.NnxCNN(hidden=0, rngs=nnx.Rngs(0)), ValueError, "hidden"),
        (
            lambda: cnn.NnxCNN(rngs=nnx.Rngs(0))(jnp.ones((2, 16, 16, 1))),
            ValueError,
            r"x: expected shape \[batch, 8",
        ),
        (lambda: cnn_experiment.experiment(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---------------------------------------------------------------------------------------
# The claim
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_cnn_beats_mlps_of_similar_and_larger_size(seed):
    m = cnn_experiment.experiment(seed=seed).metrics
    assert m["cnn_params"] < m["mlp_128_params"] < m["mlp_512_params"]
    # Held-out accuracy: the CNN beats both MLPs by at least half a point (>= 3 of 450 digits).
    assert m["cnn_test_accuracy"] > m["mlp_128_test_accuracy"] + 0.005
    assert m["cnn_test_accuracy"] > m["mlp_512_test_accuracy"] + 0.005
    assert m["cnn_test_accuracy"] > 0.96
    assert m["equivariance_max_error"] < 1e-5
