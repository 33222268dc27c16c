"""A vocabulary: token strings to integer ids and back, with reserved ids for the special tokens.

Every text topic (Transformer, BERT, T5, GPT-2) shares one layout of ids. The first seven are
reserved, in this order:

* `PAD` = 0 — filler to the right of short sequences (masked out);
* `BOS` = 1 — beginning of sequence (a decoder's first input);
* `EOS` = 2 — end of sequence;
* `SEP` = 3 — separator between two segments (BERT's sentence pairs);
* `MASK` = 4 — a hidden token that a masked language model must restore (BERT);
* `CLS` = 5 — the summary position a classifier reads (BERT);
* `UNK` = 6 — any token the vocabulary does not hold.

Ordinary tokens ("symbols") follow from `FIRST_TOKEN` = 7. `PAD`, `BOS`, `EOS` and `SEP` keep
the ids that `impl.data.sequences` gives them, so a model trained on those tasks reads the same
four ids the same way.

Shapes:
    `Vocab.encode` returns ``int32[len]``; `Vocab.pad_batch` returns ``int32[n, T]`` ids and a
    ``bool[n, T]`` mask that is ``True`` on real tokens and ``False`` on padding.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from impl import checks

__all__ = [
    "BOS",
    "CLS",
    "EOS",
    "FIRST_TOKEN",
    "MASK",
    "PAD",
    "SEP",
    "SPECIAL_TOKENS",
    "UNK",
    "Vocab",
    "as_ids",
]  # fmt: skip

PAD, BOS, EOS, SEP, MASK, CLS, UNK = range(7)
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<sep>", "<mask>", "<cls>", "<unk>")  # indexed by id
FIRST_TOKEN = len(SPECIAL_TOKENS)  # the id of the first ordinary token


def as_ids(name: str, ids: Any, *, size: int | None = None) -> np.ndarray:
    """Return ``ids`` as a 1-D ``int32`` numpy array, or raise naming ``name``.

    Accepts a list or tuple of ints, or a 1-D integer numpy/JAX array. With ``size``, every id
    must lie in ``[0, size)``.
    """
    if isinstance(ids, str | bytes) or not (hasattr(ids, "__len__") or hasattr(ids, "shape")):
        raise TypeError(f"{name}: expected a 1-D sequence of integer ids, got {type(ids).__name__}")
    if not hasattr(ids, "dtype") and any(
        not isinstance(i, numbers.Integral) or isinstance(i, bool) for i in ids
    ):  # reject 1.5 or True in a list before numpy silently converts them
        raise TypeError(f"{name}: expected integer ids, got {list(ids)[:8]!r}")
    array = np.asarray(ids)
    if array.size == 0:
        array = array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: expected integer ids, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of ids, got shape {array.shape}")
    if size is not None and array.size and (array.min() < 0 or array.max() >= size):
        bad = array[(array < 0) | (array >= size)][0]
        raise ValueError(f"{name}: expected ids in [0, {size}), got {int(bad)}")
    return array.astype(np.int32)


@dataclass(frozen=True)
class Vocab:
    """The special tokens followed by ``symbols``, each string at a fixed id.

    Build one from token strings, ``Vocab(["the", "cat", "sat"])`` (ids 7, 8, 9), or from a count,
    ``Vocab.from_count(10)`` (symbols ``"0"`` … ``"9"`` at ids 7 … 16).

    Attributes:
        symbols: the ordinary tokens in id order: distinct, non-empty strings, none of them one of
            `SPECIAL_TOKENS`. A list is accepted and stored as a tuple.
    """

    symbols: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        symbols = self.symbols
        if isinstance(symbols, str) or not isinstance(symbols, Iterable):
            raise TypeError(
                f"symbols: expected a list of token strings, got {type(symbols).__name__}"
            )
        symbols = tuple(symbols)
        seen: set[str] = set()
        for i, token in enumerate(symbols):
            if not isinstance(token, str):
                raise TypeError(
                    f"symbols[{i}]: expected a string, got {token!r} ({type(token).__name__})"
                )
            if not token:
                raise ValueError(f"symbols[{i}]: expected a non-empty string")
            if token in SPECIAL_TOKENS:
                raise ValueError(f"symbols[{i}]: {token!r} is reserved for a special token")
            if token in seen:
                raise ValueError(f"symbols[{i}]: duplicate token {token!r}")
            seen.add(token)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(SPECIAL_TOKENS + symbols)})

    @classmethod
    def from_count(cls, n_symbols: int) -> Vocab:
        """A vocabulary of ``n_symbols`` numbered symbols ``"0"``, ``"1"``, … after the specials."""
        checks.positive_int("n_symbols", n_symbols)
        return cls(tuple(str(i) for i in range(n_symbols)))

    @property
    def size(self) -> int:
        """Number of ids, special ones included: an embedding table needs this many rows."""
        return FIRST_TOKEN + len(self.symbols)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token in id order, the special ones first."""
        return SPECIAL_TOKENS + self.symbols

    def id(self, token: str) -> int:
        """The id of ``token``; `UNK` if the vocabulary does not hold it."""
        if not isinstance(token, str):
            raise TypeError(f"token: expected a string, got {token!r} ({type(token).__name__})")
        return self._index.get(token, UNK)

    def token(self, id: int) -> str:
        """The token string at ``id``."""
        checks.non_negative_int("id", id)
        if id >= self.size:
            raise ValueError(f"id: expected an id in [0, {self.size}), got {id}")
        return self.tokens[id]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token strings to ids, ``int32[len(tokens)]``; unknown tokens become `UNK`.

        A plain string is refused rather than read as a list of characters: pass ``list(text)``
        for characters, or use a tokenizer from `impl.data.tokenizers`.
        """
        if isinstance(tokens, str) or not isinstance(tokens, Iterable):
            raise TypeError(
                f"tokens: expected a sequence of token strings, got {type(tokens).__name__}"
            )
        tokens = list(tokens)
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(
                    f"tokens[{i}]: expected a string, got {token!r} ({type(token).__name__})"
                )
        return np.array([self._index.get(t, UNK) for t in tokens], dtype=np.int32)

    def decode(self, ids: Any, *, skip_special: bool = True) -> list[str]:
        """Ids (``int[len]``) back to token strings, dropping the special tokens by default."""
        array = as_ids("ids", ids, size=self.size)
        tokens = self.tokens
        return [tokens[i] for i in array.tolist() if not (skip_special and i < FIRST_TOKEN)]

    def pad_batch(
        self,
        seqs: Sequence[Any],
        *,
        length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stack variable-length id sequences into one rectangle, padded with `PAD` on the right.

        Args:
            seqs: ``n`` sequences of ids (lists or 1-D integer arrays), each id in ``[0, size)``.
            length: the width ``T``; ``None`` uses the longest sequence (after BOS/EOS).
            add_bos: put `BOS` before every sequence.
            add_eos: put `EOS` after every sequence.

        Returns:
            ``(ids, mask)``: ``int32[n, T]`` ids and ``bool[n, T]``, ``True`` where a token is real
            (BOS and EOS included) and ``False`` on padding.

        Raises:
            ValueError: if a sequence (with BOS/EOS) is longer than ``length``; nothing is cut.
        """
        if isinstance(seqs, str | bytes) or not isinstance(seqs, Sequence | np.ndarray):
            raise TypeError(f"seqs: expected a sequence of id sequences, got {type(seqs).__name__}")
        if len(seqs) == 0:
            raise ValueError("seqs: expected at least one sequence, got none")
        if length is not None:
            checks.positive_int("length", length)
        for name, flag in (("add_bos", add_bos), ("add_eos", add_eos)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        rows = [as_ids(f"seqs[{i}]", s, size=self.size) for i, s in enumerate(seqs)]
        extra = int(add_bos) + int(add_eos)
        longest = max(len(r) for r in rows) + extra
        if length is None:
            length = longest
        elif longest > length:
            i = max(range(len(rows)), key=lambda k: len(rows[k]))
            raise ValueError(
                f"seqs[{i}]: {len(rows[i]) + extra} tokens (BOS/EOS included) do "
                f"not fit length={length}; shorten the sequence or raise length"
            )
        ids = np.full((len(rows), length), PAD, dtype=np.int32)  # [n, T]
        mask = np.zeros((len(rows), length), dtype=bool)  # [n, T]
        for i, row in enumerate(rows):
            full = np.concatenate([[BOS] * add_bos, row, [EOS] * add_eos]).astype(np.int32)
            ids[i, : len(full)] = full
            mask[i, : len(full)] = True
        return ids, mask
