import bz2
import gzip
import lzma
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl.data import load_corpus
from impl.essay import compression

TINY = b"the cat sat on the mat; the cat sat on the hat."


def test_compressors_are_counted_in_bits_of_their_real_output():
    assert compression.compressed_bits("gzip", TINY) == 8 * len(
        gzip.compress(TINY, compresslevel=9, mtime=0)
    )
    assert compression.compressed_bits("bzip2", TINY) == 8 * len(bz2.compress(TINY, 9))
    assert compression.compressed_bits("xz", TINY) == 8 * len(
        lzma.compress(TINY, preset=9 | lzma.PRESET_EXTREME)
    )


def test_a_primed_compressor_pays_only_for_what_the_data_adds():
    prime = b"the cat sat on the mat. " * 20
    for name, compress in compression.COMPRESSORS.items():
        expected = 8 * (len(compress(prime + TINY)) - len(compress(prime)))
        assert compression.compressed_bits(name, TINY, prime=prime) == expected
    # text it has already seen costs bzip2 far less than text it has not
    assert compression.compressed_bits("bzip2", TINY, prime=TINY * 5) < compression.compressed_bits(
        "bzip2", TINY
    )


def test_bits_per_char_and_the_split():
    assert compression.bits_per_char(80, 10) == 8.0
    train, test = compression.split_text("abcdefghij", 0.3)
    assert (train, test) == ("abcdefg", "hij")


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: compression.compressed_bits("zip", TINY), "name"),
        (lambda: compression.compressed_bits("gzip", b""), "data"),
        (lambda: compression.split_text("abc", 0.0), "test_fraction"),
        (lambda: compression.split_text("abc", 0.1), "text"),
        (lambda: compression.encode("abz", "ab"), "alphabet"),
        (lambda: compression.bits_per_char(10, 0), "n_chars"),
        (lambda: compression.ngram_counts("abc", -1), "order"),
        (lambda: compression.experiment(steps=0), "steps"),
        (lambda: compression.experiment(order=-2), "order"),
        (lambda: compression.experiment(learning_rate=0.0), "learning_rate"),
        (lambda: compression.experiment(d_hidden=0), "d_hidden"),
        (lambda: compression.experiment(test_fraction=1.5), "test_fraction"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_ngram_probabilities_sum_to_one_and_code_repetition_cheaply():
    text = "abracadabra abracadabra"
    alphabet = sorted(set(text) | {"z"})
    counts = compression.ngram_counts(text, 3)
    for history in ("", "a", "abr", "zzz"):
        total = sum(
            compression.ngram_probability(counts, history, c, len(alphabet)) for c in alphabet
        )
        assert math.isclose(total, 1.0, rel_tol=1e-12)
    assert compression.ngram_bits(counts, "abracadabra", len(alphabet)) < 8 * len("abracadabra")


def test_lstm_stream_bits_is_the_models_cross_entropy_plus_the_first_character():
    ids = jnp.asarray([3, 1, 4, 1, 5, 0, 2, 6, 5, 3], jnp.int32)
    params = compression.init_char_lstm(jax.random.key(0), vocab=7, d_hidden=5, d_embed=4)
    mean_bits = float(compression.loss_fn(params, {"window": ids[None, :]}, None))
    expected = math.log2(7) + mean_bits * (ids.shape[0] - 1)
    assert compression.lstm_stream_bits(params, ids) == pytest.approx(expected, rel=1e-5)
    assert compression.param_bytes(params) == 4 * sum(np.size(x) for x in jax.tree.leaves(params))


def test_the_models_code_length_is_finite_and_below_eight_bits():
    text = load_corpus()[:20_000]
    report = compression.experiment(
        steps=40, d_hidden=16, context=16, batch_size=16, order=2, text=text
    )
    m = report.metrics
    for key in ("bpc_lstm", "bpc_ngram", "bpc_gzip", "bpc_bzip2", "bpc_xz", "bpc_bzip2_primed"):
        assert math.isfinite(m[key]) and 0.0 < m[key] < 8.0, key
    assert m["raw_bpc"] >= 8.0  # UTF-8: at least a byte a character
    assert m["test_chars"] == 2_000 and m["lstm_bytes"] == 4 * m["lstm_params"]
