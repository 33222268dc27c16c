import hashlib

import chex
import jax
import numpy as np
import pytest

from impl.data import translation
from impl.data.sequences import BOS, EOS, FIRST_SYMBOL, PAD

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def _batch(seed=0, n=5, min_len=2, max_len=7):
    return translation.translation_task(jax.random.key(seed), n, min_len=min_len, max_len=max_len)


def _digest(task: dict) -> str:
    h = hashlib.sha256()
    for k in ("src", "tgt_in", "tgt_out", "length"):
        a = np.asarray(task[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# Computed with the task's code as it stood in topic 3.5's module, before it moved here: the
# move must not change a single token, so that the numbers of topics 3.5-3.7 stay what they were.
@pytest.mark.parametrize(
    ("key", "n", "min_len", "max_len", "expected"),
    [
        (lambda: jax.random.key(0), 5, 2, 7,
         "d1286da0d0809557bb175a25fb0e7311dba8dbac3687f447d74a6a9faf10cc37"),
        (lambda: jax.random.key(1), 300, 2, 16,
         "fb24ed83441b3235438b52e23a5b48c0047595ed572c5bc2e2e0a745434e7903"),
        (lambda: jax.random.key(0, impl="rbg"), 3000, 2, 16,
         "e507925719e5ee69b4368d992cbcb19cb0b7b16573a743dd866727c5022bebf5"),
        (lambda: jax.random.key(2, impl="rbg"), 64, 1, 1,
         "65904ccf78ab5a44caa62476dd44db3882bd77039be076c5dc58063fb57ec966"),
    ],
)  # fmt: skip
def test_translation_task_is_bit_identical_to_topic_3_5s_original(
    key, n, min_len, max_len, expected
):
    assert (
        _digest(translation.translation_task(key(), n, min_len=min_len, max_len=max_len))
        == expected
    )


def test_lexicon_and_sizes_are_unchanged():
    assert translation.LEXICON.tolist() == [0, 1, 2, 3, 13, 6, 11, 8, 9, 15, 4, 7, 10, 14, 12, 5]
    assert (translation.N_WORDS, translation.VOCAB, translation.MIN_LEN, translation.MAX_LEN) == (
        12,
        16,
        2,
        16,
    )


def test_translation_task_layout():
    data = _batch(n=64)
    src, tgt_in, tgt_out, length = (
        np.asarray(data[k]) for k in ("src", "tgt_in", "tgt_out", "length")
    )
    chex.assert_shape([src, tgt_in, tgt_out], [(64, 7), (64, 8), (64, 8)])
    assert length.min() >= 2 and length.max() <= 7
    for s, ti, to, n in zip(src, tgt_in, tgt_out, length):
        assert np.all(s[:n] >= FIRST_SYMBOL) and np.all(s[n:] == PAD)
        np.testing.assert_array_equal(to[:n], translation.LEXICON[s[:n]])  # word by word
        assert to[n] == EOS and np.all(to[n + 1 :] == PAD)
        assert ti[0] == BOS
        np.testing.assert_array_equal(ti[1:], to[:-1])  # teacher forcing: the target shifted right


def test_lexicon_is_a_permutation_of_the_words():
    words = translation.LEXICON[FIRST_SYMBOL:]
    np.testing.assert_array_equal(np.sort(words), np.arange(FIRST_SYMBOL, translation.VOCAB))


def test_score_by_length_counts_perfect_translations_as_perfect():
    test = translation.translation_task(
        jax.random.key(1), 300, min_len=translation.MIN_LEN, max_len=translation.MAX_LEN
    )
    words, sentences = translation.score_by_length(test["tgt_out"], test)
    np.testing.assert_array_equal(words, 1.0)
    np.testing.assert_array_equal(sentences, 1.0)
    wrong_end = np.asarray(test["tgt_out"]).copy()
    wrong_end[np.arange(300), np.asarray(test["length"])] = PAD  # every word right, no EOS
    words, sentences = translation.score_by_length(wrong_end, test)
    np.testing.assert_array_equal(words, 1.0)
    np.testing.assert_array_equal(sentences, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n": 4, "min_len": 5, "max_len": 3}, ValueError, "min_len: expected at most"),
        ({"n": 0, "min_len": 1, "max_len": 3}, ValueError, "n"),
        ({"n": 4, "min_len": 0, "max_len": 3}, ValueError, "min_len"),
        ({"n": 4, "min_len": 1, "max_len": 2.5}, TypeError, "max_len"),
    ],
)
def test_bad_settings_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        translation.translation_task(jax.random.key(0), **kwargs)
