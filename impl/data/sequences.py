"""Sequence tasks for the recurrent and attention topics, and a small synthetic language.

Algorithmic tasks (``copy``, ``reverse``, ``sort``, ``addition``, ``delayed_recall``) return a
`SeqTask` of integer tokens. Token ids ``0..3`` are reserved (`PAD`, `BOS`,
`EOS`, `SEP`); task symbols start at `FIRST_SYMBOL`.

`grammar_corpus` generates English-like sentences from a small context-free grammar
with number agreement ("the cat sees" / "the cats see"), for language-model topics that must
learn real structure without downloading text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks

__all__ = [
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "GRAMMAR_WORDS",
    "PAD",
    "SEP",
    "SeqTask",
    "addition",
    "copy_task",
    "delayed_recall",
    "grammar_corpus",
    "reverse_task",
    "sequence_task",
    "sort_task",
]  # fmt: skip

PAD, BOS, EOS, SEP = 0, 1, 2, 3
FIRST_SYMBOL = 4


class SeqTask(NamedTuple):
    """Inputs and targets as token ids.

    Attributes:
        inputs: ``int32[n, in_len]``.
        targets: ``int32[n, out_len]`` (``int32[n]`` for `delayed_recall`).
        vocab_size: number of distinct token ids, reserved ones included.
    """

    inputs: jax.Array
    targets: jax.Array
    vocab_size: int


def _symbols(key: jax.Array | int, n: int, length: int, n_symbols: int) -> jax.Array:
    checks.positive_int("n", n)
    checks.positive_int("length", length)
    checks.positive_int("n_symbols", n_symbols)
    return jax.random.randint(
        key, (n, length), FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, dtype=jnp.int32
    )


def copy_task(
    key: jax.Array | int, n: int = 256, *, length: int = 8, n_symbols: int = 8
) -> SeqTask:
    """Output the input sequence unchanged. ``inputs, targets: int32[n, length]``."""
    x = _symbols(checks.prng_key("key", key), n, length, n_symbols)
    return SeqTask(x, x, FIRST_SYMBOL + n_symbols)


def reverse_task(
    key: jax.Array | int, n: int = 256, *, length: int = 8, n_symbols: int = 8
) -> SeqTask:
    """Output the input sequence reversed. ``inputs, targets: int32[n, length]``."""
    x = _symbols(checks.prng_key("key", key), n, length, n_symbols)
    return SeqTask(x, x[:, ::-1], FIRST_SYMBOL + n_symbols)


def sort_task(
    key: jax.Array | int, n: int = 256, *, length: int = 8, n_symbols: int = 8
) -> SeqTask:
    """Output the input symbols in ascending order. ``inputs, targets: int32[n, length]``."""
    x = _symbols(checks.prng_key("key", key), n, length, n_symbols)
    return SeqTask(x, jnp.sort(x, axis=1), FIRST_SYMBOL + n_symbols)


def addition(key: jax.Array | int, n: int = 256, *, digits: int = 3) -> SeqTask:
    """Add two ``digits``-digit numbers written as characters.

    Inputs are ``a + b`` as ``2 * digits + 1`` tokens (most significant digit first, zero
    padded); targets are the sum as ``digits + 1`` tokens. Digit ``d`` is token
    ``FIRST_SYMBOL + d`` and ``+`` is ``FIRST_SYMBOL + 10``.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n", n)
    checks.positive_int("digits", digits)
    if digits > 8:
        raise ValueError(f"digits: expected at most 8 (int32 sums), got {digits}")
    k_a, k_b = jax.random.split(key)
    high = 10**digits
    a = jax.random.randint(k_a, (n,), 0, high, dtype=jnp.int32)
    b = jax.random.randint(k_b, (n,), 0, high, dtype=jnp.int32)

    def to_digits(v, width):
        powers = 10 ** jnp.arange(width - 1, -1, -1, dtype=jnp.int32)
        return (v[:, None] // powers[None, :]) % 10 + FIRST_SYMBOL

    plus = jnp.full((n, 1), FIRST_SYMBOL + 10, jnp.int32)
    inputs = jnp.concatenate([to_digits(a, digits), plus, to_digits(b, digits)], axis=1)
    return SeqTask(inputs, to_digits(a + b, digits + 1), FIRST_SYMBOL + 11)


def delayed_recall(
    key: jax.Array | int,
    n: int = 256,
    *,
    delay: int = 50,
    n_symbols: int = 4,
    n_distractors: int = 4,
) -> SeqTask:
    """Remember the first token across ``delay`` distractor tokens (a long-time-lag task).

    ``inputs: int32[n, delay + 1]``: a symbol from ``n_symbols`` choices, then ``delay``
    tokens drawn from a disjoint set of ``n_distractors``. ``targets: int32[n]``: the first symbol.
    Chance accuracy is ``1 / n_symbols``.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n", n)
    checks.positive_int("delay", delay)
    checks.positive_int("n_symbols", n_symbols)
    checks.positive_int("n_distractors", n_distractors)
    k_first, k_rest = jax.random.split(key)
    first = jax.random.randint(
        k_first, (n,), FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, dtype=jnp.int32
    )
    start = FIRST_SYMBOL + n_symbols
    rest = jax.random.randint(k_rest, (n, delay), start, start + n_distractors, dtype=jnp.int32)
    return SeqTask(jnp.concatenate([first[:, None], rest], axis=1), first, start + n_distractors)


_TASKS: dict[str, Callable[..., SeqTask]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "addition": addition,
    "delayed_recall": delayed_recall,
}


def sequence_task(name: str, key: jax.Array | int, n: int = 256, **kwargs) -> SeqTask:
    """Build a task by name: one of ``copy, reverse, sort, addition, delayed_recall``."""
    checks.one_of("name", name, _TASKS)
    return _TASKS[name](key, n, **kwargs)


# ---------------------------------------------------------------------------------------
# A small context-free grammar with number agreement.
# ---------------------------------------------------------------------------------------
GRAMMAR_WORDS = {
    "det_sg": ["the", "a", "one"],
    "det_pl": ["the", "two", "some"],
    "adj": ["small", "red", "old", "quiet", "bright"],
    "noun_sg": ["cat", "dog", "bird", "child", "robot"],
    "noun_pl": ["cats", "dogs", "birds", "children", "robots"],
    "verb_sg": ["sees", "likes", "follows", "helps"],
    "verb_pl": ["see", "like", "follow", "help"],
    "intrans_sg": ["sleeps", "runs", "sings"],
    "intrans_pl": ["sleep", "run", "sing"],
    "prep": ["near", "behind", "with"],
}


def _noun_phrase(rng: np.random.Generator, plural: bool, depth: int) -> list[str]:
    w = GRAMMAR_WORDS
    words = [rng.choice(w["det_pl" if plural else "det_sg"])]
    if rng.random() < 0.5:
        words.append(rng.choice(w["adj"]))
    words.append(rng.choice(w["noun_pl" if plural else "noun_sg"]))
    if depth < 1 and rng.random() < 0.25:  # one level of prepositional phrase
        words += [rng.choice(w["prep"]), *_noun_phrase(rng, rng.random() < 0.5, depth + 1)]
    return words


def _sentence(rng: np.random.Generator) -> str:
    plural = bool(rng.random() < 0.5)
    words = _noun_phrase(rng, plural, 0)
    if rng.random() < 0.7:
        words.append(rng.choice(GRAMMAR_WORDS["verb_pl" if plural else "verb_sg"]))
        words += _noun_phrase(rng, bool(rng.random() < 0.5), 0)
    else:
        words.append(rng.choice(GRAMMAR_WORDS["intrans_pl" if plural else "intrans_sg"]))
    return " ".join(str(x) for x in words) + " ."


def grammar_corpus(key: jax.Array | int, n_sentences: int = 1000) -> list[str]:
    """Sentences such as ``"the small cats follow a dog near the robot ."``.

    The subject's number decides the verb's form, possibly across a prepositional phrase,
    so a model must carry information over several words to predict well.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n_sentences", n_sentences)
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    rng = np.random.default_rng(seed)
    return [_sentence(rng) for _ in range(n_sentences)]
