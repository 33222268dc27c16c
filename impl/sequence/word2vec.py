"""3.4 Word2Vec — skip-gram with negative sampling and subsampling of frequent words.

Mikolov, Chen, Corrado & Dean, *Efficient estimation of word representations in vector space*,
ICLR 2013 workshop. https://arxiv.org/abs/1301.3781
Mikolov, Sutskever, Chen, Corrado & Dean, *Distributed representations of words and phrases and
their compositionality*, NeurIPS 26 (2013). https://arxiv.org/abs/1310.4546

The idea: give every word two vectors, and train the vector of each word to predict the words
around it. The first paper's *skip-gram* model drops everything but a table lookup and a dot
product, so it trains on billions of words; the second replaces the softmax over the whole
vocabulary by *negative sampling* — tell the true context word apart from ``k`` words drawn from
a noise distribution — and throws away most occurrences of very frequent words (*subsampling*).
Words used in similar contexts end up with similar vectors, and relations between words become
directions: ``vec(paris) - vec(france) + vec(italy)`` lands near ``vec(rome)``.

Layout: pure functions hold the math (subsampling, context pairs, noise distribution, the loss,
3CosAdd analogies); `LinenSkipGram` and `NnxSkipGram` hold the two embedding tables that
`init_tables` declares and call them. The corpus with planted relations lives in
:mod:`impl.sequence.word2vec_corpus`, the experiment in :mod:`impl.sequence.word2vec_experiment`.

Shapes: sentences ``int32[n_sentences, length]``; pairs ``int32[n_pairs]`` (centre and context
ids) with ``bool[n_pairs]`` validity; negatives ``int32[n_pairs, k]``; embedding tables
``float32[vocab, dim]``; analogy questions ``int32[n_questions, 4]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins

__all__ = [
    "LinenSkipGram",
    "NnxSkipGram",
    "analogy_accuracy",
    "context_pairs",
    "embed",
    "init_tables",
    "keep_probability",
    "nearest_neighbours",
    "nearest_to_c",
    "noise_distribution",
    "offset_cosines",
    "sample_negatives",
    "sgns_loss",
    "solve_analogies",
    "subsample",
    "window_pairs",
]


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_ids(name: str, ids, vocab_size: int) -> None:
    """Integer ids in ``[0, vocab_size)``. The range is checked where the values are known
    (outside ``jit``); inside a compiled loop the ids come from code that is itself checked."""
    if not hasattr(ids, "dtype") or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(
            f"{name}: expected an integer array of token ids, got "
            f"{getattr(ids, 'dtype', type(ids))}"
        )
    if _is_traced(ids) or ids.size == 0:
        return
    low, high = int(jnp.min(ids)), int(jnp.max(ids))
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name}: expected token ids in [0, {vocab_size}), got values from {low} to {high}"
        )


def _check_counts(counts) -> None:
    checks.array_shape("counts", counts, ("vocab",), dims="[vocab]")
    if _is_traced(counts):
        return
    if bool(jnp.any(counts < 0)):
        raise ValueError(
            f"counts: expected non-negative word counts, got a minimum of {jnp.min(counts)}"
        )
    if not bool(jnp.any(counts > 0)):
        raise ValueError("counts: expected at least one positive word count, got all zeros")


def _check_sentences(sentences, keep) -> None:
    checks.array_shape(
        "sentences", sentences, ("n_sentences", "length"), dims="[n_sentences, length]"
    )
    if keep is not None:
        checks.array_shape("keep", keep, ("vocab",), dims="[vocab]")
        _check_ids("sentences", sentences, keep.shape[0])
    else:
        _check_ids("sentences", sentences, np.iinfo(np.int32).max)


# --8<-- [start:pairs]
def keep_probability(counts: jax.Array, threshold: float) -> jax.Array:
    """Subsampling of frequent words, eq. 5 of the second paper: each occurrence of word ``w``
    is discarded with probability ``P(w) = 1 - sqrt(t / f(w))``, ``f(w)`` its frequency.

    Returns the probability of *keeping* it, ``1 - P(w) = min(1, sqrt(t / f(w)))``:
    ``counts int[vocab] -> float[vocab]``. Words rarer than ``t`` are always kept.
    """
    _check_counts(counts)
    checks.in_range("threshold", threshold, 0.0, 1.0, low_inclusive=False)
    freq = counts / jnp.sum(counts)  # f(w), [vocab]
    return jnp.minimum(1.0, jnp.sqrt(threshold / jnp.maximum(freq, 1e-30)))  # 1 - P(w), eq. 5


def subsample(key: jax.Array, sentences: jax.Array, keep: jax.Array) -> jax.Array:
    """Which tokens survive subsampling: each independently, with probability ``keep[token]``.
    ``sentences int[S, L]``, ``keep float[vocab]`` -> ``bool[S, L]``."""
    _check_sentences(sentences, keep)
    return jax.random.uniform(key, sentences.shape) < keep[sentences]  # [S, L]


def window_pairs(
    sentences: jax.Array, kept: jax.Array, reach: jax.Array, window: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The (centre, context) pairs of skip-gram, for given survivors and reaches.

    The tokens with ``kept`` true close ranks (so discarding a ``the`` brings the next word into
    the window), then each surviving centre pairs with the survivors at most ``reach`` places
    away on either side. All slots ``(sentence, position, offset)`` are computed at once.

    ``sentences int[S, L]``, ``kept bool[S, L]``, ``reach int[S, L]`` (each in ``1..window``)
    -> ``centres, contexts int[S * L * 2 window]`` and ``valid bool[S * L * 2 window]``,
    which marks the slots that hold a real pair.
    """
    S, L = sentences.shape
    order = jnp.argsort(~kept, axis=1, stable=True)  # survivors first, in their original order
    tokens = jnp.take_along_axis(sentences, order, axis=1)  # [S, L]
    n_kept = jnp.sum(kept, axis=1).reshape(S, 1, 1)  # [S, 1, 1]
    offsets = jnp.concatenate([jnp.arange(-window, 0), jnp.arange(1, window + 1)]).reshape(
        1, 1, 2 * window
    )
    position = jnp.arange(L).reshape(1, L, 1)  # the centre's rank among the survivors
    other = position + offsets  # [1, L, 2 window]: the context word's rank
    # each survivor keeps its own R
    reach = jnp.take_along_axis(reach, order, axis=1).reshape(S, L, 1)
    in_reach = jnp.abs(offsets) <= reach  # [S, L, 2 window]
    valid = (position < n_kept) & (other >= 0) & (other < n_kept) & in_reach  # [S, L, 2 window]
    centres = jnp.broadcast_to(tokens.reshape(S, L, 1), (S, L, 2 * window))
    gather = jnp.broadcast_to(
        jnp.clip(other, 0, L - 1).reshape(1, L * 2 * window), (S, L * 2 * window)
    )
    contexts = jnp.take_along_axis(tokens, gather, axis=1)  # [S, L * 2 window]
    return centres.reshape(-1), contexts.reshape(-1), valid.reshape(-1)


def context_pairs(
    key: jax.Array, sentences: jax.Array, window: int, keep: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Skip-gram's training pairs for a batch of sentences, drawn afresh for every batch:

    1. subsampling — each token survives with probability ``keep[token]`` (from
       `keep_probability`; ``None`` keeps every token);
    2. a dynamic window (first paper, section 3.2) — each centre draws a reach ``R`` uniform in
       ``1..window`` and uses the ``R`` words before and after it, so nearer words count more.

    ``sentences int[S, L] -> (centres, contexts, valid)`` as in `window_pairs`.
    """
    _check_sentences(sentences, keep)
    checks.positive_int("window", window)
    k_keep, k_reach = jax.random.split(key)
    S, L = sentences.shape
    kept = jnp.ones((S, L), bool) if keep is None else subsample(k_keep, sentences, keep)  # [S, L]
    reach = jax.random.randint(k_reach, (S, L), 1, window + 1)  # R, [S, L]
    return window_pairs(sentences, kept, reach, window)


# --8<-- [end:pairs]


# --8<-- [start:loss]
def noise_distribution(counts: jax.Array, power: float = 0.75) -> jax.Array:
    """The noise distribution of negative sampling, ``P_n(w) = U(w)^{3/4} / Z`` (second paper,
    section 2.2): the unigram distribution raised to the 3/4 power, which draws rare words more
    often than their frequency would. ``counts int[vocab] -> probabilities float[vocab]``."""
    _check_counts(counts)
    checks.in_range("power", power, 0.0, 1.0)
    weights = (counts / jnp.sum(counts)) ** power  # U(w)^{3/4}, [vocab]
    return weights / jnp.sum(weights)


def sample_negatives(key: jax.Array, noise: jax.Array, n_pairs: int, k: int) -> jax.Array:
    """``k`` noise words for each of ``n_pairs`` pairs, drawn from ``noise [vocab]``: the
    ``w_i ~ P_n(w)`` of eq. 4. Returns ``int32[n_pairs, k]``."""
    checks.array_shape("noise", noise, ("vocab",), dims="[vocab]")
    checks.positive_int("n_pairs", n_pairs)
    checks.positive_int("k", k)
    return jax.random.choice(key, noise.shape[0], (n_pairs, k), p=noise).astype(jnp.int32)


def embed(table: jax.Array, ids: jax.Array) -> jax.Array:
    """Look up rows: ``table [vocab, dim]``, ``ids int[...] -> [..., dim]``. The same as
    multiplying a one-hot vector by the table, done as a gather."""
    _check_ids("ids", ids, table.shape[0])
    return jnp.take(table, ids, axis=0)


def sgns_loss(
    w_in: jax.Array, w_out: jax.Array, centres: jax.Array, contexts: jax.Array, negatives: jax.Array
) -> jax.Array:
    """The skip-gram negative-sampling loss of each pair: minus eq. 4 of the second paper,

    ``-[log σ(v'_O · v_I) + Σ_{i=1..k} log σ(-v'_{w_i} · v_I)]``,

    with ``v_I`` the centre's row of ``w_in`` (its input vector) and ``v'`` rows of ``w_out``
    (output vectors). ``w_in, w_out [vocab, dim]``, ``centres, contexts int[P]``,
    ``negatives int[P, k]`` -> ``[P]``.
    """
    v = embed(w_in, centres)  # v_I, [P, dim]
    positive = jnp.sum(v * embed(w_out, contexts), axis=-1)  # v'_O · v_I, [P]
    negative = jnp.einsum("pd,pkd->pk", v, embed(w_out, negatives))  # v'_{w_i} · v_I, [P, k]
    # eq. 4
    return -(jax.nn.log_sigmoid(positive) + jnp.sum(jax.nn.log_sigmoid(-negative), axis=-1))


# --8<-- [end:loss]


# --8<-- [start:analogies]
def _unit(vectors: jax.Array) -> jax.Array:
    # [vocab, dim]
    return vectors / jnp.maximum(jnp.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _best_unasked(target: jax.Array, unit: jax.Array, questions: jax.Array) -> jax.Array:
    """The word most cosine-similar to each row of ``target [Q, dim]``, never ``a``, ``b`` or
    ``c``."""
    similarity = target @ unit.T  # [Q, vocab]
    vocab = jnp.arange(unit.shape[0]).reshape(1, -1)
    asked = (
        (vocab == questions[:, 0:1]) | (vocab == questions[:, 1:2]) | (vocab == questions[:, 2:3])
    )
    return jnp.argmax(jnp.where(asked, -jnp.inf, similarity), axis=-1)  # [Q]


def solve_analogies(vectors: jax.Array, questions: jax.Array) -> jax.Array:
    """3CosAdd: answer "``a`` is to ``b`` as ``c`` is to ?" with the word whose unit vector is
    closest (cosine) to ``b - a + c`` (first paper, section 4), excluding ``a``, ``b`` and ``c``.

    ``vectors [vocab, dim]``, ``questions int[Q, >=3]`` (columns ``a, b, c``) -> ``int[Q]``.
    """
    unit = _unit(vectors)
    a, b, c = (unit[questions[:, i]] for i in range(3))  # each [Q, dim]
    return _best_unasked(b - a + c, unit, questions)


def analogy_accuracy(vectors: jax.Array, questions: jax.Array) -> jax.Array:
    """Fraction of ``questions int[Q, 4]`` whose 3CosAdd answer is the fourth column."""
    return jnp.mean(solve_analogies(vectors, questions) == questions[:, 3])


def nearest_neighbours(vectors: jax.Array, ids: jax.Array, k: int = 3) -> jax.Array:
    """The ``k`` words of highest cosine similarity to each of ``ids``, the word itself excluded.
    ``vectors [vocab, dim]``, ``ids int[n]`` -> ``int[n, k]``, nearest first."""
    unit = _unit(vectors)
    similarity = unit[ids] @ unit.T  # [n, vocab]
    itself = jnp.arange(vectors.shape[0]).reshape(1, -1) == ids.reshape(-1, 1)
    return jax.lax.top_k(jnp.where(itself, -jnp.inf, similarity), k)[1]


# --8<-- [end:analogies]


def init_tables(key: jax.Array, vocab_size: int, dim: int) -> dict[str, jax.Array]:
    """The released tool's initialisation: input vectors uniform in ``±0.5 / dim``, output vectors
    zero."""
    checks.positive_int("vocab_size", vocab_size)
    checks.positive_int("dim", dim)
    w_in = jax.random.uniform(key, (vocab_size, dim), minval=-0.5 / dim, maxval=0.5 / dim)
    return {"w_in": w_in, "w_out": jnp.zeros((vocab_size, dim))}


def _check_batch(centres, contexts, negatives, vocab_size: int) -> None:
    checks.array_shape("centres", centres, ("pairs",), dims="[pairs]")
    checks.array_shape("contexts", contexts, (centres.shape[0],), dims="[pairs] (as centres)")
    checks.array_shape("negatives", negatives, (centres.shape[0], "k"), dims="[pairs, k]")
    for name, ids in (("centres", centres), ("contexts", contexts), ("negatives", negatives)):
        _check_ids(name, ids, vocab_size)


# --8<-- [start:linen]
class LinenSkipGram(nn.Module):
    """Functional twin: ``apply(variables, centres, contexts, negatives)`` -> loss per pair ``[P]``.

    ``variables["params"]`` is `init_tables`'s tree,
    ``{"w_in": [vocab, dim], "w_out": [vocab, dim]}`` — the input (word) vectors and the output
    (context) vectors.
    """

    vocab_size: int
    dim: int

    def setup(self):
        checks.positive_int("vocab_size", self.vocab_size)
        checks.positive_int("dim", self.dim)
        tables = lambda key: init_tables(key, self.vocab_size, self.dim)  # noqa: E731
        self.w_in = self.param("w_in", lambda key: tables(key)["w_in"])
        self.w_out = self.param("w_out", lambda key: tables(key)["w_out"])

    def __call__(self, centres: jax.Array, contexts: jax.Array, negatives: jax.Array) -> jax.Array:
        _check_batch(centres, contexts, negatives, self.vocab_size)
        return sgns_loss(self.w_in, self.w_out, centres, contexts, negatives)

    def vectors(self) -> jax.Array:
        """The word vectors, ``[vocab, dim]``: ``model.apply(variables, method="vectors")``."""
        return self.w_in


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxSkipGram(nnx.Module):
    """Object-oriented twin: `init_tables`'s ``w_in`` and ``w_out`` as ``nnx.Param`` attributes."""

    def __init__(self, vocab_size: int, dim: int, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        for name, table in init_tables(rngs.params(), vocab_size, dim).items():
            setattr(self, name, twins.to_nnx(table))  # [vocab, dim]

    def __call__(self, centres: jax.Array, contexts: jax.Array, negatives: jax.Array) -> jax.Array:
        _check_batch(centres, contexts, negatives, self.vocab_size)
        tables = twins.pure(self)  # {"w_in", "w_out"}
        return sgns_loss(tables["w_in"], tables["w_out"], centres, contexts, negatives)

    def vectors(self) -> jax.Array:
        return self.w_in[...]


# --8<-- [end:nnx]


def nearest_to_c(vectors: jax.Array, questions: jax.Array) -> jax.Array:
    """A baseline that ignores the relation: answer ``a : b :: c : ?`` with ``c``'s nearest
    neighbour (cosine), ``a``, ``b`` and ``c`` excluded. ``int[Q, >=3] -> int[Q]``."""
    unit = _unit(vectors)
    return _best_unasked(unit[questions[:, 2]], unit, questions)


def offset_cosines(vectors: jax.Array, pairs: np.ndarray) -> tuple[float, float]:
    """Mean cosine between the offsets ``unit(y) - unit(x)`` of different pairs: within a family,
    and across families. ``pairs int[F, P, 2]``. Parallel offsets give 1; random directions 0."""
    unit = np.asarray(vectors / jnp.linalg.norm(vectors, axis=-1, keepdims=True))
    offsets = unit[pairs[..., 1]] - unit[pairs[..., 0]]  # [F, P, dim]
    offsets = offsets / np.linalg.norm(offsets, axis=-1, keepdims=True)
    flat = offsets.reshape(-1, offsets.shape[-1])  # [F * P, dim]
    cos = flat @ flat.T
    family = np.repeat(np.arange(pairs.shape[0]), pairs.shape[1])
    same = (family[:, None] == family[None, :]) & ~np.eye(len(flat), dtype=bool)
    return float(cos[same].mean()), float(cos[family[:, None] != family[None, :]].mean())
