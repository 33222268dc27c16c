"""Language-model examples from one long stream of token ids.

A language model learns to predict each token from the ones before it. From a corpus encoded
as one stream ``ids: int[N]``, `lm_windows` cuts ``n`` random windows of ``context + 1``
consecutive tokens: the first ``context`` are the inputs, the last ``context`` the targets, so
``targets[:, t] == inputs[:, t + 1]`` and position ``t`` is trained to predict token ``t + 1``.
`train_test_split` holds out the *end* of the stream as one contiguous block, so test windows
never overlap training text.

Shapes:
    ``lm_windows(ids: int[N], context=T, n=B) -> {"inputs": int32[B, T], "targets": int32[B, T]}``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks

__all__ = ["lm_windows", "train_test_split"]


def _stream(name: str, ids: Any) -> np.ndarray | jax.Array:
    if not hasattr(ids, "shape") or not hasattr(ids, "dtype"):
        raise TypeError(
            f"{name}: expected a 1-D integer array of token ids, got {type(ids).__name__}"
        )
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"{name}: expected shape [N], got {tuple(ids.shape)}")
    return ids


def lm_windows(ids: Any, *, context: int, n: int, key: jax.Array | int) -> dict[str, jax.Array]:
    """``n`` random windows of next-token examples from the stream ``ids``.

    Args:
        ids: ``int[N]`` token ids, with ``N >= context + 1``.
        context: tokens per example (``T``).
        n: number of windows (``B``); starts are drawn uniformly, with replacement.
        key: a PRNG key or int seed; the same key gives the same windows.

    Returns:
        ``{"inputs": int32[n, context], "targets": int32[n, context]}`` with targets one token
        ahead of inputs.
    """
    ids = _stream("ids", ids)
    context = checks.positive_int("context", context)
    n = checks.positive_int("n", n)
    key = checks.prng_key("key", key)
    if ids.shape[0] < context + 1:
        raise ValueError(
            f"ids: expected at least context + 1 = {context + 1} tokens, got {ids.shape[0]}"
        )
    # [n], last start N - context - 1
    starts = jax.random.randint(key, (n,), 0, ids.shape[0] - context)
    # [n, context + 1]
    windows = jnp.asarray(ids, jnp.int32)[starts[:, None] + jnp.arange(context + 1)[None, :]]
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}


def train_test_split(ids: Any, test_fraction: float = 0.1) -> tuple[Any, Any]:
    """Split a stream into a leading training part and a trailing test part, contiguous.

    Args:
        ids: ``int[N]`` token ids (numpy or JAX; the parts are slices of the same kind).
        test_fraction: share held out for testing, in ``(0, 1)``; the test part has
            ``round(N * test_fraction)`` tokens.

    Returns:
        ``(train, test)``: ``ids[:N - n_test]`` and ``ids[N - n_test:]``, both non-empty.
    """
    ids = _stream("ids", ids)
    fraction = checks.in_range(
        "test_fraction", test_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    total = ids.shape[0]
    n_test = round(total * fraction)
    if n_test == 0 or n_test == total:
        raise ValueError(
            f"ids: {total} tokens are too few to hold out "
            f"test_fraction={test_fraction} with both parts non-empty"
        )
    return ids[: total - n_test], ids[total - n_test :]
