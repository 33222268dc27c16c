import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.data.corpus import load_corpus
from impl.data.tokenizers import BPETokenizer, CharTokenizer, byte_alphabet, pretokenize
from impl.data.vocab import BOS, EOS, FIRST_TOKEN, PAD, SPECIAL_TOKENS, UNK, Vocab

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code

SAMPLE = "the cat sat on the mat. the cats sat on the mats; a cat is not a mat!\n" * 3
UNSEEN = "Naïve façades — 日本語, emoji 🙂, tabs\tand\r\nnewlines, 12345 + x_y <pad> \x00 end  "


@pytest.fixture(scope="module")
def corpus_bpe() -> tuple[str, BPETokenizer]:
    text = load_corpus()
    return text, BPETokenizer.train(text, 512)


def test_pretokenize_covers_every_character():
    pieces = pretokenize(UNSEEN + SAMPLE)
    assert "".join(pieces) == UNSEEN + SAMPLE
    assert pretokenize("the cat  sat") == ["the", " cat", " ", " sat"]


def test_byte_alphabet_is_printable_and_one_to_one():
    alphabet = byte_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 256
    assert all(len(c) == 1 and c.isprintable() and not c.isspace() for c in alphabet)
    assert alphabet[ord("a")] == "a" and alphabet[ord(" ")] == "Ġ" and alphabet[ord("\n")] == "Ċ"


def test_char_tokenizer_layout_and_round_trip():
    tok = CharTokenizer.train(SAMPLE)
    assert isinstance(tok.vocab, Vocab) and tok.vocab.tokens[:FIRST_TOKEN] == SPECIAL_TOKENS
    assert tok.chars == tuple(sorted(set(SAMPLE)))
    assert tok.vocab.size == FIRST_TOKEN + len(tok.chars) + 256
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.shape == (len(SAMPLE),) and ids.min() >= FIRST_TOKEN
    assert tok.decode(ids) == SAMPLE
    assert tok.decode(tok.encode(UNSEEN)) == UNSEEN  # unseen characters go through their bytes
    assert tok.vocab.token(int(tok.encode("c")[0])) == "c"
    assert tok.decode([BOS, *tok.encode("cat").tolist(), EOS, PAD, UNK]) == "cat\ufffd"


def test_char_tokenizer_without_fallback_and_with_a_size_cap():
    tok = CharTokenizer.train("aaabbc", byte_fallback=False)
    assert tok.vocab.size == FIRST_TOKEN + 3
    assert tok.encode("abz").tolist() == [7, 8, UNK]
    assert tok.decode(tok.encode("abz")) == "ab\ufffd"
    capped = CharTokenizer.train("aaabbc", FIRST_TOKEN + 2, byte_fallback=False)
    assert capped.chars == ("a", "b")  # the two most frequent
    # a tie goes to the lower code point
    assert CharTokenizer.train("ba", FIRST_TOKEN + 256 + 1).chars == ("a",)


def test_bpe_learns_frequent_pieces_and_round_trips():
    tok = BPETokenizer.train(SAMPLE, 300)
    assert tok.vocab.tokens[:FIRST_TOKEN] == SPECIAL_TOKENS
    assert FIRST_TOKEN + 256 < tok.vocab.size <= 300
    assert tok.vocab.token(FIRST_TOKEN + ord("a")) == "a"
    assert "Ġcat" in tok.vocab.tokens and "Ġmat" in tok.vocab.tokens
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.ndim == 1 and len(ids) < len(SAMPLE) / 3
    assert tok.decode(ids) == SAMPLE
    assert tok.decode(tok.encode(UNSEEN)) == UNSEEN
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""
    assert tok.decode([BOS, *tok.encode(" cat").tolist(), EOS, UNK]) == " cat\ufffd"


def test_bpe_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("abab", 1000)
    assert tok.merges == ((FIRST_TOKEN + ord("a"), FIRST_TOKEN + ord("b"), FIRST_TOKEN + 256),)
    assert tok.vocab.size == FIRST_TOKEN + 257 and tok.encode("abab").tolist() == [263, 263]


def test_bpe_is_deterministic_and_rebuilds_from_merges():
    a, b = BPETokenizer.train(SAMPLE, 290), BPETokenizer.train(SAMPLE, 290)
    assert a.merges == b.merges and a == b
    rebuilt = BPETokenizer(a.merges)
    assert rebuilt.vocab == a.vocab
    assert np.array_equal(rebuilt.encode(UNSEEN + SAMPLE), a.encode(UNSEEN + SAMPLE))


def test_bpe_on_the_project_corpus(corpus_bpe):
    text, tok = corpus_bpe
    assert tok.vocab.size == 512
    assert {"Ġthe", "Ġand", "Ġnetwork"} <= set(tok.vocab.tokens)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    tokens_per_word = len(ids) / len(text.split())
    chars = CharTokenizer.train(text).encode(text)
    assert tokens_per_word < 3.5 and len(ids) < 0.6 * len(chars)  # about 3.0 and 0.49 when written


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_on_arbitrary_text(corpus_bpe, text):
    _, bpe = corpus_bpe
    assert bpe.decode(bpe.encode(text)) == text
    chars = CharTokenizer.train("the cat sat")
    assert chars.decode(chars.encode(text)) == text
    assert "".join(pretokenize(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(264, 320))
def test_bpe_trains_and_round_trips_on_arbitrary_text(text, vocab_size):
    tok = BPETokenizer.train(text, vocab_size)
    assert tok.vocab.size <= vocab_size
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: CharTokenizer.train(b"abc"), TypeError, "text: expected a str, got bytes"),
        (lambda: CharTokenizer.train(""), ValueError, "text: expected a non-empty training text"),
        (lambda: CharTokenizer.train("abc", 100), ValueError, "vocab_size: expected more than 263"),
        (
            lambda: CharTokenizer.train("abc", 7, byte_fallback=False),
            ValueError,
            "vocab_size: expected more than 7",
        ),
        (
            lambda: CharTokenizer.train("abc", 0),
            ValueError,
            "vocab_size: expected a positive integer",
        ),
        (
            lambda: CharTokenizer.train("abc", byte_fallback=None),
            TypeError,
            "byte_fallback: expected True or False",
        ),
        (
            lambda: CharTokenizer(("ab",)),
            ValueError,
            r"chars\[0\]: expected a one-character string",
        ),
        (lambda: CharTokenizer(("a", "a")), ValueError, "duplicate token 'a'"),
        (lambda: CharTokenizer.train("abc").encode(3), TypeError, "text: expected a str"),
        (
            lambda: CharTokenizer.train("abc").encode("\ud800"),
            ValueError,
            "text: not encodable as UTF-8",
        ),
        (
            lambda: CharTokenizer.train("abc").decode([10_000]),
            ValueError,
            r"ids: expected ids in \[0, 266\)",
        ),
        (
            lambda: BPETokenizer.train("", 300),
            ValueError,
            "text: expected a non-empty training text",
        ),
        (lambda: BPETokenizer.train("abc", 263), ValueError, "vocab_size: expected more than 263"),
        (
            lambda: BPETokenizer.train("abc", 300.0),
            TypeError,
            "vocab_size: expected a positive integer",
        ),
        (lambda: BPETokenizer.train(None, 300), TypeError, "text: expected a str"),
        (lambda: BPETokenizer(((7, 8),)), ValueError, r"merges\[0\]: expected a triple of ids"),
        (
            lambda: BPETokenizer(((7, 999, 263),)),
            ValueError,
            r"merges\[0\]: ids 7, 999 are not tokens",
        ),
        (
            lambda: BPETokenizer(((7, 8, 300),)),
            ValueError,
            r"merges\[0\]: 300 is neither the next id",
        ),
        (
            lambda: BPETokenizer.train("abab", 300).decode(np.ones((1, 2), int)),
            ValueError,
            "ids: expected a 1-D",
        ),
        (
            lambda: BPETokenizer.train("abab", 300).decode([[7]]),
            TypeError,
            "ids: expected integer ids",
        ),
        (lambda: BPETokenizer.train("abab", 300).encode(["ab"]), TypeError, "text: expected a str"),
    ],
)
def test_tokenizers_reject_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
