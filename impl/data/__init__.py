"""Toy data for every topic: deterministic from a seed, generated or shipped, never downloaded.

* `impl.data.digits` — scikit-learn's 1,797 real 8x8 handwritten digits, fixed split.
* `impl.data.points` — 2-D classification sets: XOR, two spirals, moons, Gaussian mixtures.
* `impl.data.shapes` — coloured circles, squares and triangles with masks, edges and captions.
* `impl.data.sequences` — copy, reverse, sort, addition, delayed recall and a small grammar.
* `impl.data.translation` — the toy translation task of 3.5–3.7 (and 4.1): a permuted lexicon,
  reversed phrases, and word accuracy by source length.
* `impl.data.vocab` — `Vocab`: token strings to ids with reserved PAD, BOS, EOS, SEP, MASK, CLS,
  UNK (ids 0..6), and `Vocab.pad_batch` for variable-length batches with masks.
* `impl.data.tokenizers` — a character tokenizer and a byte-level BPE tokenizer trained on text.
* `impl.data.corpus` — `load_corpus()`: a frozen snapshot of this project's own essays and pages
  as plain English prose (~46,000 words); ``python -m impl.data.corpus --write`` refreshes it.
* `impl.data.lm` — next-token windows from a stream of ids, and a contiguous train/test split.
"""

from impl.data.corpus import load_corpus
from impl.data.digits import DigitsSplit, load_digits
from impl.data.lm import lm_windows, train_test_split
from impl.data.points import gaussian_mixture, moons, two_spirals, xor
from impl.data.sequences import (
    SeqTask,
    addition,
    copy_task,
    delayed_recall,
    grammar_corpus,
    reverse_task,
    sequence_task,
    sort_task,
)
from impl.data.shapes import Shapes, make_shapes
from impl.data.tokenizers import BPETokenizer, CharTokenizer
from impl.data.vocab import SPECIAL_TOKENS, Vocab

__all__ = [
    "SPECIAL_TOKENS",
    "BPETokenizer",
    "CharTokenizer",
    "DigitsSplit",
    "SeqTask",
    "Shapes",
    "Vocab",
    "addition",
    "copy_task",
    "delayed_recall",
    "gaussian_mixture",
    "grammar_corpus",
    "lm_windows",
    "load_corpus",
    "load_digits",
    "make_shapes",
    "moons",
    "reverse_task",
    "sequence_task",
    "sort_task",
    "train_test_split",
    "two_spirals",
    "xor",
]
