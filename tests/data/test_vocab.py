import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.data import sequences, vocab
from impl.data.vocab import BOS, CLS, EOS, FIRST_TOKEN, MASK, PAD, SEP, SPECIAL_TOKENS, UNK, Vocab

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def test_reserved_ids_are_fixed_and_agree_with_sequences():
    assert [PAD, BOS, EOS, SEP, MASK, CLS, UNK] == [0, 1, 2, 3, 4, 5, 6] and FIRST_TOKEN == 7
    assert (sequences.PAD, sequences.BOS, sequences.EOS, sequences.SEP) == (PAD, BOS, EOS, SEP)
    assert len(SPECIAL_TOKENS) == len(set(SPECIAL_TOKENS)) == 7
    v = Vocab(["a"])
    assert [v.token(i) for i in range(7)] == list(SPECIAL_TOKENS)
    assert [v.id(t) for t in SPECIAL_TOKENS] == list(range(7))


def test_vocab_from_tokens_and_from_count():
    v = Vocab(["the", "cat", "sat"])
    assert v.size == 10 and v.symbols == ("the", "cat", "sat")
    assert v.id("cat") == 8 and v.token(9) == "sat" and v.id("dog") == UNK
    n = Vocab.from_count(5)
    assert n.size == 12 and n.symbols == ("0", "1", "2", "3", "4") and n.id("4") == 11
    assert Vocab(("x", "y")) == Vocab(["x", "y"])


def test_encode_decode_round_trip_and_unknowns():
    v = Vocab(["the", "cat", "sat"])
    ids = v.encode(["the", "cat", "sat", "on", "the"])
    assert ids.dtype == np.int32 and ids.shape == (5,)
    assert ids.tolist() == [7, 8, 9, UNK, 7]
    assert v.decode(ids) == ["the", "cat", "sat", "the"]
    assert v.decode(ids, skip_special=False) == ["the", "cat", "sat", "<unk>", "the"]
    assert v.decode(jnp.array([BOS, 8, EOS, PAD], dtype=jnp.int32)) == ["cat"]
    assert v.encode([]).shape == (0,) and v.encode([]).dtype == np.int32
    assert v.decode([]) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "dd"]), max_size=20))
def test_encode_decode_is_identity_on_known_tokens(tokens):
    v = Vocab(["a", "b", "c", "dd"])
    assert v.decode(v.encode(tokens)) == tokens


def test_pad_batch_shapes_padding_and_mask():
    v = Vocab.from_count(10)
    ids, mask = v.pad_batch([[7, 8, 9], [10], []])
    assert ids.dtype == np.int32 and mask.dtype == np.bool_
    assert ids.shape == mask.shape == (3, 3)
    assert ids.tolist() == [[7, 8, 9], [10, PAD, PAD], [PAD, PAD, PAD]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]

    ids, mask = v.pad_batch(
        [np.array([7, 8]), jnp.array([9])], length=5, add_bos=True, add_eos=True
    )
    assert ids.shape == (2, 5)
    assert ids.tolist() == [[BOS, 7, 8, EOS, PAD], [BOS, 9, EOS, PAD, PAD]]
    assert mask.sum(axis=1).tolist() == [4, 3]


def test_pad_batch_refuses_sequences_longer_than_length():
    v = Vocab.from_count(10)
    v.pad_batch([[7, 8, 9]], length=3)
    with pytest.raises(ValueError, match=r"seqs\[1\]: 4 tokens .* do not fit length=3"):
        v.pad_batch([[7], [7, 8, 9]], length=3, add_eos=True)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: Vocab("abc"), TypeError, "symbols: expected a list of token strings"),
        (lambda: Vocab(["a", 3]), TypeError, r"symbols\[1\]: expected a string"),
        (lambda: Vocab(["a", ""]), ValueError, r"symbols\[1\]: expected a non-empty string"),
        (lambda: Vocab(["a", "a"]), ValueError, r"symbols\[1\]: duplicate token 'a'"),
        (lambda: Vocab(["<pad>"]), ValueError, r"symbols\[0\]: '<pad>' is reserved"),
        (lambda: Vocab.from_count(0), ValueError, "n_symbols: expected a positive integer"),
        (lambda: Vocab.from_count(2.0), TypeError, "n_symbols: expected a positive integer"),
        (lambda: Vocab(["a"]).id(3), TypeError, "token: expected a string"),
        (lambda: Vocab(["a"]).token(8), ValueError, r"id: expected an id in \[0, 8\), got 8"),
        (lambda: Vocab(["a"]).token(-1), ValueError, "id: expected a non-negative integer"),
        (
            lambda: Vocab(["a"]).encode("a"),
            TypeError,
            "tokens: expected a sequence of token strings, got str",
        ),
        (lambda: Vocab(["a"]).encode(["a", 1]), TypeError, r"tokens\[1\]: expected a string"),
        (lambda: Vocab(["a"]).decode([1, 8]), ValueError, r"ids: expected ids in \[0, 8\), got 8"),
        (lambda: Vocab(["a"]).decode([1.5]), TypeError, "ids: expected integer ids"),
        (
            lambda: Vocab(["a"]).decode(np.zeros(2)),
            TypeError,
            "ids: expected integer ids, got dtype float64",
        ),
        (
            lambda: Vocab(["a"]).decode(np.zeros((2, 2), int)),
            ValueError,
            "ids: expected a 1-D sequence",
        ),
        (
            lambda: Vocab(["a"]).decode("ab"),
            TypeError,
            "ids: expected a 1-D sequence of integer ids",
        ),
        (lambda: Vocab(["a"]).pad_batch([]), ValueError, "seqs: expected at least one sequence"),
        (
            lambda: Vocab(["a"]).pad_batch("ab"),
            TypeError,
            "seqs: expected a sequence of id sequences",
        ),
        (
            lambda: Vocab(["a"]).pad_batch([[7], [9]]),
            ValueError,
            r"seqs\[1\]: expected ids in \[0, 8\)",
        ),
        (
            lambda: Vocab(["a"]).pad_batch([[7]], length=0),
            ValueError,
            "length: expected a positive integer",
        ),
        (
            lambda: Vocab(["a"]).pad_batch([[7]], add_bos=1),
            TypeError,
            "add_bos: expected True or False",
        ),
    ],
)
def test_vocab_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_as_ids_accepts_lists_and_arrays():
    assert vocab.as_ids("ids", [1, np.int64(2)]).dtype == np.int32
    assert vocab.as_ids("ids", jnp.arange(3)).tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="ids: expected integer ids"):
        vocab.as_ids("ids", [True, 1])
