"""3.6 Seq2Seq — a deep LSTM reads the sentence backwards, another writes its translation.

Sutskever, Vinyals & Le, *Sequence to sequence learning with neural networks*, NeurIPS 2014.
https://arxiv.org/abs/1409.3215

The idea: one multi-layer LSTM (the *encoder*) reads the source sentence; a second one (the
*decoder*) starts from the encoder's final cell and output states, layer by layer, and
generates the target one token at a time until it emits ``EOS`` (section 2). There is no
separate summary vector: the encoder's last states *are* the summary. Two tricks made it work:
the source is fed in **reversed** (section 3.3), which puts the first source words right next
to the first target words they translate, and translations are produced by a left-to-right
**beam search** (section 3.2) that keeps the ``B`` most probable partial hypotheses instead of
committing to the single best next word.

The paper used four layers of 1000 cells; the experiment here uses two small layers. The cell is
the LSTM with a forget gate of topic 3.3 (`forget_step`); the recurrences run through 3.1's
`scan_over_time`; the argument checks and the loss come from topic 3.5. `LinenSeq2Seq` and
`NnxSeq2Seq` hold the tree that `init_seq2seq` declares. The experiment (3.5's toy translation,
source in order vs reversed, greedy vs beam) lives in `impl.sequence.seq2seq_experiment`.

Shapes: token ids ``int32[batch, T]`` with ``PAD = 0`` after each sentence; the state of an
``L``-layer LSTM is a tuple of ``L`` pairs ``(c, h)``, each ``[batch, H]``; its parameters a list
of ``L`` trees of 3.3's `init_forget_lstm`; logits
``[batch, T_out, vocab]``; decoded sequences ``int32[batch, T_out]`` with their log-probabilities
``[batch]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.data.sequences import BOS, EOS, PAD
from impl.deep_networks.dnn import dense, init_layer
from impl.sequence.encoder_decoder import check_pair, check_sizes, check_tokens
from impl.sequence.forget_gate import forget_step, init_forget_lstm
from impl.sequence.rnn import scan_over_time

__all__ = [
    "LinenSeq2Seq",
    "NnxSeq2Seq",
    "beam_search",
    "check_decode",
    "decoder_step",
    "deep_lstm_step",
    "encode",
    "greedy_decode",
    "init_deep_lstm",
    "init_seq2seq",
    "reverse_source",
    "seq2seq",
    "sequence_log_prob",
]

IN_BIAS = 0.0  # input gates start half open (3.2's -2 is for long silent delays, not needed here)
NEG = -1e9  # the log-probability of an impossible hypothesis (finite, so sums never make NaN)


# --8<-- [start:core]
def init_deep_lstm(key: jax.Array, d_in: int, d_hidden: int, n_layers: int) -> list[dict]:
    """``n_layers`` forget-gate LSTM layers (topic 3.3); layer 0 reads ``d_in`` inputs, the others
    ``d_hidden``."""
    checks.positive_int("n_layers", n_layers)
    keys = jax.random.split(key, n_layers)
    return [
        init_forget_lstm(k, d_in if i == 0 else d_hidden, d_hidden, in_bias=IN_BIAS)
        for i, k in enumerate(keys)
    ]


def deep_lstm_step(layers, carry, x: jax.Array):
    """One tick of a stack of LSTMs: each layer's output is the next layer's input.

    ``carry``: one ``(c, h)`` per layer, each ``[b, H]``; ``x [b, d_in]`` ->
    ``(carry, h_top [b, H])``.
    """
    new = []
    for params, state in zip(layers, carry):
        # 3.3's cell: scale the old state, add the new input
        state, x = forget_step(params, state, x)
        new.append(state)
    return tuple(new), x


def _encoder_tick(layers, carry, x_and_mask: jax.Array):
    """One encoder tick on ``[embedding; 1 if a real token else 0]``; padding leaves the state as it
    was."""
    x, keep = x_and_mask[:, :-1], x_and_mask[:, -1:] > 0  # [b, d_embed], [b, 1]
    moved, _ = deep_lstm_step(layers, carry, x)
    carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), moved, carry)
    return carry, carry


def encode(params: dict, src: jax.Array):
    """The encoder's final states, one ``(c, h)`` per layer (each ``[b, H]``): the whole summary."""
    emb = params["src_embed"][src]  # [b, T, d_embed]
    keep = (src != PAD).astype(emb.dtype)[..., None]  # [b, T, 1]
    hidden = params["readout"]["kernel"].shape[0]
    zeros = jnp.zeros((src.shape[0], hidden), emb.dtype)
    carry0 = tuple((zeros, zeros) for _ in params["encoder"])
    states = scan_over_time(
        _encoder_tick, params["encoder"], jnp.concatenate([emb, keep], -1), carry0
    )
    # [b, T, H] -> [b, H]: after the last real token
    return jax.tree.map(lambda s: s[:, -1], states)


def reverse_source(src: jax.Array) -> jax.Array:
    """Each sentence's words in reverse order, padding still at the end (section 3.3).

    ``[a, b, c, PAD, PAD] -> [c, b, a, PAD, PAD]``: the first source word becomes the last one read.
    """
    length = jnp.sum(src != PAD, axis=1, keepdims=True)  # [b, 1]
    pos = jnp.arange(src.shape[1]).reshape(1, -1)  # [1, T]
    return jnp.take_along_axis(src, jnp.where(pos < length, length - 1 - pos, pos), axis=1)


def _decoder_tick(layers, carry, x):
    return deep_lstm_step(layers, carry, x)


def seq2seq(params: dict, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
    """Logits of ``p(y_t | y_{<t}, x)`` with the true previous tokens fed in (teacher forcing), eq.
    1.

    ``src int[b, T_src]``, ``tgt_in int[b, T_out]`` (``BOS`` + target shifted right) ->
    ``[b, T_out, vocab]``. The decoder starts from the encoder's final states.
    """
    carry0 = encode(params, src)
    # [b, T_out, H]
    hs = scan_over_time(_decoder_tick, params["decoder"], params["tgt_embed"][tgt_in], carry0)
    return dense(params["readout"], hs)  # softmax over the vocabulary follows in the loss


def decoder_step(params: dict, carry, y_prev: jax.Array):
    """One step of generation: ``y_prev int[n]`` -> ``(carry, log p(. | ...) [n, vocab])``."""
    carry, h = deep_lstm_step(params["decoder"], carry, params["tgt_embed"][y_prev])
    return carry, jax.nn.log_softmax(dense(params["readout"], h))


def sequence_log_prob(params: dict, src: jax.Array, out: jax.Array) -> jax.Array:
    """``log p(out | src)`` (eq. 1), counting tokens up to and including the first ``EOS``.
    ``-> [b]``."""
    tgt_in = jnp.concatenate([jnp.full((out.shape[0], 1), BOS, out.dtype), out[:, :-1]], axis=1)
    logp = jax.nn.log_softmax(seq2seq(params, src, tgt_in))  # [b, T, V]
    picked = jnp.take_along_axis(logp, out[..., None], axis=-1)[..., 0]  # [b, T]
    ended_before = jnp.cumsum(out == EOS, axis=1) - (out == EOS)  # EOSs strictly before t
    return jnp.sum(jnp.where(ended_before == 0, picked, 0.0), axis=1)


def greedy_decode(params: dict, src: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """The most probable next token, ``length`` times: ``-> (int[b, length], log-probability [b])``.

    After ``EOS`` the output is ``PAD`` and the log-probability stops growing.
    """
    carry = encode(params, src)
    start = (
        jnp.full((src.shape[0],), BOS, jnp.int32),
        jnp.zeros(src.shape[0]),
        jnp.zeros(src.shape[0], bool),
    )

    def tick(state, _):
        carry, y_prev, score, done = state
        carry, logp = decoder_step(params, carry, y_prev)  # [b, V]
        y = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        score = score + jnp.where(done, 0.0, jnp.max(logp, axis=-1))
        out = jnp.where(done, PAD, y)
        return (carry, y, score, done | (y == EOS)), out

    # ys [length, b]
    (_, _, score, _), ys = jax.lax.scan(tick, (carry, *start), None, length=length)
    return ys.T, score


def beam_search(
    params: dict, src: jax.Array, length: int, beam_width: int
) -> tuple[jax.Array, jax.Array]:
    """Left-to-right beam search (section 3.2):
    ``-> (best int[b, length], its log-probability [b])``.

    Keeps the ``beam_width`` most probable hypotheses per sentence, all sentences and beams in one
    ``[b * B]`` batch. A hypothesis that has emitted ``EOS`` is finished: it may only be extended
    by ``PAD`` at no cost, so it keeps its score and competes with the unfinished ones. Scores are
    plain log-probabilities, as in the paper (no length normalisation).
    """
    b, k = src.shape[0], beam_width
    tile = lambda a: jnp.repeat(a, k, axis=0)  # noqa: E731  [b, ...] -> [b * k, ...]
    carry = jax.tree.map(tile, encode(params, src))  # every beam starts from the same encoder state
    # [b, k]: one live beam
    score = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG).reshape(1, k), (b, 1))
    tokens = jnp.zeros((b, k, length), jnp.int32)
    state = (carry, jnp.full((b * k,), BOS, jnp.int32), score, jnp.zeros((b, k), bool), tokens)
    vocab = params["readout"]["kernel"].shape[1]
    pad_only = jnp.where(jnp.arange(vocab) == PAD, 0.0, NEG).reshape(1, 1, vocab)  # [1, 1, V]

    def tick(state, t):
        carry, y_prev, score, done, tokens = state
        carry, logp = decoder_step(params, carry, y_prev)  # [b * k, V]
        # finished: PAD, free
        logp = jnp.where(done[..., None], pad_only, logp.reshape(b, k, vocab))
        # [b, k * V]: every one-word extension
        total = (score[..., None] + logp).reshape(b, k * vocab)
        score, best = jax.lax.top_k(total, k)  # [b, k]
        parent, y = best // vocab, (best % vocab).astype(jnp.int32)  # which beam, which word
        # [b * k] into the flat batch
        rows = (jnp.arange(b).reshape(-1, 1) * k + parent).reshape(-1)
        carry = jax.tree.map(lambda s: s[rows], carry)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1).at[:, :, t].set(y)
        done = jnp.take_along_axis(done, parent, axis=1) | (y == EOS)
        return (carry, y.reshape(-1), score, done, tokens), None

    (_, _, score, _, tokens), _ = jax.lax.scan(tick, state, jnp.arange(length))
    return tokens[:, 0], score[:, 0]  # top_k sorts: beam 0 is the best


# --8<-- [end:core]


def init_seq2seq(
    key: jax.Array, vocab: int, d_embed: int, d_hidden: int, n_layers: int = 2
) -> dict:
    """Two embedding tables, the encoder and decoder stacks, and the softmax readout."""
    check_sizes(vocab, d_embed, d_hidden)
    k = jax.random.split(checks.prng_key("key", key), 5)
    return {
        "src_embed": jax.random.normal(k[0], (vocab, d_embed)),  # [V, d_embed]
        "tgt_embed": jax.random.normal(k[1], (vocab, d_embed)),
        "encoder": init_deep_lstm(k[2], d_embed, d_hidden, n_layers),
        "decoder": init_deep_lstm(k[3], d_embed, d_hidden, n_layers),
        "readout": init_layer(k[4], d_hidden, vocab),  # [H, V]
    }


def check_decode(src, length: int, beam_width: int, vocab: int) -> None:
    """Arguments of the decoders, checked before any compute."""
    check_tokens("src", src, vocab)
    checks.positive_int("length", length)
    checks.positive_int("beam_width", beam_width)
    if beam_width > vocab:
        raise ValueError(
            f"beam_width: expected at most the vocabulary size {vocab}, got {beam_width}"
        )


# --8<-- [start:linen]
class LinenSeq2Seq(nn.Module):
    """Functional twin: ``apply(variables, src, tgt_in) -> logits [b, T_out, vocab]``.

    ``variables["params"]`` is `init_seq2seq`'s tree; ``method="greedy"`` /
    ``method="beam"`` decode with the same parameters.
    """

    vocab: int
    d_embed: int = 16
    d_hidden: int = 64
    n_layers: int = 2

    def setup(self):
        check_sizes(self.vocab, self.d_embed, self.d_hidden)
        checks.positive_int("n_layers", self.n_layers)
        self.tree = twins.declare(
            self, init_seq2seq, self.vocab, self.d_embed, self.d_hidden, self.n_layers
        )

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_pair(src, tgt_in, self.vocab)
        return seq2seq(self.tree, src, tgt_in)

    def greedy(self, src: jax.Array, length: int):
        check_decode(src, length, 1, self.vocab)
        return greedy_decode(self.tree, src, length)

    def beam(self, src: jax.Array, length: int, beam_width: int):
        check_decode(src, length, beam_width, self.vocab)
        return beam_search(self.tree, src, length, beam_width)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxSeq2Seq(nnx.Module):
    """Object-oriented twin: one attribute per entry of `init_seq2seq`'s tree — the embeddings, the
    two stacks of 3.3's forget-gate LSTM layers (``nnx.List``s) and the readout."""

    def __init__(
        self,
        vocab: int,
        d_embed: int = 16,
        d_hidden: int = 64,
        n_layers: int = 2,
        *,
        rngs: nnx.Rngs,
    ):
        check_sizes(vocab, d_embed, d_hidden)
        checks.positive_int("n_layers", n_layers)
        self.vocab = vocab
        for name, entry in init_seq2seq(rngs.params(), vocab, d_embed, d_hidden, n_layers).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_pair(src, tgt_in, self.vocab)
        return seq2seq(twins.pure(self), src, tgt_in)

    def greedy(self, src: jax.Array, length: int):
        check_decode(src, length, 1, self.vocab)
        return greedy_decode(twins.pure(self), src, length)

    def beam(self, src: jax.Array, length: int, beam_width: int):
        check_decode(src, length, beam_width, self.vocab)
        return beam_search(twins.pure(self), src, length, beam_width)


# --8<-- [end:nnx]
