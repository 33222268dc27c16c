import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl import data
from impl.deep_networks.cnn import cnn
from impl.deep_networks.dnn import dense
from impl.generation import judges


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(as_images=True, seed=0)


def test_digits_judge_is_accurate_cached_and_deterministic(digits):
    judge = judges.digits_judge()
    assert judge is judges.digits_judge()  # trained once per process
    assert judge.test_accuracy > 0.95
    logits = judges.judge_logits(judge, digits.x_test)
    chex.assert_shape(logits, (len(digits.y_test), 10))
    chex.assert_type(logits, jnp.float32)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == digits.y_test))
    assert accuracy == pytest.approx(judge.test_accuracy)


def test_judge_features_are_the_layer_under_the_logits(digits):
    judge = judges.digits_judge()
    feats = judges.judge_features(judge, digits.x_test[:16])
    chex.assert_shape(feats, (16, judges.JUDGE_HIDDEN))
    chex.assert_trees_all_close(
        dense(judge.params["out"], feats),
        cnn(judge.params, jnp.asarray(digits.x_test[:16])),
        atol=1e-5,
    )
    flat = digits.x_test[:16].reshape(16, 64)  # [n, 64] is accepted as well
    chex.assert_trees_all_close(judges.judge_features(judge, flat), feats)


def test_frechet_of_a_set_with_itself_is_zero(digits):
    feats = np.asarray(judges.judge_features(judges.digits_judge(), digits.x_test))
    assert judges.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    scores = judges.digit_scores(digits.x_test, digits.y_test)
    assert scores["frechet"] == pytest.approx(0.0, abs=1e-6)
    assert scores["class_accuracy"] == pytest.approx(judges.digits_judge().test_accuracy)
    assert 0 < scores["frechet_test_vs_train"] < 1.0
    assert sum(scores["class_histogram"]) == pytest.approx(1.0)


def test_frechet_of_shifted_and_scaled_gaussians_matches_the_closed_form():
    # Samples are whitened exactly, so their mean and covariance are the intended ones.
    rng = np.random.default_rng(0)
    n, dim = 4000, 5
    z = rng.standard_normal((n, dim))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    scales = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    shift = np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    a, b = z, z * scales + shift  # N(0, I) and N(shift, diag(scales^2))
    closed = np.sum(shift**2) + np.sum((1.0 - scales) ** 2)  # Tr(I + S^2 - 2 S)
    assert judges.frechet_distance(a, b) == pytest.approx(closed, rel=1e-9)
    assert judges.frechet_distance(b, a) == pytest.approx(closed, rel=1e-9)
    assert judges.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift**2), rel=1e-9)


def test_mixture_modes_counts_constructed_samples():
    centres = judges.ring_centres(8, 2.0)
    chex.assert_shape(centres, (8, 2))
    std = 0.1
    near = np.repeat(np.asarray(centres)[:3], 100, axis=0) + 0.5 * std  # 300 samples on modes 0-2
    far = np.zeros((100, 2))  # 100 samples at the centre of the ring: no mode's
    one_stray = np.asarray(centres)[5:6] + 0.0  # a single sample on mode 5: under 1 %
    out = judges.mixture_modes(np.concatenate([near, far, one_stray]), centres, std)
    assert out["modes"] == 3
    assert out["n_modes"] == 8
    assert out["high_quality"] == pytest.approx(301 / 401)
    assert out["counts"] == [100, 100, 100, 0, 0, 1, 0, 0]
    assert judges.mixture_modes(np.asarray(centres), centres, std, min_share=0.0)["modes"] == 8


def test_ring_centres_match_the_points_mixture_and_grid_mixture_is_balanced():
    x, y = data.points.gaussian_mixture(0, 800, n_components=8, radius=2.0, std=0.01)
    out = judges.mixture_modes(x, judges.ring_centres(8, 2.0), 0.01)
    assert out["modes"] == 8 and out["high_quality"] > 0.98
    grid = judges.grid_centres(5, 2.0)
    chex.assert_shape(grid, (25, 2))
    assert float(grid.min()) == -4.0 and float(grid.max()) == 4.0
    x, y = judges.grid_mixture(jax.random.key(0), 1000, 5, 2.0, 0.05)
    chex.assert_shape(x, (1000, 2))
    assert np.bincount(np.asarray(y)).tolist() == [40] * 25
    out = judges.mixture_modes(x, grid, 0.05)
    assert out["modes"] == 25 and out["high_quality"] > 0.97


def test_sample_grid_draws_one_image():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    judges.sample_grid(ax, np.ones((10, 64), np.float32), rows=2, title="ones")
    (image,) = ax.get_images()
    assert image.get_array().shape == (2 * 9 + 1, 5 * 9 + 1)
    plt.close(fig)


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (
            lambda: judges.judge_logits(judges.digits_judge(), jnp.zeros((3, 8, 8))),
            ValueError,
            "images",
        ),
        (
            lambda: judges.judge_features(judges.digits_judge(), jnp.zeros((3, 63))),
            ValueError,
            "images",
        ),
        (lambda: judges.digit_scores([[0.0] * 64]), TypeError, "images"),
        (
            lambda: judges.digit_scores(jnp.zeros((4, 64)), labels=np.zeros(3, int)),
            ValueError,
            "labels",
        ),
        (
            lambda: judges.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))),
            ValueError,
            "feats_a",
        ),
        (
            lambda: judges.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))),
            ValueError,
            "feats_b",
        ),
        (
            lambda: judges.mixture_modes(np.zeros((4, 3)), judges.ring_centres(), 0.1),
            ValueError,
            "samples",
        ),
        (lambda: judges.mixture_modes(np.zeros((4, 2)), np.zeros(2), 0.1), ValueError, "centres"),
        (
            lambda: judges.mixture_modes(np.zeros((4, 2)), judges.ring_centres(), 0.0),
            ValueError,
            "std",
        ),
        (lambda: judges.ring_centres(0), ValueError, "n_modes"),
        (lambda: judges.grid_centres(5, -1.0), ValueError, "spacing"),
        (lambda: judges.grid_mixture(0, 0), ValueError, "n"),
        (lambda: judges.sample_grid(None, jnp.zeros((2, 64)), rows=0), ValueError, "rows"),
    ],
)
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
