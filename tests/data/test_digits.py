import numpy as np
import pytest

from impl.data import load_digits


def test_load_digits_shapes_dtypes_ranges():
    split = load_digits()
    assert split.x_train.shape[1:] == (64,) and split.x_train.dtype == np.float32
    assert split.y_train.dtype == np.int32
    assert len(split.x_train) + len(split.x_test) == 1797
    assert 0.24 < len(split.x_test) / 1797 < 0.26
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0
    assert set(np.unique(split.y_test)) == set(range(10))


def test_load_digits_images_are_nhwc():
    split = load_digits(as_images=True)
    assert split.x_train.shape[1:] == (8, 8, 1)
    flat = load_digits()
    np.testing.assert_array_equal(split.x_train.reshape(-1, 64), flat.x_train)


def test_load_digits_split_is_deterministic_and_disjoint():
    a, b = load_digits(seed=0), load_digits(seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_digits(seed=1)
    assert not np.array_equal(a.x_train, c.x_train)
    train_rows = {r.tobytes() for r in a.x_train}
    # The raw data has a handful of exact duplicates; the split itself must not share indices.
    assert sum(r.tobytes() in train_rows for r in a.x_test) < 10


def test_load_digits_prefix_is_class_balanced():
    split = load_digits(n_train=100)
    assert split.x_train.shape == (100, 64)
    assert np.bincount(split.y_train, minlength=10).tolist() == [10] * 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"n_train": 0}, "n_train"),
        ({"n_train": 10_000}, "n_train: expected at most"),
    ],
)
def test_load_digits_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits(**kwargs)
