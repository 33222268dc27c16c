"""A toy translation task: random sentences and their word-by-word translations.

The task of topics 3.5 (encoder–decoder), 3.6 (seq2seq) and 3.7 (attention), and of the
comparisons that come after them. The source language has `N_WORDS` words; a sentence is
``min_len..max_len`` of them, drawn at random; its translation replaces each word by its entry in
a fixed lexicon (`LEXICON`, a permutation) and ends with ``EOS``. Word order is kept, so nothing
gets harder with length except *remembering* the sentence: a model that squeezes the source into
one vector must fit ``length * log2(N_WORDS)`` bits through it.

Token ids ``0..3`` are reserved (``PAD``, ``BOS``, ``EOS``, ``SEP`` of `impl.data.sequences`);
words are ``FIRST_SYMBOL .. FIRST_SYMBOL + N_WORDS - 1``, in both languages.

Shapes: ``src int32[n, max_len]`` (``PAD`` after the end), ``tgt_in int32[n, max_len + 1]``
(``BOS`` + target), ``tgt_out int32[n, max_len + 1]`` (target + ``EOS``, then ``PAD``),
``length int32[n]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks
from impl.data.sequences import BOS, EOS, FIRST_SYMBOL, PAD

__all__ = [
    "LEXICON",
    "MAX_LEN",
    "MIN_LEN",
    "N_WORDS",
    "VOCAB",
    "score_by_length",
    "translation_task",
]

N_WORDS = 12  # the toy languages' vocabulary, ids FIRST_SYMBOL .. FIRST_SYMBOL + N_WORDS - 1
VOCAB = FIRST_SYMBOL + N_WORDS
# The "lexicon": source word i translates to target word LEXICON[i] (a fixed permutation).
LEXICON = np.concatenate(
    [np.arange(FIRST_SYMBOL), FIRST_SYMBOL + np.random.default_rng(0).permutation(N_WORDS)]
)
MIN_LEN, MAX_LEN = 2, 16  # the sentence lengths the topics train and test on


# --8<-- [start:task]
def translation_task(key: jax.Array, n: int, *, min_len: int, max_len: int) -> dict:
    """Sentences of ``min_len..max_len`` random words and their word-by-word translations.

    Returns ``{"src": int[n, max_len]`` (``PAD`` after the end), ``"tgt_in": int[n, max_len + 1]``
    (``BOS`` + target), ``"tgt_out": int[n, max_len + 1]`` (target + ``EOS``, then ``PAD``),
    ``"length": int[n]}``.
    """
    checks.positive_int("n", n)
    checks.positive_int("min_len", min_len)
    checks.positive_int("max_len", max_len)
    if min_len > max_len:
        raise ValueError(f"min_len: expected at most max_len={max_len}, got {min_len}")
    k_len, k_words = jax.random.split(key)
    length = jax.random.randint(k_len, (n,), min_len, max_len + 1)  # [n]
    words = jax.random.randint(k_words, (n, max_len), FIRST_SYMBOL, VOCAB)  # [n, max_len]
    pos = jnp.arange(max_len + 1).reshape(1, -1)  # [1, max_len + 1]
    inside = pos[:, :max_len] < length[:, None]
    src = jnp.where(inside, words, PAD)
    translated = jnp.where(inside, jnp.asarray(LEXICON)[words], PAD)  # [n, max_len]
    tgt = jnp.concatenate([translated, jnp.full((n, 1), PAD)], axis=1)  # [n, max_len + 1]
    tgt_out = jnp.where(pos == length[:, None], EOS, tgt)
    tgt_in = jnp.concatenate([jnp.full((n, 1), BOS), tgt_out[:, :-1]], axis=1)
    return {
        "src": src,
        "tgt_in": tgt_in.astype(jnp.int32),
        "tgt_out": tgt_out.astype(jnp.int32),
        "length": length,
    }


# --8<-- [end:task]


def score_by_length(out, test: dict) -> tuple[np.ndarray, np.ndarray]:
    """Score translations ``out int[n, MAX_LEN + 1]`` of ``test`` per source length
    ``MIN_LEN..MAX_LEN``.

    Returns ``(word accuracy, sentence accuracy)``, each ``[n_lengths]``: the fraction of
    target words right, and of sentences right word for word *and* ended by ``EOS`` on time.
    Any model's translations can be scored (topics 3.5, 3.6 and 3.7 all score theirs with it).
    """
    out, truth, length = np.asarray(out), np.asarray(test["tgt_out"]), np.asarray(test["length"])
    inside = np.arange(truth.shape[1])[None, :] < length[:, None]
    right = (out == truth) & inside
    ended = out[np.arange(len(length)), length] == EOS
    sentence_ok = (right.sum(1) == length) & ended
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    words = np.array([right[length == n].sum() / inside[length == n].sum() for n in lengths])
    sentences = np.array([sentence_ok[length == n].mean() for n in lengths])
    return words, sentences
