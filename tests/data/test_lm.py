import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl.data.lm import lm_windows, train_test_split

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def test_lm_windows_shapes_and_shift():
    ids = np.arange(100, dtype=np.int32) * 3
    batch = lm_windows(ids, context=8, n=32, key=jax.random.key(0))
    assert set(batch) == {"inputs", "targets"}
    for name in ("inputs", "targets"):
        assert batch[name].shape == (32, 8) and batch[name].dtype == jnp.int32
    assert jnp.array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    # the next token of the stream
    assert jnp.array_equal(batch["targets"][:, -1], batch["inputs"][:, -1] + 3)
    assert jnp.all(jnp.diff(batch["inputs"], axis=1) == 3)  # consecutive tokens of the stream


def test_lm_windows_reach_both_ends_and_are_deterministic():
    ids = jnp.arange(10, dtype=jnp.int32)
    batch = lm_windows(ids, context=9, n=50, key=0)  # exactly one possible window
    assert jnp.array_equal(batch["inputs"], jnp.broadcast_to(ids[:9], (50, 9)))
    assert jnp.array_equal(batch["targets"], jnp.broadcast_to(ids[1:], (50, 9)))
    a = lm_windows(np.arange(1000), context=4, n=16, key=3)
    b = lm_windows(np.arange(1000), context=4, n=16, key=jax.random.key(3))
    c = lm_windows(np.arange(1000), context=4, n=16, key=4)
    assert jnp.array_equal(a["inputs"], b["inputs"]) and not jnp.array_equal(
        a["inputs"], c["inputs"]
    )
    starts = lm_windows(np.arange(12), context=10, n=200, key=1)["inputs"][:, 0]
    assert set(np.asarray(starts).tolist()) == {0, 1}  # every start, no window past the end


def test_train_test_split_is_contiguous():
    ids = np.arange(100, dtype=np.int32)
    train, test = train_test_split(ids, 0.1)
    assert train.tolist() == list(range(90)) and test.tolist() == list(range(90, 100))
    train, test = train_test_split(jnp.arange(7), test_fraction=0.5)
    assert isinstance(train, jax.Array) and (train.shape, test.shape) == ((3,), (4,))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: lm_windows(np.arange(8), context=8, n=2, key=0),
            ValueError,
            "ids: expected at least context",
        ),
        (
            lambda: lm_windows([1, 2, 3], context=1, n=2, key=0),
            TypeError,
            "ids: expected a 1-D integer array",
        ),
        (
            lambda: lm_windows(np.zeros(9), context=2, n=2, key=0),
            TypeError,
            "ids: expected integer token ids",
        ),
        (
            lambda: lm_windows(np.zeros((3, 3), int), context=2, n=2, key=0),
            ValueError,
            r"ids: expected shape \[N\]",
        ),
        (
            lambda: lm_windows(np.arange(9), context=0, n=2, key=0),
            ValueError,
            "context: expected a positive",
        ),
        (
            lambda: lm_windows(np.arange(9), context=2, n=-1, key=0),
            ValueError,
            "n: expected a positive",
        ),
        (lambda: lm_windows(np.arange(9), context=2, n=2, key="a"), TypeError, "key: expected"),
        (
            lambda: train_test_split(np.arange(9), 1.0),
            ValueError,
            "test_fraction: expected a number in",
        ),
        (
            lambda: train_test_split(np.arange(9), 0.0),
            ValueError,
            "test_fraction: expected a number in",
        ),
        (lambda: train_test_split(np.arange(3), 0.1), ValueError, "ids: 3 tokens are too few"),
        (
            lambda: train_test_split(np.arange(9.0), 0.1),
            TypeError,
            "ids: expected integer token ids",
        ),
    ],
)
def test_lm_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
