"""3.7 Attention — the decoder looks back at every source word instead of one summary vector.

Bahdanau, Cho & Bengio, *Neural machine translation by jointly learning to align and
translate*, ICLR 2015. https://arxiv.org/abs/1409.0473

The idea: topic 3.5's encoder–decoder squeezes the whole source into one fixed-length vector
``c``. Here the encoder keeps one *annotation* ``h_j`` per source word — the states of a
forward and a backward GRU, concatenated, so each describes its word in the context of the
whole sentence (section 3.2). Before emitting target word ``i`` the decoder scores every
annotation against its own state, ``e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)`` (the *alignment
model*, appendix A.1.2), turns the scores into weights ``alpha_ij`` with a softmax over ``j``
(eq. 6), and reads the weighted mean ``c_i = sum_j alpha_ij h_j`` (eq. 5): a *different*
context vector for every target word. The alignment is learned with the translation, from
the translation loss alone, and the weights ``alpha`` show it as a heatmap.

Everything recurrent is reused from topic 3.5 (``gru_step``, its padding-aware encoder tick,
its loss and argument checks) and topic 3.1 (``scan_over_time``); the readout is 1.1's
:func:`~impl.deep_networks.dnn.dense`. `LinenAttentionModel` and `NnxAttentionModel` hold the
tree that `init_attention_model` declares. The toy translation task lives in
`impl.data.translation`, the experiment in `impl.sequence.attention_experiment`.

Shapes: token ids ``int32[batch, T]`` with ``PAD = 0`` after each source's end; annotations
``float32[batch, T, 2H]``; attention weights ``[batch, T_out, T]``; logits
``[batch, T_out, vocab]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.data.sequences import BOS, PAD
from impl.deep_networks.dnn import dense, init_layer
from impl.sequence.encoder_decoder import (
    check_pair,
    check_sizes,
    encoder_tick,
    gru_inputs,
    gru_step,
    init_gru,
    token_loss,
)
from impl.sequence.rnn import scan_over_time

__all__ = [
    "LinenAttentionModel",
    "NnxAttentionModel",
    "align",
    "annotate",
    "attention_model",
    "decoder_step",
    "greedy_translate",
    "init_alignment",
    "init_attention_model",
    "masked_softmax",
    "sequence_loss",
]

# The entries of `init_attention_model`'s tree.


# --8<-- [start:core]
def annotate(params: dict, src: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The bidirectional encoder (section 3.2).
    ``src int[b, T] -> (h [b, T, 2H], h_back_1 [b, H])``.

    ``h_j = [h_fwd_j ; h_back_j]``: the forward GRU has read words ``1..j``, the backward GRU
    words ``N..j``. Both use 3.5's tick, which leaves the state unchanged on ``PAD``, so the
    backward GRU starts from zero at each sentence's own last word. Also returns
    ``h_back_1``, the backward state at the first word, from which the decoder starts.
    """
    emb = params["src_embed"][src]  # [b, T, E]
    keep = (src != PAD).astype(emb.dtype)[..., None]  # [b, T, 1]: 1 on real tokens
    xs = {
        d: jnp.concatenate([gru_inputs(params[d], emb), keep], axis=-1)
        for d in ("forward", "backward")
    }
    h0 = jnp.zeros((src.shape[0], params["forward"]["u_r"].shape[0]), emb.dtype)  # [b, H]
    fwd = scan_over_time(encoder_tick, params["forward"], xs["forward"], h0)  # [b, T, H]
    bwd = jnp.flip(
        scan_over_time(encoder_tick, params["backward"], jnp.flip(xs["backward"], axis=1), h0),
        axis=1,
    )
    return jnp.concatenate([fwd, bwd], axis=-1), bwd[:, 0]  # [b, T, 2H], [b, H]


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Eq. 6 over the real source words only: ``softmax`` of ``scores [b, T]`` where ``mask``
    is true, exactly 0 where it is false. A row with no true entry (a source with no word) gets
    all zeros, with zero gradient, rather than the 0/0 of a softmax over nothing."""
    # [b, 1]
    top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True))
    # an empty row's max is -inf: any finite shift will do
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    # [b, T]: 0 off the mask, and so is its gradient
    weights = jnp.exp(jnp.where(mask, scores - top, -jnp.inf))
    # [b, 1]: >= 1 (the top word's exp(0)) unless the row is empty
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)  # an empty row: 0 / 1


def align(params: dict, s_prev: jax.Array, keys: jax.Array, mask: jax.Array) -> jax.Array:
    """The attention weights ``alpha_ij`` for one target step. ``s_prev [b, H]`` is the decoder's
    state ``s_{i-1}``, ``keys [b, T, A]`` the precomputed ``U_a h_j`` -> ``alpha [b, T]``."""
    query = (s_prev @ params["w_a"])[:, None, :]  # [b, 1, A]: W_a s_{i-1}
    # [b, T]: e_ij = v_a^T tanh(W_a s + U_a h_j), A.1.2
    scores = jnp.tanh(query + keys) @ params["v_a"]
    return masked_softmax(scores, mask)  # eq. 6


def decoder_step(params: dict, memory: tuple, s_prev: jax.Array, y_prev: jax.Array):
    """One target word: attend, update the state, read out (eqs. 4–6).

    ``memory = (annotations [b, T, 2H], keys [b, T, A], mask [b, T])`` from the encoder;
    ``s_prev [b, H]``; ``y_prev [b, E]``, the previous target word's embedding.
    Returns ``(s_i [b, H], (logits [b, vocab], alpha [b, T]))``.
    """
    annotations, keys, mask = memory
    alpha = align(params["align"], s_prev, keys, mask)  # [b, T]
    c = jnp.einsum("bt,btd->bd", alpha, annotations)  # [b, 2H]: c_i = sum_j alpha_ij h_j, eq. 5
    x = jnp.concatenate([y_prev, c], axis=-1)  # [b, E + 2H]
    s = gru_step(params["decoder"], s_prev, x)  # s_i = f(s_{i-1}, y_{i-1}, c_i), eq. 4
    # g(y_{i-1}, s_i, c_i), eq. 4
    logits = dense(params["readout"], jnp.concatenate([s, x], axis=-1))
    return s, (logits, alpha)


def _start(params: dict, src: jax.Array):
    """Encode once: the memory every decoder step reads, and ``s_0 = tanh(W_s h_back_1)``
    (A.2.2)."""
    annotations, back_first = annotate(params, src)
    keys = annotations @ params["align"]["u_a"]  # [b, T, A]: U_a h_j, computed once for all i
    memory = (annotations, keys, src != PAD)
    return memory, jnp.tanh(dense(params["init"], back_first))  # s_0 [b, H]


def attention_model(params: dict, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Teacher forcing: ``src int[b, T]``, ``tgt_in int[b, T_out]`` (``BOS`` + target shifted
    right) -> ``(logits [b, T_out, vocab], alpha [b, T_out, T])``."""
    memory, s0 = _start(params, src)
    tick = lambda p, s, y: decoder_step(p, memory, s, y)  # noqa: E731
    return scan_over_time(tick, params, params["tgt_embed"][tgt_in], s0)


def greedy_translate(params: dict, src: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Emit ``length`` words, each the most probable given those before.
    ``-> (tokens int[b, length], alpha [b, length, T])``."""
    memory, s0 = _start(params, src)

    def tick(carry, _):
        s, y_prev = carry
        s, (logits, alpha) = decoder_step(params, memory, s, params["tgt_embed"][y_prev])
        y = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (s, y), (y, alpha)

    start = jnp.full((src.shape[0],), BOS, jnp.int32)
    # [length, b], [length, b, T]
    _, (ys, alphas) = jax.lax.scan(tick, (s0, start), None, length=length)
    return ys.T, jnp.swapaxes(alphas, 0, 1)


# --8<-- [end:core]


def init_alignment(key: jax.Array, d_state: int, d_annotation: int, d_align: int) -> dict:
    """``W_a [H, A]``, ``U_a [2H, A]``, ``v_a [A]`` (A.1.2; no biases, as in the paper)."""
    for name, value in (("d_state", d_state), ("d_annotation", d_annotation), ("d_align", d_align)):
        checks.positive_int(name, value)
    k = jax.random.split(key, 3)
    return {
        "w_a": jax.random.normal(k[0], (d_state, d_align)) / jnp.sqrt(d_state),
        "u_a": jax.random.normal(k[1], (d_annotation, d_align)) / jnp.sqrt(d_annotation),
        "v_a": jax.random.normal(k[2], (d_align,)) / jnp.sqrt(d_align),
    }


def init_attention_model(
    key: jax.Array, vocab: int, d_embed: int, d_hidden: int, d_align: int
) -> dict:
    """All parameters: embeddings, two encoder GRUs, ``W_s``, the alignment model, the decoder
    GRU and the readout. ``d_hidden`` is each GRU's size ``H``; annotations have ``2H`` units."""
    _check_sizes(vocab, d_embed, d_hidden, d_align)
    e, h = d_embed, d_hidden
    k = jax.random.split(key, 8)
    return {
        "src_embed": jax.random.normal(k[0], (vocab, e)),  # [V, E]
        "tgt_embed": jax.random.normal(k[1], (vocab, e)),
        "forward": init_gru(k[2], e, h),
        "backward": init_gru(k[3], e, h),
        "init": init_layer(k[4], h, h),  # W_s: h_back_1 -> s_0
        "align": init_alignment(k[5], h, 2 * h, d_align),
        "decoder": init_gru(k[6], e + 2 * h, h),  # reads [y_{i-1}; c_i]
        "readout": init_layer(k[7], h + e + 2 * h, vocab),  # reads [s_i; y_{i-1}; c_i]
    }


def _check_sizes(vocab: int, d_embed: int, d_hidden: int, d_align: int) -> None:
    check_sizes(vocab, d_embed, d_hidden)
    checks.positive_int("d_align", d_align)


# --8<-- [start:loss]
def sequence_loss(params: dict, batch: dict) -> jax.Array:
    """3.5's :func:`~impl.sequence.encoder_decoder.token_loss` of the attention model,
    teacher-forced."""
    return token_loss(attention_model(params, batch["src"], batch["tgt_in"])[0], batch)


# --8<-- [end:loss]


# --8<-- [start:linen]
class LinenAttentionModel(nn.Module):
    """Functional twin:
    ``apply(variables, src, tgt_in) -> (logits [b, T_out, V], alpha [b, T_out, T])``.

    ``variables["params"]`` is `init_attention_model`'s tree, entry for entry.
    """

    vocab: int
    d_embed: int = 16
    d_hidden: int = 32
    d_align: int = 32

    @nn.compact
    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_sizes(self.vocab, self.d_embed, self.d_hidden, self.d_align)
        check_pair(src, tgt_in, self.vocab)
        params = twins.declare(
            self, init_attention_model, self.vocab, self.d_embed, self.d_hidden, self.d_align
        )
        return attention_model(params, src, tgt_in)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxAttentionModel(nnx.Module):
    """Object-oriented twin: ``model(src, tgt_in) -> (logits [b, T_out, V], alpha [b, T_out, T])``.

    One attribute per entry of `init_attention_model`'s tree (``forward``, ``align``, ...), held as
    NNX objects by `impl.twins.to_nnx`.
    """

    def __init__(
        self,
        vocab: int,
        d_embed: int = 16,
        d_hidden: int = 32,
        d_align: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        _check_sizes(vocab, d_embed, d_hidden, d_align)
        self.vocab = vocab
        for name, entry in init_attention_model(
            rngs.params(), vocab, d_embed, d_hidden, d_align
        ).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
        check_pair(src, tgt_in, self.vocab)
        return attention_model(twins.pure(self), src, tgt_in)  # the tree the pure function takes


# --8<-- [end:nnx]
