"""3.5 Encoder–decoder — two gated recurrent networks with one fixed-length vector between them.

Cho, van Merriënboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio, *Learning phrase
representations using RNN encoder–decoder for statistical machine translation*, EMNLP 2014.
https://arxiv.org/abs/1406.1078

The idea: one recurrent network (the *encoder*) reads a variable-length source sequence and
compresses it into a single vector ``c``; a second one (the *decoder*) generates the target
sequence from ``c``, one token at a time, each conditioned on the previous token and on ``c``
(section 2.2). Both are trained jointly to maximise ``log p(target | source)`` (eq. 4). The
paper also introduced the *gated recurrent unit* (GRU, section 2.3, eqs. 5–8): a reset gate
lets the unit drop its past, an update gate lets it keep its past unchanged — an LSTM-like
memory (topic 3.2) with fewer parts.

The limit that made the next topics necessary: everything the decoder knows about the source
must pass through ``c``, whatever the source's length. Cho, van Merriënboer, Bahdanau & Bengio
(2014, *On the properties of neural machine translation: encoder–decoder approaches*) measured
translation quality falling as sentences grow; attention (topic 3.7) removed the bottleneck.

The recurrence runs through :func:`impl.sequence.rnn.scan_over_time` (topic 3.1); the readout
is 1.1's :func:`~impl.deep_networks.dnn.dense`. `LinenEncoderDecoder` and `NnxEncoderDecoder`
hold the tree that `init_encoder_decoder` declares. The toy translation task lives in
`impl.data.translation`, the experiment in `impl.sequence.encoder_decoder_experiment`.

Shapes: token ids ``int32[batch, T]`` with ``PAD = 0`` after the end of each source; the summary
``c`` is ``float32[batch, H]``; logits ``float32[batch, T_out, vocab]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.data.sequences import BOS, FIRST_SYMBOL, PAD
from impl.deep_networks.dnn import dense, init_layer
from impl.sequence.rnn import scan_over_time

__all__ = [
    "GRU_KEYS",
    "LinenEncoderDecoder",
    "NnxEncoderDecoder",
    "check_pair",
    "check_sizes",
    "check_tokens",
    "encode",
    "encoder_decoder",
    "encoder_tick",
    "greedy_decode",
    "gru_inputs",
    "gru_step",
    "gru_update",
    "init_encoder_decoder",
    "init_gru",
    "sequence_loss",
    "token_loss",
]

# the entries of `init_gru`'s tree
GRU_KEYS = ("w_r", "u_r", "b_r", "w_z", "u_z", "b_z", "w_n", "u_n", "b_n")
# The entries of `init_encoder_decoder`'s tree.


# --8<-- [start:core]
def init_gru(key: jax.Array, d_in: int, d_hidden: int, *, candidate_bias: bool = False) -> dict:
    """GRU parameters: input weights ``w_* [d_in, H]``, recurrent ``u_* [H, H]``, biases ``b_* [H]``
    for the reset gate ``r``, the update gate ``z`` and the candidate state ``n``.

    ``candidate_bias=True`` adds ``c_n [H]`` (zeros), a bias on the recurrent part of the candidate,
    ``r * (h U_n + c_n)``: the extra bias of cuDNN, ``flax.linen.GRUCell`` (``hn/bias``) and
    ``torch.nn.GRU`` (``b_hn``), so that their weights load. Cho et al. have none; the topics here
    don't use it.
    """
    checks.positive_int("d_in", d_in)
    checks.positive_int("d_hidden", d_hidden)
    k = jax.random.split(key, 6)
    params = {}
    for i, gate in enumerate("rzn"):
        params[f"w_{gate}"] = jax.random.normal(k[2 * i], (d_in, d_hidden)) / jnp.sqrt(d_in)
        params[f"u_{gate}"] = jax.random.normal(k[2 * i + 1], (d_hidden, d_hidden)) / jnp.sqrt(
            d_hidden
        )
        params[f"b_{gate}"] = jnp.zeros((d_hidden,))
    if candidate_bias:
        params["c_n"] = jnp.zeros((d_hidden,))
    return params


def gru_inputs(params: dict, x: jax.Array) -> jax.Array:
    """The input half of eqs. 5, 6 and 8, biases included, for any number of steps at once.

    ``x [..., d_in] -> [..., 3H]`` (the reset, update and candidate parts side by side). A
    recurrence whose inputs are known in advance computes this for every step in one matrix
    multiply, outside the loop, and leaves only ``h U`` inside it (as cuDNN does).
    """
    w = jnp.concatenate([params["w_r"], params["w_z"], params["w_n"]], axis=1)  # [d_in, 3H]
    b = jnp.concatenate([params["b_r"], params["b_z"], params["b_n"]])  # [3H]
    y = x @ w
    return y + b.reshape((1,) * (y.ndim - 1) + (-1,))  # explicit broadcast over batch (and time)


def gru_update(
    params: dict, h: jax.Array, xp: jax.Array, *, reset_after: bool = False
) -> jax.Array:
    """The recurrent half: one tick from ``h [b, H]`` and its inputs' projections ``xp [b, 3H]``.

    ``reset_after=True`` applies the reset gate after the recurrent matrix,
    ``r * (h U_n)`` instead of ``(r * h) U_n`` — the variant cuDNN and ``flax.linen.GRUCell`` use.
    """
    hidden = h.shape[-1]
    x_r, x_z, x_n = xp[:, :hidden], xp[:, hidden : 2 * hidden], xp[:, 2 * hidden :]  # [b, H] each
    r = jax.nn.sigmoid(x_r + h @ params["u_r"])  # eq. 5: reset gate
    z = jax.nn.sigmoid(x_z + h @ params["u_z"])  # eq. 6: update gate
    hu = h @ params["u_n"] if reset_after else (r * h) @ params["u_n"]  # [b, H]
    if "c_n" in params:  # the recurrent candidate bias (cuDNN, flax, torch), inside the reset
        hu = hu + params["c_n"].reshape(1, -1)
    recurrent = r * hu if reset_after else hu
    n = jnp.tanh(x_n + recurrent)  # eq. 8: candidate state
    return z * h + (1.0 - z) * n  # eq. 7: keep (z -> 1) or replace (z -> 0) each unit


def gru_step(params: dict, h: jax.Array, x: jax.Array, *, reset_after: bool = False) -> jax.Array:
    """One GRU tick, eqs. 5–8 of the paper. ``h [b, H], x [b, d_in] -> h_new [b, H]``."""
    return gru_update(params, h, gru_inputs(params, x), reset_after=reset_after)


def encoder_tick(params: dict, h: jax.Array, xp_and_mask: jax.Array):
    """One encoder step on ``[gru_inputs(x); 1 if a real token else 0]`` (``[b, 3H + 1]``):
    padding leaves ``h`` as it was."""
    xp, keep = xp_and_mask[:, :-1], xp_and_mask[:, -1:]  # [b, 3H], [b, 1]: 1 on real tokens
    h = jnp.where(keep > 0, gru_update(params, h, xp), h)
    return h, h


def encode(params: dict, src: jax.Array) -> jax.Array:
    """The summary vector ``c = tanh(V h_N)`` (section 2.2 and the appendix).
    ``src int[b, T] -> [b, H]``.

    ``h_N`` is the encoder's state after the last real token: ticks on ``PAD`` change nothing.
    """
    emb = params["src_embed"][src]  # [b, T, d_embed]
    keep = (src != PAD).astype(emb.dtype)[..., None]  # [b, T, 1]
    h0 = jnp.zeros((src.shape[0], params["encoder"]["u_r"].shape[0]), emb.dtype)
    xp = gru_inputs(params["encoder"], emb)  # [b, T, 3H]: every step's input projections at once
    hs = scan_over_time(encoder_tick, params["encoder"], jnp.concatenate([xp, keep], axis=-1), h0)
    return jnp.tanh(dense(params["summary"], hs[:, -1]))  # [b, H]


def _decoder_inputs(params: dict, c: jax.Array, y_prev: jax.Array) -> jax.Array:
    """What the decoder sees at each step: the previous target token's embedding and ``c``."""
    emb = params["tgt_embed"][y_prev]  # [b, (T,) d_embed]
    c = c if y_prev.ndim == 1 else jnp.broadcast_to(c[:, None, :], (*y_prev.shape, c.shape[-1]))
    return jnp.concatenate([emb, c], axis=-1)  # [b, (T,) d_embed + H]


def _decoder_tick(params: dict, h: jax.Array, xp: jax.Array):
    h = gru_update(params, h, xp)
    return h, h


def encoder_decoder(params: dict, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
    """Logits of ``p(y_t | y_{<t}, c)`` with the true previous tokens fed in (teacher forcing).

    ``src int[b, T_src]``, ``tgt_in int[b, T_out]`` (``BOS`` then the target shifted right)
    -> logits ``[b, T_out, vocab]``. The decoder starts from ``h'_0 = tanh(V' c)`` and its
    readout sees ``h'_t``, ``y_{t-1}`` and ``c`` (the appendix; the paper's maxout layer is
    left out).
    """
    c = encode(params, src)  # [b, H]
    h0 = jnp.tanh(dense(params["init"], c))  # [b, H]
    xs = _decoder_inputs(params, c, tgt_in)  # [b, T_out, d_embed + H]
    xp = gru_inputs(params["decoder"], xs)  # [b, T_out, 3H]: known in advance under teacher forcing
    hs = scan_over_time(_decoder_tick, params["decoder"], xp, h0)  # [b, T_out, H]
    return dense(params["readout"], jnp.concatenate([hs, xs], axis=-1))  # [b, T_out, vocab]


def greedy_decode(params: dict, src: jax.Array, length: int) -> jax.Array:
    """Generate ``length`` tokens, each the most probable given the ones before.
    ``-> int[b, length]``."""
    c = encode(params, src)
    h0 = jnp.tanh(dense(params["init"], c))

    def tick(carry, _):
        h, y_prev = carry
        x = _decoder_inputs(params, c, y_prev)  # [b, d_embed + H]
        h = gru_step(params["decoder"], h, x)
        y = jnp.argmax(dense(params["readout"], jnp.concatenate([h, x], axis=-1)), axis=-1)
        return (h, y.astype(jnp.int32)), y

    start = jnp.full((src.shape[0],), BOS, jnp.int32)
    _, ys = jax.lax.scan(tick, (h0, start), None, length=length)  # [length, b]
    return ys.T.astype(jnp.int32)


# --8<-- [end:core]


def init_encoder_decoder(key: jax.Array, vocab: int, d_embed: int, d_hidden: int) -> dict:
    """All parameters: two embedding tables, the two GRUs and three dense layers."""
    check_sizes(vocab, d_embed, d_hidden)
    k = jax.random.split(key, 7)
    return {
        "src_embed": jax.random.normal(k[0], (vocab, d_embed)),  # [V, d_embed]
        "tgt_embed": jax.random.normal(k[1], (vocab, d_embed)),
        "encoder": init_gru(k[2], d_embed, d_hidden),
        "summary": init_layer(k[3], d_hidden, d_hidden),  # V: h_N -> c
        "init": init_layer(k[4], d_hidden, d_hidden),  # V': c -> h'_0
        "decoder": init_gru(k[5], d_embed + d_hidden, d_hidden),
        "readout": init_layer(k[6], 2 * d_hidden + d_embed, vocab),
    }


def check_sizes(vocab: int, d_embed: int, d_hidden: int) -> None:
    checks.positive_int("vocab", vocab)
    if vocab <= FIRST_SYMBOL:
        raise ValueError(
            f"vocab: expected more than the {FIRST_SYMBOL} "
            f"reserved ids (PAD, BOS, EOS, SEP), got {vocab}"
        )
    checks.positive_int("d_embed", d_embed)
    checks.positive_int("d_hidden", d_hidden)


def check_tokens(name: str, tokens, vocab: int) -> None:
    """``tokens`` must be integer ids ``[batch, T]`` in ``[0, vocab)`` (checked on concrete
    arrays)."""
    checks.array_shape(name, tokens, ("batch", "time"), dims="[batch, time] of token ids")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {tokens.dtype}")
    if tokens.shape[1] == 0:
        raise ValueError(
            f"{name}: expected at least one time step, got shape {tuple(tokens.shape)}"
        )
    if not isinstance(tokens, jax.core.Tracer):
        low, high = int(jnp.min(tokens)), int(jnp.max(tokens))
        if low < 0 or high >= vocab:
            raise ValueError(
                f"{name}: expected token ids in [0, {vocab}), got values in [{low}, {high}]"
            )


def check_pair(src, tgt_in, vocab: int) -> None:
    check_tokens("src", src, vocab)
    check_tokens("tgt_in", tgt_in, vocab)
    if src.shape[0] != tgt_in.shape[0]:
        raise ValueError(
            f"tgt_in: expected batch {src.shape[0]} (as src), got shape {tuple(tgt_in.shape)}"
        )


# --8<-- [start:loss]
def token_loss(logits: jax.Array, batch: dict) -> jax.Array:
    """Mean cross-entropy of every target token and the final ``EOS`` (eq. 4), padding masked out.

    ``logits [b, T + 1, V]`` against ``batch["tgt_out"] int[b, T + 1]``.
    """
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["tgt_out"][..., None], axis=-1)[
        ..., 0
    ]
    mask = (batch["tgt_out"] != PAD).astype(logp.dtype)  # the target words and EOS
    return -jnp.sum(logp * mask) / jnp.sum(mask)


def sequence_loss(params: dict, batch: dict) -> jax.Array:
    """:func:`token_loss` of the encoder–decoder, teacher-forced: minus eq. 4's ``log p(y | x)`` per
    token."""
    return token_loss(encoder_decoder(params, batch["src"], batch["tgt_in"]), batch)


# --8<-- [end:loss]


# --8<-- [start:linen]
class LinenEncoderDecoder(nn.Module):
    """Functional twin: ``apply(variables, src, tgt_in) -> logits [b, T_out, vocab]``.

    ``variables["params"]`` is `init_encoder_decoder`'s tree, entry for entry.
    """

    vocab: int
    d_embed: int = 16
    d_hidden: int = 64

    @nn.compact
    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_sizes(self.vocab, self.d_embed, self.d_hidden)
        check_pair(src, tgt_in, self.vocab)
        params = twins.declare(self, init_encoder_decoder, self.vocab, self.d_embed, self.d_hidden)
        return encoder_decoder(params, src, tgt_in)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxEncoderDecoder(nnx.Module):
    """Object-oriented twin: ``model(src, tgt_in) -> logits [b, T_out, vocab]``.

    One attribute per entry of `init_encoder_decoder`'s tree (``src_embed``, ``encoder``, ...),
    held as NNX objects by `impl.twins.to_nnx`.
    """

    def __init__(self, vocab: int, d_embed: int = 16, d_hidden: int = 64, *, rngs: nnx.Rngs):
        check_sizes(vocab, d_embed, d_hidden)
        self.vocab = vocab
        for name, entry in init_encoder_decoder(rngs.params(), vocab, d_embed, d_hidden).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_pair(src, tgt_in, self.vocab)
        return encoder_decoder(twins.pure(self), src, tgt_in)  # the tree the pure function takes


# --8<-- [end:nnx]
