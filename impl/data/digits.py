"""scikit-learn's handwritten digits with a fixed, stratified train/test split.

The 1,797 8x8 greyscale digits (UCI "optdigits" test set, 16 grey levels) ship inside
scikit-learn, so nothing is downloaded. Pixels are scaled to ``[0, 1]``.

Shapes:
    as vectors: ``x`` is ``float32[n, 64]``; as images: ``float32[n, 8, 8, 1]`` (NHWC);
    labels ``y`` are ``int32[n]`` in ``0..9``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from impl import checks

__all__ = ["DigitsSplit", "load_digits"]


class DigitsSplit(NamedTuple):
    """A train/test split. ``x_*`` is ``float32[n, 64]`` or ``float32[n, 8, 8, 1]``; ``y_*`` is
    ``int32[n]``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # 16 grey levels -> [0, 1]
    y = bunch.target.astype(np.int32)
    return x, y


def load_digits(
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    as_images: bool = False,
    n_train: int | None = None,
) -> DigitsSplit:
    """Load the digits with a stratified split that depends only on ``seed``.

    Args:
        test_fraction: share of each class held out for testing, in ``(0, 1)``.
        seed: seed of the split; ``0`` is the project's canonical split, used by every page.
        as_images: return ``[n, 8, 8, 1]`` images instead of ``[n, 64]`` vectors.
        n_train: keep only the first ``n_train`` training examples (a class-balanced prefix,
            for data-size experiments); ``None`` keeps all.

    Returns:
        A `DigitsSplit` of numpy arrays (``float32`` inputs, ``int32`` labels).
    """
    checks.in_range(
        "test_fraction", test_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    checks.non_negative_int("seed", seed)
    x, y = _raw()
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    # Interleave classes so that any prefix of the training set stays class-balanced.
    train = _interleave(train_idx)
    test = np.sort(np.concatenate(test_idx))
    if n_train is not None:
        checks.positive_int("n_train", n_train)
        if n_train > len(train):
            raise ValueError(
                f"n_train: expected at most {len(train)} training examples, got {n_train}"
            )
        train = train[:n_train]
    x_train, x_test = x[train], x[test]
    if as_images:
        x_train = x_train.reshape(-1, 8, 8, 1)
        x_test = x_test.reshape(-1, 8, 8, 1)
    return DigitsSplit(x_train, y[train], x_test, y[test])


def _interleave(groups: list[np.ndarray]) -> np.ndarray:
    """Round-robin merge: class 0, class 1, ..., class 9, class 0, ..."""
    longest = max(len(g) for g in groups)
    order = [g[i] for i in range(longest) for g in groups if i < len(g)]
    return np.asarray(order, dtype=np.int64)
