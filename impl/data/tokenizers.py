"""Text to token ids and back: a character tokenizer and a byte-pair-encoding (BPE) tokenizer.

Byte-pair encoding comes from data compression (Gage, 1994) and was brought to neural machine
translation by Rico Sennrich, Barry Haddow & Alexandra Birch, **Neural Machine Translation of
Rare Words with Subword Units**, ACL 2016, https://arxiv.org/abs/1508.07909. Start from single
symbols, count every adjacent pair in the training text, fuse the most frequent pair into a new
symbol, and repeat until the vocabulary has the size you asked for. Frequent words end up as one
token, rare words as a few pieces, and nothing is ever out of vocabulary.

GPT-2 (Alec Radford, Jeffrey Wu, Rewon Child, David Luan, Dario Amodei & Ilya Sutskever,
**Language Models are Unsupervised Multitask Learners**, OpenAI, 2019) runs BPE on the UTF-8
*bytes* of the text rather than on characters, so the 256 byte values are the base symbols and
any string at all can be encoded; it also splits text into word-like pieces first so that merges
never cross a word boundary. `BPETokenizer` does both, and spells its byte tokens the way GPT-2
does: each byte as one printable character (a space shows as ``Ġ``).

Both tokenizers hold a `impl.data.vocab.Vocab` whose first seven ids are the reserved special
tokens. Text never encodes to a special id (the string ``"<pad>"`` is just five characters), and
`decode` drops special ids, except `UNK`, which it writes as U+FFFD.

Shapes:
    ``encode(text) -> int32[n_tokens]``; ``decode(ids: int[n_tokens]) -> str``.
"""

from __future__ import annotations

import collections
import heapq
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from impl import checks
from impl.data.vocab import FIRST_TOKEN, UNK, Vocab, as_ids

__all__ = ["BPETokenizer", "CharTokenizer", "byte_alphabet", "pretokenize"]

N_BYTES = 256
_REPLACEMENT = "\ufffd".encode()  # what an UNK decodes to


def _utf8(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate
        raise ValueError(
            f"text: not encodable as UTF-8 ({error.reason} at index {error.start})"
        ) from error


def _decode_bytes(name: str, ids: Any, table: list[bytes]) -> str:
    """Join the bytes of each id; invalid UTF-8 (possible from arbitrary ids) becomes U+FFFD."""
    array = as_ids(name, ids, size=len(table))
    return b"".join(table[i] for i in array.tolist()).decode("utf-8", errors="replace")


def _special_bytes() -> list[bytes]:
    return [_REPLACEMENT if i == UNK else b"" for i in range(FIRST_TOKEN)]


# ---------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------
def _byte_token(b: int) -> str:
    return f"<0x{b:02X}>"


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character, with the character's UTF-8 bytes as the fallback for the rest.

    Vocabulary layout: the special tokens, then ``chars`` (ids 7, 8, …), then, with
    ``byte_fallback``, 256 byte tokens ``"<0x00>"`` … ``"<0xFF>"``. A character outside
    ``chars`` encodes as its bytes (so every string round-trips exactly) or, without the
    fallback, as `UNK` (a smaller vocabulary, at the price of losing unseen characters).

    Attributes:
        chars: the known characters, each a one-character string, in id order.
        byte_fallback: whether the 256 byte tokens follow ``chars``.
    """

    chars: tuple[str, ...]
    byte_fallback: bool = True
    vocab: Vocab = field(init=False, repr=False, compare=False)
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _bytes: list[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = self.chars
        if isinstance(chars, str):
            chars = tuple(chars)
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars[{i}]: expected a one-character string, got {c!r}")
            _utf8(c)
        if not isinstance(self.byte_fallback, bool):
            raise TypeError(f"byte_fallback: expected True or False, got {self.byte_fallback!r}")
        byte_tokens = tuple(_byte_token(b) for b in range(N_BYTES)) if self.byte_fallback else ()
        vocab = Vocab(tuple(chars) + byte_tokens)  # also checks that chars are distinct
        object.__setattr__(self, "chars", tuple(chars))
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "_ids", {c: FIRST_TOKEN + i for i, c in enumerate(chars)})
        table = _special_bytes() + [c.encode("utf-8") for c in chars]
        object.__setattr__(self, "_bytes", table + [bytes([b]) for b in range(len(byte_tokens))])

    @classmethod
    def train(
        cls, text: str, vocab_size: int | None = None, *, byte_fallback: bool = True
    ) -> CharTokenizer:
        """Collect the characters of ``text``.

        Args:
            text: the training text (non-empty).
            vocab_size: the most ids to use, specials and byte tokens included; the most
                frequent characters are kept (ties go to the lower code point). ``None`` keeps
                every character.
            byte_fallback: add the 256 byte tokens, so that no character is ever unknown.

        Returns:
            A `CharTokenizer` whose ``chars`` are sorted by code point.
        """
        _utf8(text)
        if not text:
            raise ValueError("text: expected a non-empty training text")
        if not isinstance(byte_fallback, bool):
            raise TypeError(f"byte_fallback: expected True or False, got {byte_fallback!r}")
        counts = collections.Counter(text)
        ranked = sorted(counts, key=lambda c: (-counts[c], c))
        if vocab_size is not None:
            checks.positive_int("vocab_size", vocab_size)
            fixed = FIRST_TOKEN + (N_BYTES if byte_fallback else 0)
            if vocab_size <= fixed:
                raise ValueError(
                    f"vocab_size: expected more than {fixed} (special tokens"
                    f"{' and byte tokens' if byte_fallback else ''}), got {vocab_size}"
                )
            ranked = ranked[: vocab_size - fixed]
        return cls(tuple(sorted(ranked)), byte_fallback)

    def encode(self, text: str) -> np.ndarray:
        """Text to ids, ``int32[n_tokens]``: one id per known character, its bytes (or UNK)
        otherwise."""
        _utf8(text)
        ids: list[int] = []
        fallback = FIRST_TOKEN + len(self.chars)  # id of byte token 0x00
        for c in text:
            i = self._ids.get(c)
            if i is not None:
                ids.append(i)
            elif self.byte_fallback:
                ids.extend(fallback + b for b in c.encode("utf-8"))
            else:
                ids.append(UNK)
        return np.array(ids, dtype=np.int32)

    def decode(self, ids: Any) -> str:
        """Ids back to text; special ids vanish and `UNK` becomes U+FFFD."""
        return _decode_bytes("ids", ids, self._bytes)


# ---------------------------------------------------------------------------------------
# Byte-pair encoding
# ---------------------------------------------------------------------------------------
def byte_alphabet() -> tuple[str, ...]:
    """One printable character per byte value, as GPT-2 spells byte tokens (Radford et al., 2019).

    Bytes whose Latin-1 character is visible (``!`` … ``~``, ``¡`` … ``¬``, ``®`` … ``ÿ``) stand
    for themselves; the others — control codes, space, no-break space, soft hyphen — take the
    characters from U+0100 on, in byte order, so a space becomes ``Ġ`` and a newline ``Ċ``.
    """
    visible = [chr(b).isprintable() and not chr(b).isspace() for b in range(N_BYTES)]
    hidden = iter(range(0x100, 0x200))
    return tuple(chr(b) if visible[b] else chr(next(hidden)) for b in range(N_BYTES))


# Word-like pieces: an optional leading space, then a run of letters, of digits or of other
# symbols; or whitespace (a run before a word leaves its last space to that word). Every
# character falls in one branch, so the pieces always concatenate back to the text.
_PIECE = re.compile(r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def pretokenize(text: str) -> list[str]:
    """Split text into the pieces BPE merges within (merges never cross a piece boundary)."""
    _utf8(text)
    return _PIECE.findall(text)


def _merge_pair(seq: list[int], a: int, b: int, c: int) -> list[int]:
    """Replace every non-overlapping ``a, b`` in ``seq``, left to right, with ``c``."""
    out: list[int] = []
    i = 0
    while i < len(seq):
        if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
            out.append(c)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


@dataclass(frozen=True)
class BPETokenizer:
    """Byte-level BPE: UTF-8 bytes, merged pairwise by a learned list of merges.

    Vocabulary layout: the special tokens, the 256 bytes (ids 7 … 262, byte ``b`` at ``7 + b``),
    then one token per merge that made a new string, in the order they were learned.

    Attributes:
        merges: ``(a, b, c)`` triples in the order learned: the adjacent ids ``a, b`` fuse into
            ``c``. ``c`` is a new id (the next free one) unless the string ``a + b`` already had
            an id, reached by a different pair.
    """

    merges: tuple[tuple[int, int, int], ...]
    vocab: Vocab = field(init=False, repr=False, compare=False)
    _ranks: dict[tuple[int, int], tuple[int, int]] = field(init=False, repr=False, compare=False)
    _bytes: list[bytes] = field(init=False, repr=False, compare=False)
    _cache: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        merges = tuple(tuple(m) for m in self.merges)
        table = _special_bytes() + [bytes([b]) for b in range(N_BYTES)]
        ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for k, m in enumerate(merges):
            if len(m) != 3 or not all(isinstance(i, int | np.integer) for i in m):
                raise ValueError(f"merges[{k}]: expected a triple of ids (a, b, c), got {m!r}")
            a, b, c = (int(i) for i in m)
            if not (FIRST_TOKEN <= a < len(table) and FIRST_TOKEN <= b < len(table)):
                raise ValueError(
                    f"merges[{k}]: ids {a}, {b} are not tokens learned before this merge"
                )
            joined = table[a] + table[b]
            if c == len(table):
                table.append(joined)
            elif not (FIRST_TOKEN <= c < len(table) and table[c] == joined):
                raise ValueError(
                    f"merges[{k}]: {c} is neither the next id, "
                    f"{len(table)}, nor an id spelling a + b"
                )
            ranks.setdefault((a, b), (k, c))
        alphabet = byte_alphabet()
        spelled = ["".join(alphabet[x] for x in t) for t in table[FIRST_TOKEN:]]
        object.__setattr__(self, "merges", merges)
        object.__setattr__(self, "vocab", Vocab(spelled))
        object.__setattr__(self, "_ranks", ranks)
        object.__setattr__(self, "_bytes", table)
        object.__setattr__(self, "_cache", {})

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` ids.

        Deterministic: the most frequent adjacent pair is merged first, ties going to the pair of
        smaller ids. Pair counts are kept in a table and updated only for the pieces a merge
        touches (found through an index from pair to pieces), with a heap to find the next best
        pair, so each merge costs time in proportion to what it changes, not to the text.

        Args:
            text: the training text (non-empty).
            vocab_size: the number of ids wanted, specials and the 256 bytes included, so at
                least 264. Training stops early, with a smaller vocabulary, once no adjacent pair
                occurs twice.
        """
        data = _utf8(text)
        if not data:
            raise ValueError("text: expected a non-empty training text")
        checks.positive_int("vocab_size", vocab_size)
        if vocab_size <= FIRST_TOKEN + N_BYTES:
            raise ValueError(
                f"vocab_size: expected more than {FIRST_TOKEN + N_BYTES} "
                f"(7 special tokens and 256 bytes), got {vocab_size}"
            )
        # distinct pieces in order of first appearance
        pieces = collections.Counter(pretokenize(text))
        words = [[FIRST_TOKEN + b for b in p.encode("utf-8")] for p in pieces]
        freq = list(pieces.values())
        pairs: collections.Counter[tuple[int, int]] = collections.Counter()
        # pair -> pieces holding it
        where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
        for w, (seq, f) in enumerate(zip(words, freq)):
            for p in zip(seq, seq[1:]):
                pairs[p] += f
                where[p].add(w)
        heap = [(-n, p) for p, n in pairs.items()]
        heapq.heapify(heap)
        table = [b""] * FIRST_TOKEN + [bytes([b]) for b in range(N_BYTES)]
        known = {t: i for i, t in enumerate(table) if i >= FIRST_TOKEN}
        merges: list[tuple[int, int, int]] = []
        while len(table) < vocab_size and heap:
            neg, best = heapq.heappop(heap)
            if pairs.get(best, 0) != -neg:
                continue  # a stale entry: this pair's count has changed since it was pushed
            if -neg < 2:
                break
            a, b = best
            joined = table[a] + table[b]
            c = known.get(joined)
            if c is None:
                c = known[joined] = len(table)
                table.append(joined)
            merges.append((a, b, c))
            changed: set[tuple[int, int]] = set()
            for w in sorted(where.pop(best)):
                seq, f = words[w], freq[w]
                if len(seq) < 2:
                    continue
                new = _merge_pair(seq, a, b, c)
                if len(new) == len(seq):
                    continue  # stale index entry: the pair was merged away by an earlier merge
                for p in zip(seq, seq[1:]):
                    pairs[p] -= f
                    changed.add(p)
                for p in zip(new, new[1:]):
                    pairs[p] += f
                    where[p].add(w)
                    changed.add(p)
                words[w] = new
            for p in changed:
                n = pairs[p]
                if n > 0:
                    heapq.heappush(heap, (-n, p))
                else:
                    del pairs[p]
        return cls(tuple(merges))

    def _encode_piece(self, piece: str) -> list[int]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        seq = [FIRST_TOKEN + b for b in piece.encode("utf-8")]
        ranks = self._ranks
        while len(seq) > 1:
            found = [ranks[p] for p in zip(seq, seq[1:]) if p in ranks]
            if not found:
                break
            k, c = min(found)
            a, b = self.merges[k][:2]
            seq = _merge_pair(seq, a, b, c)
        self._cache[piece] = seq
        return seq

    def encode(self, text: str) -> np.ndarray:
        """Text to ids, ``int32[n_tokens]``: each piece's bytes, merged in the order learned."""
        ids: list[int] = []
        for piece in pretokenize(text):
            ids.extend(self._encode_piece(piece))
        return np.array(ids, dtype=np.int32)

    def decode(self, ids: Any) -> str:
        """Ids back to text; special ids vanish and `UNK` becomes U+FFFD. Exact for `encode`'s
        output."""
        return _decode_bytes("ids", ids, self._bytes)
