"""4.1 Transformer — no recurrence: every position reads every other position at once.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin, *Attention is all you
need*, NeurIPS 2017. https://arxiv.org/abs/1706.03762

The idea: topic 3.7's decoder attends over the source, but its encoder and decoder are still
recurrent, so step ``t`` waits for step ``t - 1``. The Transformer keeps only the attention.
Each position asks a *query* of every position's *key* and reads a mix of their *values*
(scaled dot-product attention, eq. 1), in ``H`` heads side by side, each with its own
projections (multi-head attention, section 3.2.2). Order enters through sinusoids added to the
embeddings (section 3.5), and a position-wise feed-forward net (eq. 2) follows every attention.
Each sub-layer sits on a residual connection with a layer norm. Nothing runs along time: a
whole sentence is one batch of matrix products, and a decoder is kept from peeking at later
words only by a *mask*.

Layout: pure functions hold the math — masks, `attention_weights` and `dot_product_attention`
(eq. 1), the projections and `self_attention`/`cross_attention`, `feed_forward` (eq. 2), the
encoder and decoder layers, `init_stack`/`run_stack` (per-layer parameters stacked ``[L, ...]``
and run by ``lax.scan``, so compile time does not grow with depth), `sinusoidal_positions`,
`embed`, the encoder-decoder `transformer` and `smoothed_cross_entropy` (label smoothing,
section 5.4). One frozen `TransformerConfig` holds the sizes. `LinenSelfAttention` /
`NnxSelfAttention` and `LinenTransformer` / `NnxTransformer` hold the trees the ``init_*``
functions declare. Layer norm comes from topic 2.6, GELU from 2.7, ReLU from 2.2, the dense
layer's initialisation scale from 1.1. The experiment lives in
`impl.transformers.transformer_experiment`.

Shapes (einsum letters as in CONTRIBUTING.md): activations ``[B, T, D]``; queries, keys and
values ``[B, T, H, K]`` with ``K = D / H``; attention weights ``[B, H, T, S]``; masks boolean,
``True`` = may attend, broadcastable to ``[B, H, T, S]``; token ids ``int[B, T]``; logits
``[B, T, V]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins
from impl.data.vocab import BOS, PAD
from impl.optimization.gelu import gelu
from impl.optimization.layer_norm import init_layer_norm, layer_norm
from impl.optimization.relu import relu

__all__ = [
    "ACTIVATIONS",
    "LinenSelfAttention",
    "LinenTransformer",
    "NnxSelfAttention",
    "NnxTransformer",
    "PyTree",
    "TransformerConfig",
    "attention_maps",
    "attention_weights",
    "causal_mask",
    "check_tokens",
    "cross_attention",
    "decode",
    "decoder_layer",
    "dot_product_attention",
    "embed",
    "encode",
    "encoder_layer",
    "feed_forward",
    "final_norm",
    "greedy_translate",
    "init_cross_attention",
    "init_decoder_layer",
    "init_encoder_layer",
    "init_feed_forward",
    "init_self_attention",
    "init_stack",
    "init_transformer",
    "padding_mask",
    "prefix_lm_mask",
    "project_out",
    "project_qkv",
    "run_stack",
    "self_attention",
    "sinusoidal_positions",
    "smoothed_cross_entropy",
    "sublayer",
    "transformer",
]

PyTree = dict

#: The feed-forward non-linearities: the paper's ReLU (2.2), and GELU exact or tanh form (2.7).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": relu,
    "gelu": lambda x: gelu(x, approximate=False),
    "gelu_tanh": lambda x: gelu(x, approximate=True),
}


@dataclass(frozen=True)
class TransformerConfig:
    """The sizes of one Transformer, validated once (a wrong field raises naming it).

    ``pre_ln=False`` is the paper's post-LN wiring ``LN(x + f(x))`` (section 3.1);
    ``pre_ln=True`` is GPT-2's ``x + f(LN(x))``. The paper's base model is
    ``d_model=512, n_heads=8, d_ff=2048, n_layers=6`` (table 3).
    """

    vocab_size: int
    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int
    max_len: int
    pre_ln: bool = False
    activation: str = "relu"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len"):
            checks.positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads: expected a divisor of d_model={self.d_model}, got {self.n_heads}"
            )
        if not isinstance(self.pre_ln, bool):
            raise TypeError(f"pre_ln: expected True or False, got {self.pre_ln!r}")
        checks.one_of("activation", self.activation, ACTIVATIONS)
        checks.in_range("ln_eps", self.ln_eps, 0.0, float("inf"), low_inclusive=False)

    @property
    def d_head(self) -> int:
        """``K = d_model / n_heads``, the width of one head (the paper's ``d_k = d_v``)."""
        return self.d_model // self.n_heads


# --8<-- [start:masks]
def causal_mask(t: int, s: int | None = None) -> jax.Array:
    """Query ``i`` may see key ``j <= i``: ``bool[1, 1, T, S]`` (section 3.2.3, "masking out").

    With ``s > t`` the ``t`` queries are the *last* ``t`` of ``s`` positions (decoding with a
    cache of ``s - t`` earlier keys), so query ``i`` sees keys ``j <= s - t + i``.
    """
    t = checks.positive_int("t", t)
    s = t if s is None else checks.positive_int("s", s)
    if s < t:
        raise ValueError(f"s: expected at least t={t} keys, got {s}")
    query = jnp.arange(t).reshape(-1, 1) + (s - t)  # [T, 1]: each query's absolute position
    return (jnp.arange(s).reshape(1, -1) <= query).reshape(1, 1, t, s)  # [1, 1, T, S]


def padding_mask(tokens: jax.Array, pad_id: int = PAD) -> jax.Array:
    """No query may see a padding key: ``tokens int[B, S] -> bool[B, 1, 1, S]``."""
    _check_tokens("tokens", tokens)
    checks.non_negative_int("pad_id", pad_id)
    return (tokens != pad_id)[:, None, None, :]  # [B, 1, 1, S]


def prefix_lm_mask(t: int, prefix_len) -> jax.Array:
    """Prefix-LM: the first ``prefix_len`` positions are seen by every query, the rest causally.

    ``prefix_len`` is an int (-> ``bool[1, 1, T, T]``) or ``int[B]`` (-> ``bool[B, 1, T, T]``).
    """
    t = checks.positive_int("t", t)
    if isinstance(prefix_len, int | np.integer):
        checks.in_range("prefix_len", int(prefix_len), 0, t)
        prefix = jnp.full((1,), int(prefix_len))  # [1]
    else:
        checks.array_shape("prefix_len", prefix_len, ["batch"], dims="[batch]")
        if not jnp.issubdtype(prefix_len.dtype, jnp.integer):
            raise TypeError(f"prefix_len: expected integers, got {prefix_len.dtype}")
        prefix = prefix_len
    key = jnp.arange(t).reshape(1, 1, 1, t)  # [1, 1, 1, S]
    return causal_mask(t) | (key < prefix.reshape(-1, 1, 1, 1))  # [B|1, 1, T, T]


# --8<-- [end:masks]


# --8<-- [start:attention]
def attention_weights(q: jax.Array, k: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Eq. 1's weights, ``softmax(q k^T / sqrt(K))`` over the keys: ``[B, H, T, S]``.

    ``q [B, T, H, K]``, ``k [B, S, H, K]``, ``mask`` broadcastable to ``[B, H, T, S]``.

    Keys the mask forbids get weight exactly 0; a query with *no* allowed key gets a row of
    zeros (not the 0/0 = NaN of a softmax over nothing), and finite gradients.
    """
    _check_qk(q, k)
    if mask is not None:
        _check_mask(mask, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
    scores = jnp.einsum("BTHK,BSHK->BHTS", q, k) / math.sqrt(q.shape[-1])  # [B, H, T, S], eq. 1
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    lowest = jnp.finfo(scores.dtype).min  # finite: an all-masked row stays finite, uniform ...
    weights = jax.nn.softmax(jnp.where(mask, scores, lowest), axis=-1)  # [B, H, T, S]
    return jnp.where(mask, weights, 0.0)  # ... and is then zeroed, as are all forbidden keys


def dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Eq. 1, ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V``, every head at once.

    ``q [B, T, H, K]``, ``k, v [B, S, H, K]``, ``mask`` broadcastable to ``[B, H, T, S]`` ->
    ``[B, T, H, K]``: each query's mix of the values.
    """
    if not hasattr(v, "shape") or v.shape != k.shape:
        raise ValueError(
            f"v: expected the shape of k, {tuple(k.shape)}, got {getattr(v, 'shape', type(v))}"
        )
    weights = attention_weights(q, k, mask)  # [B, H, T, S]
    return jnp.einsum("BHTS,BSHK->BTHK", weights, v)  # [B, T, H, K]


def project_qkv(params_qkv: PyTree, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x W_i^Q, x W_i^K, x W_i^V`` for all heads ``i`` in one einsum (section 3.2.2).

    ``params_qkv = {"kernel": [D, 3, H, K], "bias": [3, H, K]}``;
    ``x [B, T, D]`` -> three ``[B, T, H, K]``.
    """
    _check_input("x", x, params_qkv["kernel"].shape[0])
    qkv = jnp.einsum("BTD,DCHK->CBTHK", x, params_qkv["kernel"])  # [3, B, T, H, K]
    qkv = qkv + params_qkv["bias"][:, None, None]  # bias [3, 1, 1, H, K]
    return qkv[0], qkv[1], qkv[2]


def project_out(params_out: PyTree, o: jax.Array) -> jax.Array:
    """``Concat(head_1, ..., head_H) W^O``: ``o [B, T, H, K]`` -> ``[B, T, D]`` (section 3.2.2)."""
    y = jnp.einsum(
        "BTHK,HKD->BTD", o, params_out["kernel"]
    )  # the concat and W^O in one contraction
    return y + params_out["bias"].reshape(1, 1, -1)


def self_attention(
    params: PyTree, x: jax.Array, mask: jax.Array | None = None, *, return_weights: bool = False
):
    """Multi-head self-attention: queries, keys and values from ``x [B, T, D]`` -> ``[B, T, D]``.

    With ``return_weights=True``, also the weights ``[B, H, T, T]`` (for heatmaps).
    """
    q, k, v = project_qkv(params["qkv"], x)  # three [B, T, H, K]
    weights = attention_weights(q, k, mask)  # [B, H, T, T]
    out = project_out(params["out"], jnp.einsum("BHTS,BSHK->BTHK", weights, v))  # eq. 1, then W^O
    return (out, weights) if return_weights else out


def cross_attention(
    params: PyTree,
    x: jax.Array,
    memory: jax.Array,
    mask: jax.Array | None = None,
    *,
    return_weights: bool = False,
):
    """Encoder-decoder attention (section 3.2.3): queries from ``x [B, T, D]``, keys and values
    from the encoder's output ``memory [B, S, D]`` -> ``[B, T, D]`` (and the weights
    ``[B, H, T, S]`` with ``return_weights=True``)."""
    d = params["q"]["kernel"].shape[0]
    _check_input("x", x, d)
    _check_input("memory", memory, d)
    if memory.shape[0] != x.shape[0]:
        raise ValueError(f"memory: expected batch {x.shape[0]} (that of x), got {memory.shape[0]}")
    q = jnp.einsum("BTD,DHK->BTHK", x, params["q"]["kernel"]) + params["q"]["bias"][None, None]
    kv = jnp.einsum("BSD,DCHK->CBSHK", memory, params["kv"]["kernel"])  # [2, B, S, H, K]
    k, v = kv + params["kv"]["bias"][:, None, None]  # each [B, S, H, K]
    weights = attention_weights(q, k, mask)  # [B, H, T, S]
    out = project_out(params["out"], jnp.einsum("BHTS,BSHK->BTHK", weights, v))
    return (out, weights) if return_weights else out


# --8<-- [end:attention]


# --8<-- [start:ffn]
def feed_forward(params: PyTree, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Eq. 2, ``FFN(x) = max(0, x W_1 + b_1) W_2 + b_2``, the same at every position.

    ``params = {"hidden": {"kernel": [D, F], "bias": [F]},
    "out": {"kernel": [F, D], "bias": [D]}}``; ``x [B, T, D]`` -> ``[B, T, D]``;
    ``activation`` is ``"relu"`` (the paper) or a GELU.
    """
    checks.one_of("activation", activation, ACTIVATIONS)
    _check_input("x", x, params["hidden"]["kernel"].shape[0])
    h = jnp.einsum("BTD,DF->BTF", x, params["hidden"]["kernel"]) + params["hidden"]["bias"].reshape(
        1, 1, -1
    )
    h = ACTIVATIONS[activation](h)  # [B, T, F]
    return jnp.einsum("BTF,FD->BTD", h, params["out"]["kernel"]) + params["out"]["bias"].reshape(
        1, 1, -1
    )


# --8<-- [end:ffn]


# --8<-- [start:layers]
def sublayer(
    f: Callable[[jax.Array], jax.Array], x: jax.Array, ln: PyTree, config: TransformerConfig
) -> jax.Array:
    """One residual sub-layer (topic 2.3's shortcut ``x + F(x)``) with a layer norm (topic 2.6).

    Post-LN, the paper's ``LayerNorm(x + Sublayer(x))`` (section 3.1), or pre-LN, GPT-2's
    ``x + Sublayer(LayerNorm(x))``, which leaves the residual stream itself un-normalised.
    """
    norm = lambda h: layer_norm(h, ln["scale"], ln["bias"], epsilon=config.ln_eps)  # noqa: E731
    return x + f(norm(x)) if config.pre_ln else norm(x + f(x))


def _ffn(config: TransformerConfig, ffn: Callable | None) -> Callable:
    return ffn if ffn is not None else (lambda p, h: feed_forward(p, h, config.activation))


def encoder_layer(
    params: PyTree,
    x: jax.Array,
    mask: jax.Array | None,
    config: TransformerConfig,
    *,
    ffn=None,
    return_weights: bool = False,
):
    """One encoder layer (section 3.1): self-attention, then the feed-forward net, each a sublayer.

    ``params = {"attn", "ln1", "ffn", "ln2"}``; ``x [B, T, D]`` -> ``[B, T, D]``. ``ffn`` replaces
    eq. 2 by any ``(params["ffn"], h [B, T, D]) -> [B, T, D]`` (a mixture of experts, topic 3.8).
    ``return_weights=True`` also returns the attention weights ``[B, H, T, T]``.
    """
    _check_config(config)
    seen = {}  # the weights, caught on their way through the sub-layer

    def attend(h):
        out, seen["self"] = self_attention(params["attn"], h, mask, return_weights=True)
        return out

    x = sublayer(attend, x, params["ln1"], config)
    x = sublayer(lambda h: _ffn(config, ffn)(params["ffn"], h), x, params["ln2"], config)
    return (x, seen["self"]) if return_weights else x


def decoder_layer(
    params: PyTree,
    x: jax.Array,
    memory: jax.Array,
    self_mask: jax.Array | None,
    cross_mask: jax.Array | None,
    config: TransformerConfig,
    *,
    ffn=None,
    return_weights: bool = False,
):
    """One decoder layer (section 3.1): masked self-attention, attention over the encoder's
    output ``memory [B, S, D]``, then the feed-forward net. ``x [B, T, D]`` -> ``[B, T, D]``.

    ``params = {"self_attn", "ln1", "cross_attn", "ln2", "ffn", "ln3"}``. ``return_weights=True``
    also returns ``{"self": [B, H, T, T], "cross": [B, H, T, S]}``.
    """
    _check_config(config)
    seen = {}

    def attend_self(h):
        out, seen["self"] = self_attention(params["self_attn"], h, self_mask, return_weights=True)
        return out

    def attend_memory(h):
        out, seen["cross"] = cross_attention(
            params["cross_attn"], h, memory, cross_mask, return_weights=True
        )
        return out

    x = sublayer(attend_self, x, params["ln1"], config)
    x = sublayer(attend_memory, x, params["ln2"], config)
    x = sublayer(lambda h: _ffn(config, ffn)(params["ffn"], h), x, params["ln3"], config)
    return (x, seen) if return_weights else x


def run_stack(layer: Callable, stacked_params: PyTree, x: jax.Array, *args, **kwargs):
    """``layer`` applied ``L`` times, the ``l``-th time with slice ``l`` of ``stacked_params``.

    One ``lax.scan``: the layer is traced and compiled once, however deep the stack.
    ``x [B, T, D]`` -> ``[B, T, D]``; ``args``/``kwargs`` are passed to every layer unchanged.
    A layer that returns ``(x, extra)`` gives ``(x, extra stacked [L, ...])``.
    """
    depths = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(stacked_params)}
    if len(depths) != 1 or None in depths:
        raise ValueError(
            f"stacked_params: expected every leaf to have the same leading [L] axis, got {depths}"
        )

    def step(h, p):
        out = layer(p, h, *args, **kwargs)
        return out if isinstance(out, tuple) else (out, None)

    x, extra = jax.lax.scan(step, x, stacked_params)
    return x if extra is None else (x, extra)


# --8<-- [end:layers]


# --8<-- [start:positions]
def sinusoidal_positions(length: int, d_model: int) -> jax.Array:
    """Section 3.5: ``PE(pos, 2i) = sin(pos / 10000^(2i/D))``, ``PE(pos, 2i+1) = cos(..)``.

    ``length`` positions of width ``d_model`` -> ``[T, D]``.

    Each pair of columns is a clock of its own wavelength, from ``2 pi`` to ``10000 * 2 pi``;
    the encoding of ``pos + k`` is a rotation of that of ``pos``, the same for every ``pos``.
    """
    length = checks.positive_int("length", length)
    d_model = checks.positive_int("d_model", d_model)
    pos = jnp.arange(length, dtype=jnp.float32).reshape(-1, 1)  # [T, 1]
    two_i = jnp.arange(0, d_model, 2, dtype=jnp.float32).reshape(1, -1)  # [1, ceil(D/2)]
    angle = pos / 10000.0 ** (two_i / d_model)  # [T, ceil(D/2)]
    pe = jnp.stack(
        [jnp.sin(angle), jnp.cos(angle)], axis=-1
    )  # [T, ceil(D/2), 2]: sin, cos interleaved
    return pe.reshape(length, -1)[:, :d_model]  # [T, D]


def embed(embedding: jax.Array, tokens: jax.Array) -> jax.Array:
    """Look up ``tokens int[B, T]`` in ``embedding [V, D]`` -> ``[B, T, D]``.

    Ids outside ``[0, V)`` raise (when the ids are concrete; inside ``jit`` they cannot be
    inspected, and JAX would silently clamp them).
    """
    checks.array_shape("embedding", embedding, ["vocab", "d_model"], dims="[vocab, d_model]")
    _check_tokens("tokens", tokens, embedding.shape[0])
    return jnp.take(embedding, tokens, axis=0)  # [B, T, D]


# --8<-- [end:positions]


# --8<-- [start:model]
def _inputs(params: PyTree, tokens: jax.Array, config: TransformerConfig) -> jax.Array:
    """Embeddings times ``sqrt(D)`` (section 3.4) plus sinusoids (section 3.5): ``[B, T, D]``."""
    x = embed(params["embed"], tokens) * math.sqrt(config.d_model)
    return x + sinusoidal_positions(tokens.shape[1], config.d_model)[None]


def encode(params: PyTree, src: jax.Array, config: TransformerConfig) -> jax.Array:
    """The encoder: ``src int[B, S]`` -> ``memory [B, S, D]`` (padding keys masked)."""
    check_tokens("src", src, config, ids=False)
    x = run_stack(
        encoder_layer, params["encoder"], _inputs(params, src, config), padding_mask(src), config
    )
    return final_norm(params, "encoder_ln", x, config)


def decode(
    params: PyTree, memory: jax.Array, src: jax.Array, tgt_in: jax.Array, config: TransformerConfig
) -> jax.Array:
    """The decoder: ``tgt_in int[B, T]`` (``BOS`` + target shifted right) reading
    ``memory [B, S, D]`` -> logits ``[B, T, V]``, through the embedding matrix shared with the
    input (section 3.4)."""
    check_tokens("tgt_in", tgt_in, config, ids=False)
    self_mask = causal_mask(tgt_in.shape[1]) & padding_mask(tgt_in)  # [B, 1, T, T]: no peeking
    x = _inputs(params, tgt_in, config)
    x = run_stack(decoder_layer, params["decoder"], x, memory, self_mask, padding_mask(src), config)
    x = final_norm(params, "decoder_ln", x, config)
    return jnp.einsum("BTD,VD->BTV", x, params["embed"])  # [B, T, V]


def attention_maps(
    params: PyTree, src: jax.Array, tgt_in: jax.Array, config: TransformerConfig
) -> dict[str, jax.Array]:
    """Every head's weights, teacher-forced: ``{"encoder": [L, B, H, S, S],
    "decoder_self": [L, B, H, T, T], "cross": [L, B, H, T, S]}``."""
    check_tokens("src", src, config, ids=False)
    check_tokens("tgt_in", tgt_in, config, ids=False)
    x = _inputs(params, src, config)
    x, enc = run_stack(
        encoder_layer, params["encoder"], x, padding_mask(src), config, return_weights=True
    )
    memory = final_norm(params, "encoder_ln", x, config)
    self_mask = causal_mask(tgt_in.shape[1]) & padding_mask(tgt_in)
    x = _inputs(params, tgt_in, config)
    _, dec = run_stack(
        decoder_layer, params["decoder"], x, memory, self_mask, padding_mask(src), config,
        return_weights=True,
    )  # fmt: skip
    return {"encoder": enc, "decoder_self": dec["self"], "cross": dec["cross"]}


def transformer(
    params: PyTree, src: jax.Array, tgt_in: jax.Array, config: TransformerConfig
) -> jax.Array:
    """The encoder-decoder of figure 1, teacher-forced.

    ``src int[B, S]``, ``tgt_in int[B, T]`` (``BOS`` + target shifted right) -> ``[B, T, V]``.
    """
    _check_config(config)
    return decode(params, encode(params, src, config), src, tgt_in, config)


def greedy_translate(
    params: PyTree, src: jax.Array, length: int, config: TransformerConfig
) -> jax.Array:
    """Emit ``length`` tokens, each the likeliest given the source and those before.

    ``src int[B, S]`` -> ``int[B, length]``.

    The decoder reruns on the growing prefix (no cache): ``length`` steps of ``O(length)`` each.
    """
    length = checks.positive_int("length", length)
    if length > config.max_len:
        raise ValueError(f"length: expected at most max_len={config.max_len}, got {length}")
    memory = encode(params, src, config)
    out = jnp.zeros((src.shape[0], length + 1), jnp.int32).at[:, 0].set(BOS)  # [B, length + 1]

    def tick(out, i):
        logits = decode(
            params, memory, src, out[:, :-1], config
        )  # [B, length, V]; causal: i sees <= i
        return out.at[:, i + 1].set(jnp.argmax(logits[:, i], axis=-1).astype(jnp.int32)), None

    return jax.lax.scan(tick, out, jnp.arange(length))[0][:, 1:]


# --8<-- [end:model]


# --8<-- [start:loss]
def smoothed_cross_entropy(
    logits: jax.Array, labels: jax.Array, smoothing: float, *, mask=None
) -> jax.Array:
    """Cross-entropy against label-smoothed targets (section 5.4; Szegedy et al. 2016, section 7).

    The target puts ``1 - smoothing`` on the label and spreads ``smoothing`` evenly over all
    ``V`` classes: ``q' = (1 - eps) one_hot + eps / V``. ``logits [..., V]``, ``labels int[...]``,
    ``mask bool[...]`` (positions to count; default all) -> the mean over counted positions.
    """
    checks.in_range("smoothing", smoothing, 0.0, 1.0)
    if not hasattr(logits, "shape") or logits.ndim < 1:
        raise ValueError("logits: expected an array of shape [..., vocab]")
    checks.array_shape("labels", labels, logits.shape[:-1], dims=f"{list(logits.shape[:-1])}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels: expected integer class ids, got {labels.dtype}")
    if mask is not None:
        checks.array_shape("mask", mask, labels.shape, dims=f"{list(labels.shape)}")
    logp = jax.nn.log_softmax(logits, axis=-1)  # [..., V]
    nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]  # [...]: the one-hot part
    uniform = -jnp.mean(logp, axis=-1)  # [...]: the uniform part, -1/V sum_v log p_v
    per_token = (1.0 - smoothing) * nll + smoothing * uniform
    if mask is None:
        return jnp.mean(per_token)
    weight = mask.astype(per_token.dtype)
    return jnp.sum(per_token * weight) / jnp.maximum(jnp.sum(weight), 1.0)


# --8<-- [end:loss]


# --8<-- [start:init]
def _dense(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """A kernel drawn from ``N(0, 1 / fan_in)``, the scaling of topic 1.1's dense layer."""
    return jax.random.normal(key, shape) / math.sqrt(fan_in)


def _heads(d_model: int, n_heads: int) -> int:
    d_model = checks.positive_int("d_model", d_model)
    n_heads = checks.positive_int("n_heads", n_heads)
    if d_model % n_heads:
        raise ValueError(f"n_heads: expected a divisor of d_model={d_model}, got {n_heads}")
    return d_model // n_heads


def init_self_attention(key: jax.Array, d_model: int, n_heads: int) -> PyTree:
    """``{"qkv": {"kernel": [D, 3, H, K], "bias": [3, H, K]},
    "out": {"kernel": [H, K, D], "bias": [D]}}``; kernels from ``N(0, 1/D)``, biases zero."""
    k = _heads(d_model, n_heads)
    kq, ko = jax.random.split(key)
    return {
        "qkv": {
            "kernel": _dense(kq, (d_model, 3, n_heads, k), d_model),
            "bias": jnp.zeros((3, n_heads, k)),
        },
        "out": {
            "kernel": _dense(ko, (n_heads, k, d_model), d_model),
            "bias": jnp.zeros((d_model,)),
        },
    }


def init_cross_attention(key: jax.Array, d_model: int, n_heads: int) -> PyTree:
    """``{"q": {"kernel": [D, H, K], "bias": [H, K]}, "kv": {"kernel": [D, 2, H, K],
    "bias": [2, H, K]}, "out": {"kernel": [H, K, D], "bias": [D]}}``."""
    k = _heads(d_model, n_heads)
    kq, kkv, ko = jax.random.split(key, 3)
    return {
        "q": {
            "kernel": _dense(kq, (d_model, n_heads, k), d_model),
            "bias": jnp.zeros((n_heads, k)),
        },
        "kv": {
            "kernel": _dense(kkv, (d_model, 2, n_heads, k), d_model),
            "bias": jnp.zeros((2, n_heads, k)),
        },
        "out": {
            "kernel": _dense(ko, (n_heads, k, d_model), d_model),
            "bias": jnp.zeros((d_model,)),
        },
    }


def init_feed_forward(key: jax.Array, d_model: int, d_ff: int) -> PyTree:
    """``{"hidden": {"kernel": [D, F], "bias": [F]}, "out": {"kernel": [F, D], "bias": [D]}}``."""
    d_model = checks.positive_int("d_model", d_model)
    d_ff = checks.positive_int("d_ff", d_ff)
    kh, ko = jax.random.split(key)
    return {
        "hidden": {"kernel": _dense(kh, (d_model, d_ff), d_model), "bias": jnp.zeros((d_ff,))},
        "out": {"kernel": _dense(ko, (d_ff, d_model), d_ff), "bias": jnp.zeros((d_model,))},
    }


def init_encoder_layer(key: jax.Array, config: TransformerConfig) -> PyTree:
    """``{"attn", "ln1", "ffn", "ln2"}``: self-attention, feed-forward net and their layer norms."""
    _check_config(config)
    ka, kf = jax.random.split(key)
    d = config.d_model
    return {
        "attn": init_self_attention(ka, d, config.n_heads),
        "ln1": init_layer_norm(d),
        "ffn": init_feed_forward(kf, d, config.d_ff),
        "ln2": init_layer_norm(d),
    }


def init_decoder_layer(key: jax.Array, config: TransformerConfig) -> PyTree:
    """``{"self_attn", "ln1", "cross_attn", "ln2", "ffn", "ln3"}``."""
    _check_config(config)
    ks, kc, kf = jax.random.split(key, 3)
    d = config.d_model
    return {
        "self_attn": init_self_attention(ks, d, config.n_heads),
        "ln1": init_layer_norm(d),
        "cross_attn": init_cross_attention(kc, d, config.n_heads),
        "ln2": init_layer_norm(d),
        "ffn": init_feed_forward(kf, d, config.d_ff),
        "ln3": init_layer_norm(d),
    }


def init_stack(init_layer: Callable, key: jax.Array, n_layers: int, *args) -> PyTree:
    """``n_layers`` independent draws of ``init_layer(key, *args)``, stacked: leaves ``[L, ..]``."""
    n_layers = checks.positive_int("n_layers", n_layers)
    keys = jax.random.split(checks.prng_key("key", key), n_layers)  # [L] keys
    return jax.vmap(lambda k: init_layer(k, *args))(keys)


def init_transformer(key: jax.Array, config: TransformerConfig) -> PyTree:
    """The encoder-decoder: ``{"embed": [V, D], "encoder": [L, ...], "decoder": [L, ...]}``, plus
    the final ``"encoder_ln"``/``"decoder_ln"`` when ``pre_ln`` (a pre-LN stack ends un-normalised).

    One embedding serves source, target and the output layer (section 3.4), drawn from
    ``N(0, 1/D)`` so that, times ``sqrt(D)``, its rows have unit-size entries.
    """
    _check_config(config)
    ke, kenc, kdec = jax.random.split(checks.prng_key("key", key), 3)
    params = {
        "embed": _dense(ke, (config.vocab_size, config.d_model), config.d_model),
        "encoder": init_stack(init_encoder_layer, kenc, config.n_layers, config),
        "decoder": init_stack(init_decoder_layer, kdec, config.n_layers, config),
    }
    if config.pre_ln:
        params |= {
            "encoder_ln": init_layer_norm(config.d_model),
            "decoder_ln": init_layer_norm(config.d_model),
        }
    return params


# --8<-- [end:init]


# --8<-- [start:linen]
class LinenSelfAttention(nn.Module):
    """Functional twin of `self_attention`: ``apply(variables, x [B, T, D], mask) -> [B, T, D]``.

    ``variables["params"]`` is `init_self_attention`'s tree: ``{"qkv", "out"}``.
    """

    d_model: int
    n_heads: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        params = twins.declare(self, init_self_attention, self.d_model, self.n_heads)
        return self_attention(params, x, mask)


class LinenTransformer(nn.Module):
    """Functional twin of `transformer`: ``apply(variables, src, tgt_in) -> [B, T, V]``.

    ``variables["params"]`` is `init_transformer`'s tree: ``{"embed", "encoder", "decoder"}``.
    """

    config: TransformerConfig

    @nn.compact
    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        _check_config(self.config)
        params = twins.declare(self, init_transformer, self.config)
        return transformer(params, src, tgt_in, self.config)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxSelfAttention(nnx.Module):
    """Object-oriented twin of `self_attention`: ``model(x [B, T, D], mask) -> [B, T, D]``.

    Attributes ``qkv`` and ``out``, the entries of `init_self_attention`'s tree, as NNX objects.
    """

    def __init__(self, d_model: int, n_heads: int, *, rngs: nnx.Rngs):
        for name, entry in init_self_attention(rngs.params(), d_model, n_heads).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return self_attention(twins.pure(self), x, mask)  # the tree the pure function takes


class NnxTransformer(nnx.Module):
    """Object-oriented twin of `transformer`: ``model(src [B, S], tgt_in [B, T]) -> [B, T, V]``.

    One attribute per entry of `init_transformer`'s tree (``embed``, ``encoder``, ``decoder``).
    """

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        _check_config(config)
        self.config = config
        for name, entry in init_transformer(rngs.params(), config).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        return transformer(twins.pure(self), src, tgt_in, self.config)


# --8<-- [end:nnx]


def final_norm(params: PyTree, name: str, x: jax.Array, config: TransformerConfig) -> jax.Array:
    """The layer norm ``params[name]`` that closes a pre-LN stack; post-LN stacks end normalised."""
    if not config.pre_ln:
        return x
    return layer_norm(x, params[name]["scale"], params[name]["bias"], epsilon=config.ln_eps)


# ---- argument checks (before any compute) ----
def _check_config(config: Any) -> None:
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")


def _check_input(name: str, x: Any, d_model: int) -> None:
    checks.array_shape(name, x, ["batch", "seq", d_model], dims=f"[batch, seq, d_model={d_model}]")


def _check_qk(q: Any, k: Any) -> None:
    checks.array_shape(
        "q", q, ["batch", "seq", "heads", "head_size"], dims="[batch, T, heads, head_size]"
    )
    b, _, h, d = q.shape
    checks.array_shape("k", k, [b, "S", h, d], dims=f"[batch={b}, S, heads={h}, head_size={d}]")


def _check_mask(mask: Any, shape: tuple[int, int, int, int]) -> None:
    """``mask`` must be boolean and broadcastable to ``[B, H, T, S]`` = ``shape``, with rank 4."""
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(f"mask: expected a boolean array, got {type(mask).__name__}")
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"mask: expected a boolean array (True = may attend), got dtype {mask.dtype}"
        )
    if mask.ndim != 4 or any(m not in (1, n) for m, n in zip(mask.shape, shape)):
        raise ValueError(
            f"mask: expected a shape broadcastable to [B, H, T, S] = {list(shape)}, "
            f"got {tuple(mask.shape)}"
        )


def _check_tokens(name: str, tokens: Any, vocab_size: int | None = None) -> None:
    checks.array_shape(name, tokens, ["batch", "seq"], dims="[batch, seq]")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {tokens.dtype}")
    if vocab_size is not None:
        _check_ids(name, tokens, vocab_size)


def _check_ids(name: str, tokens: Any, vocab_size: int) -> None:
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
        ids = np.asarray(tokens)  # concrete: read on the host, nothing is traced
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name}: expected ids in [0, {vocab_size}), got ids from {low} to {high}"
            )


def check_tokens(name: str, tokens: Any, config: TransformerConfig, *, ids: bool = True) -> None:
    """``tokens`` must be ``int[B, T]`` with ``T <= config.max_len`` and, with ``ids``, ids in
    ``[0, vocab_size)`` (checked when concrete: inside ``jit`` they cannot be read)."""
    _check_config(config)
    _check_tokens(name, tokens)
    if tokens.shape[1] > config.max_len:
        raise ValueError(
            f"{name}: expected at most max_len={config.max_len} positions, got {tokens.shape[1]}"
        )
    if ids:
        _check_ids(name, tokens, config.vocab_size)
