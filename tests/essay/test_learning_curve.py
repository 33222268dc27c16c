import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl.essay import learning_curve as lc


def test_corrupt_labels_changes_exactly_the_requested_share():
    labels = jnp.arange(1000, dtype=jnp.int32) % 10
    for rate in (0.0, 0.2, 0.4):
        noisy = lc.corrupt_labels(jax.random.key(0), labels, rate)
        chex.assert_shape(noisy, (1000,))
        chex.assert_type(noisy, jnp.int32)
        assert int(jnp.sum(noisy != labels)) == round(rate * 1000)
        assert int(noisy.min()) >= 0 and int(noisy.max()) <= 9


def test_corrupt_labels_rejects_bad_input():
    labels = jnp.zeros(10, jnp.int32)
    with pytest.raises(ValueError, match="rate"):
        lc.corrupt_labels(jax.random.key(0), labels, 1.0)
    with pytest.raises(ValueError, match="labels"):
        lc.corrupt_labels(jax.random.key(0), labels.reshape(2, 5), 0.1)


def test_prefixes_are_class_balanced_like_load_digits():
    from impl import data

    full = data.load_digits()
    prefix = data.load_digits(n_train=200)
    np.testing.assert_array_equal(full.y_train[:200], prefix.y_train)
    assert np.bincount(prefix.y_train, minlength=10).min() == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (20,)}, "sizes"),
        ({"sizes": (20, 5000)}, "sizes"),
        ({"sizes": (0, 20)}, "sizes"),
        ({"noise": (0.2, 0.4)}, "noise"),
        ({"noise": (0.0, 1.5)}, "noise"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
    ],
)
def test_experiment_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        lc.experiment(**kwargs)


@pytest.mark.slow
def test_experiment_is_deterministic_and_complete():
    kwargs = {"sizes": (20, 100), "noise": (0.0, 0.4), "steps": 250}
    a, b = lc.experiment(3, **kwargs), lc.experiment(3, **kwargs)
    assert a.metrics == b.metrics
    for n in (20, 100):
        for pct in (0, 40):
            assert 0.0 <= a.metrics[f"acc_n{n}_noise{pct}"] <= 1.0
    assert a.figure is not None and len(a.lines) >= 4


@pytest.mark.claim
def test_more_data_helps_and_wrong_labels_hurt(seed):
    r = lc.experiment(seed).metrics
    assert r["acc_n1347_noise0"] > r["acc_n20_noise0"] + 0.15  # observed: about +0.2
    assert r["acc_n1347_noise0"] > 0.94
    assert r["clean_error_exponent"] < -0.3  # observed: about -0.5
    assert r["acc_n1347_noise40"] < r["acc_n1347_noise0"] - 0.04  # observed: 8-9 points lower
    assert r["noisy_worth_clean"] < 400  # observed: 80-95 clean examples
