"""Toy data for every topic: deterministic from a seed, generated or shipped, never downloaded.

* `impl.data.digits` — scikit-learn's 1,797 real 8x8 handwritten digits, fixed split.
* `impl.data.points` — 2-D classification sets: XOR, two spirals, moons, Gaussian mixtures.
* `impl.data.shapes` — coloured circles, squares and triangles with masks, edges and captions.
* `impl.data.sequences` — copy, reverse, sort, addition, delayed recall and a small grammar.
"""

from impl.data.digits import DigitsSplit, load_digits
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

__all__ = [
    "DigitsSplit",
    "SeqTask",
    "Shapes",
    "addition",
    "copy_task",
    "delayed_recall",
    "gaussian_mixture",
    "grammar_corpus",
    "load_digits",
    "make_shapes",
    "moons",
    "reverse_task",
    "sequence_task",
    "sort_task",
    "two_spirals",
    "xor",
]
