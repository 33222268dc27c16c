import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.deep_networks import alexnet, alexnet_experiment
from impl.deep_networks.dnn import cross_entropy

from twin_checks import assert_twins_agree


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


# ---------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("channels", [(4, 8), (8, 16, 16, 16, 16)])
def test_alexnet_shapes_and_dtypes(activation, channels):
    params = alexnet.init_alexnet(jax.random.key(0), (8, 8, 1), channels, hidden=32)
    x = jax.random.uniform(jax.random.key(1), (5, 8, 8, 1))
    for key in (None, jax.random.key(2)):
        logits = alexnet.alexnet(params, x, key=key, activation=activation)
        chex.assert_shape(logits, (5, 10))
        chex.assert_type(logits, jnp.float32)
        chex.assert_tree_all_finite(logits)


def test_local_response_norm_keeps_shape_and_dtype():
    a = _normal(0, (2, 3, 4, 7))
    b = alexnet.local_response_norm(a)
    chex.assert_shape(b, a.shape)
    chex.assert_type(b, jnp.float32)


# ---------------------------------------------------------------------------------------
# Local response normalisation against the formula written as loops
# ---------------------------------------------------------------------------------------
def _lrn_loops(a, k, n, alpha, beta):
    """Section 3.3, literally: b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)}
    a[j]^2)^beta."""
    a = np.asarray(a, dtype=np.float64)
    b = np.empty_like(a)
    N = a.shape[-1]
    for idx in np.ndindex(a.shape[:-1]):
        for i in range(N):
            lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
            energy = sum(a[(*idx, j)] ** 2 for j in range(lo, hi + 1))
            b[(*idx, i)] = a[(*idx, i)] / (k + alpha * energy) ** beta
    return b


@pytest.mark.parametrize(
    ("k", "n", "alpha", "beta"),
    [
        (2.0, 5, 1e-4, 0.75),
        (1.0, 3, 0.5, 0.75),
        (2.0, 5, 1.0, 0.5),
        (0.5, 1, 2.0, 1.0),
        (2.0, 9, 0.1, 0.75),
    ],
)
def test_local_response_norm_matches_the_papers_formula(k, n, alpha, beta):
    a = 3.0 * _normal(0, (2, 2, 3, 6))  # large activations, so the sum term matters
    ours = alexnet.local_response_norm(a, k=k, n=n, alpha=alpha, beta=beta)
    np.testing.assert_allclose(
        np.asarray(ours), _lrn_loops(a, k, n, alpha, beta), rtol=2e-5, atol=1e-6
    )


def test_local_response_norm_with_papers_constants_is_nearly_a_constant_scale_on_small_inputs():
    a = _normal(0, (2, 4, 4, 16))  # activations of order 1, as in our trained nets
    ratio = alexnet.local_response_norm(a) / (a * 2.0**-0.75)
    assert float(jnp.max(jnp.abs(ratio - 1.0))) < 1e-2


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------
def test_random_shift_moves_each_image_by_at_most_max_shift():
    # zero border
    x = jnp.pad(
        jax.random.uniform(jax.random.key(0), (16, 6, 6, 1)), [(0, 0), (1, 1), (1, 1), (0, 0)]
    )
    shifted = alexnet.random_shift(jax.random.key(1), x, 1)
    chex.assert_shape(shifted, x.shape)
    seen = set()
    for original, moved in zip(np.asarray(x), np.asarray(shifted)):
        matches = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), moved)
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 3  # the offsets really are random
    chex.assert_trees_all_equal(alexnet.random_shift(jax.random.key(1), x, 0), x)


# ---------------------------------------------------------------------------------------
# Dropout: on with a key, off without
# ---------------------------------------------------------------------------------------
def test_dropout_is_used_only_when_a_key_is_given():
    params = alexnet.init_alexnet(jax.random.key(0), (8, 8, 1), (4, 8), hidden=64)
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    chex.assert_trees_all_equal(alexnet.alexnet(params, x), alexnet.alexnet(params, x))
    train_a = alexnet.alexnet(params, x, key=jax.random.key(5))
    train_b = alexnet.alexnet(params, x, key=jax.random.key(6))
    assert not np.allclose(train_a, train_b)
    chex.assert_trees_all_close(
        alexnet.alexnet(params, x, key=jax.random.key(5), dropout_rate=0.0),
        alexnet.alexnet(params, x),
    )


# ---------------------------------------------------------------------------------------
# Linen / NNX twins
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("key", [None, 3], ids=["eval", "train"])
def test_linen_and_nnx_twins_agree(activation, key):
    x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
    channels = (4, 8, 8)
    key = None if key is None else jax.random.key(key)  # the same dropout masks for both
    labels = jnp.arange(x.shape[0]) % 10
    linen = alexnet.LinenAlexNet(channels=channels, hidden=16, activation=activation)
    assert_twins_agree(
        linen,
        alexnet.NnxAlexNet((8, 8, 1), channels, hidden=16, activation=activation, rngs=nnx.Rngs(1)),
        (x,),
        loss=lambda logits: cross_entropy(logits, labels),
        linen_apply=lambda variables, x: linen.apply(variables, x, key=key),
        nnx_apply=lambda model, x: model(x, key=key),
    )


def test_linen_params_are_the_tree_init_alexnet_declares():
    x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
    linen = alexnet.LinenAlexNet(channels=(4, 8, 8), hidden=16)
    variables = linen.init(jax.random.key(0), x)
    layers = variables["params"]["layers"]
    chex.assert_trees_all_equal_structs(
        layers, alexnet.init_alexnet(jax.random.key(0), (8, 8, 1), (4, 8, 8), 16)
    )
    chex.assert_trees_all_close(linen.apply(variables, x), alexnet.alexnet(layers, x), rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: alexnet.LinenAlexNet().init(jax.random.key(0), jnp.ones((2, 1, 8, 8))),
            ValueError,
            "x: .*channels-first",
        ),
        (
            lambda: alexnet.NnxAlexNet(rngs=nnx.Rngs(0))(jnp.ones((2, 1, 8, 8))),
            ValueError,
            "x: .*channels-first",
        ),
        (
            lambda: alexnet.NnxAlexNet(rngs=nnx.Rngs(0))(jnp.ones((2, 16, 16, 1))),
            ValueError,
            "x: expected 8x8",
        ),
        (
            lambda: alexnet.LinenAlexNet().init(jax.random.key(0), jnp.ones((2, 2, 2, 1))),
            ValueError,
            "x: expected images of at least 3x3",
        ),
        (lambda: alexnet.NnxAlexNet(channels=(8,), rngs=nnx.Rngs(0)), ValueError, "channels"),
        (
            lambda: alexnet.NnxAlexNet(activation="sigmoid", rngs=nnx.Rngs(0)),
            ValueError,
            "activation",
        ),
        (
            lambda: alexnet.NnxAlexNet(dropout_rate=1.0, rngs=nnx.Rngs(0)),
            ValueError,
            "dropout_rate",
        ),
        (lambda: alexnet.NnxAlexNet(hidden=-1, rngs=nnx.Rngs(0)), ValueError, "hidden"),
        (lambda: alexnet.local_response_norm(jnp.ones((4, 4, 3))), ValueError, "a: expected shape"),
        (
            lambda: alexnet.local_response_norm(jnp.ones((1, 4, 4, 3)), n=0),
            ValueError,
            "n: expected a positive",
        ),
        (
            lambda: alexnet.random_shift(jax.random.key(0), jnp.ones((1, 4, 4, 1)), -1),
            ValueError,
            "max_shift",
        ),
        (
            lambda: alexnet.random_shift(jax.random.key(0), jnp.ones((4, 4, 1)), 1),
            ValueError,
            "x: expected shape",
        ),
        (lambda: alexnet_experiment.experiment(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_steps_to_reads_the_smoothed_curve():
    loss = np.concatenate([np.ones(100), np.full(100, 0.01)])
    # The mean of steps 97..106 is (4 * 1 + 6 * 0.01) / 10 < 0.5; that of steps 96..105 is not.
    assert alexnet_experiment.steps_to(loss, 0.5, window=10) == 106
    assert alexnet_experiment.steps_to(loss, 0.001) == 201  # never: one past the end


# ---------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_regularised_net_generalises_and_relu_speedup_does_not_reproduce(seed):
    m = alexnet_experiment.experiment(seed=seed).metrics
    # Section 4: shifts + dropout shrink the train/test gap on average (loss gap 0.177 -> 0.089 over
    # seeds 0-9) but not on every seed (larger on 3 and 9, docs/claims.md), so the direction is
    # reported on the page, not asserted per seed. What held on all ten is asserted:
    assert m["relu_regularised_accuracy_gap"] < 0.045  # at most 0.037 seen
    assert m["relu_regularised_test_accuracy"] > 0.93  # at least 0.956 seen
    # Figure 1 at toy scale: the plain nets fit the training
    # set, but ReLU is *not* faster than tanh.
    assert min(m["relu_train_accuracy"], m["tanh_train_accuracy"]) > 0.998  # at least 0.9989 seen
    assert m["relu_speedup"] < 1.0
    # Section 3.3: with k=2, alpha=1e-4, LRN is within 1% of the constant scale 2^-0.75 here.
    assert m["lrn_max_departure"] < 1e-2
