"""4.5 GPT-2 — one decoder-only Transformer, trained only to predict the next token.

Radford, Wu, Child, Luan, Amodei & Sutskever, *Language Models are Unsupervised Multitask
Learners*, OpenAI report (2019).
https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf

The idea: drop topic 4.1's encoder and cross-attention and keep a stack of masked
self-attention layers. Trained on a large corpus to predict each token from those before it,
such a model picks up tasks that the text only shows implicitly (translation pairs, questions and
answers, summaries after "TL;DR:") and can be asked to do them *zero-shot*, by writing a prompt.
The architecture is GPT-1's (Radford et al. 2018) with three changes (section 2.3): the layer
norm moves to the *input* of each sub-layer (pre-LN, ``x + f(LN(x))``) and one more follows the
last layer; the residual projections start scaled by ``1/sqrt(N)`` for ``N = 2L`` residual
sub-layers; and the context grows to 1,024 tokens. Positions are learned vectors, and the output
layer is the transposed token embedding (tied weights).

Layout: 4.1 gives the layer (`encoder_layer` with a causal mask and ``pre_ln=True``), the
attention pieces and the stack (`init_stack`/`run_stack`); 2.6 the layer norm, 2.7 GELU in its
tanh form. Here: `GPT2Config` and the four published sizes (`CONFIGS`), the GPT-2 initialisation
(`init_gpt2`), `logits`, `lm_loss`, incremental decoding with a key/value cache (`init_cache`,
`decode_step`), sampling with temperature, top-k and top-p (`filter_logits`, `generate`), and a
loader for Hugging Face's checkpoints (`read_safetensors`, `from_huggingface`). `LinenGPT2` and
`NnxGPT2` hold the tree `init_gpt2` declares. The experiment lives in
`impl.transformers.gpt2_experiment`.

Shapes (CONTRIBUTING.md's letters): tokens ``int[B, T]``, ``T <= max_len``; activations
``[B, T, D]``; logits ``[B, T, V]``; the cache ``{"k", "v"}`` each ``[L, B, S, H, K]``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins
from impl.optimization.layer_norm import init_layer_norm
from impl.transformers.transformer import (
    TransformerConfig,
    causal_mask,
    dot_product_attention,
    encoder_layer,
    feed_forward,
    final_norm,
    init_stack,
    project_out,
    project_qkv,
    run_stack,
    sublayer,
)
from impl.transformers.transformer import check_tokens as transformer_check_tokens

__all__ = [
    "CONFIGS",
    "PUBLISHED_PARAMETERS",
    "GPT2Config",
    "LinenGPT2",
    "NnxGPT2",
    "check_tokens",
    "count_parameters",
    "decode_step",
    "filter_logits",
    "from_huggingface",
    "generate",
    "init_block",
    "init_cache",
    "init_gpt2",
    "lm_loss",
    "logits",
    "read_safetensors",
]

PyTree = dict


@dataclass(frozen=True)
class GPT2Config:
    """The sizes of one GPT-2, validated once; the defaults are the smallest published model.

    The fields mirror 4.1's `TransformerConfig` (`transformer` gives it), with GPT-2's defaults:
    pre-LN, GELU in its tanh form, ``d_ff = 4 d_model``. ``pre_ln=False`` is the original
    post-LN wiring, kept for the comparison of Xiong et al. (2020).
    """

    vocab_size: int = 50257
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    max_len: int = 1024
    d_ff: int | None = None  # None: 4 * d_model
    pre_ln: bool = True
    activation: str = "gelu_tanh"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_ff is None:
            checks.positive_int("d_model", self.d_model)
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        self.transformer  # noqa: B018 -- validates every field, naming the wrong one

    @property
    def transformer(self) -> TransformerConfig:
        """The same sizes as 4.1's config, which its layer functions take."""
        return TransformerConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
            n_layers=self.n_layers,
            max_len=self.max_len,
            pre_ln=self.pre_ln,
            activation=self.activation,
            ln_eps=self.ln_eps,
        )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


# The four released models (section 2.3, table 2; sizes as in the released checkpoints).
CONFIGS = {
    "gpt2": GPT2Config(d_model=768, n_heads=12, n_layers=12),
    "gpt2-medium": GPT2Config(d_model=1024, n_heads=16, n_layers=24),
    "gpt2-large": GPT2Config(d_model=1280, n_heads=20, n_layers=36),
    "gpt2-xl": GPT2Config(d_model=1600, n_heads=25, n_layers=48),
}
# Their parameter counts, position embeddings included and the tied output layer counted once.
# The report's table 2 says 117M, 345M, 762M and 1542M; the checkpoints hold these.
PUBLISHED_PARAMETERS = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


# --8<-- [start:init]
def init_block(key: jax.Array, config: GPT2Config) -> PyTree:
    """One layer in 4.1's encoder-layer tree ``{"attn", "ln1", "ffn", "ln2"}``, drawn as GPT-2 does.

    Every kernel ~ ``N(0, 0.02^2)``, biases 0, layer norms the identity; the two kernels that write
    into the residual stream (attention output, feed-forward output) are scaled by ``1/sqrt(2L)``
    (section 2.3), so the stream's variance does not grow with depth at initialisation.
    """
    d, h, k, f = config.d_model, config.n_heads, config.d_head, config.d_ff
    residual = 0.02 / math.sqrt(2 * config.n_layers)  # 1/sqrt(N), N = 2L residual sub-layers
    kq, ko, kh, kf = jax.random.split(key, 4)
    return {
        "attn": {
            "qkv": {
                "kernel": 0.02 * jax.random.normal(kq, (d, 3, h, k)),
                "bias": jnp.zeros((3, h, k)),
            },
            "out": {"kernel": residual * jax.random.normal(ko, (h, k, d)), "bias": jnp.zeros((d,))},
        },
        "ln1": init_layer_norm(d),
        "ffn": {
            "hidden": {"kernel": 0.02 * jax.random.normal(kh, (d, f)), "bias": jnp.zeros((f,))},
            "out": {"kernel": residual * jax.random.normal(kf, (f, d)), "bias": jnp.zeros((d,))},
        },
        "ln2": init_layer_norm(d),
    }


def init_gpt2(key: jax.Array, config: GPT2Config) -> PyTree:
    """``{"wte": [V, D], "wpe": [max_len, D], "blocks": [L, ...], "ln_f": {"scale", "bias"}}``.

    Token embeddings ~ ``N(0, 0.02^2)`` (they are also the output layer), learned positions
    ~ ``N(0, 0.01^2)`` (as in OpenAI's released code).
    """
    _check_config(config)
    kt, kp, kb = jax.random.split(checks.prng_key("key", key), 3)
    return {
        "wte": 0.02 * jax.random.normal(kt, (config.vocab_size, config.d_model)),
        "wpe": 0.01 * jax.random.normal(kp, (config.max_len, config.d_model)),
        "blocks": init_stack(init_block, kb, config.n_layers, config),
        "ln_f": init_layer_norm(config.d_model),
    }


def count_parameters(config: GPT2Config) -> int:
    """How many parameters `init_gpt2` makes, found by ``jax.eval_shape`` (nothing allocated)."""
    shapes = jax.eval_shape(lambda key: init_gpt2(key, config), jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


# --8<-- [end:init]


# --8<-- [start:core]
def _final_norm(config: GPT2Config, params: PyTree, x: jax.Array) -> jax.Array:
    """GPT-2 adds a layer norm after the last block (section 2.3); post-LN ends normalised."""
    return final_norm(params, "ln_f", x, config.transformer)


def _cast(params: PyTree, dtype) -> PyTree:
    return params if dtype is None else jax.tree.map(lambda p: p.astype(dtype), params)


def logits(
    config: GPT2Config, params: PyTree, tokens: jax.Array, *, dtype=None, unroll: bool = False
) -> jax.Array:
    """Next-token logits at every position: ``tokens int[B, T]`` -> ``float32[B, T, V]``.

    Each block is 4.1's `encoder_layer`, pre-LN, under a causal mask: position ``t`` sees
    ``0..t`` only. ``dtype`` (e.g. ``jnp.bfloat16``) runs the matrix products in that type;
    ``unroll=True`` writes the layers out instead of a ``lax.scan`` (faster step, slower compile).
    """
    check_tokens(config, tokens)
    params = _cast(params, dtype)
    t = tokens.shape[1]
    x = (
        jnp.take(params["wte"], tokens, axis=0) + params["wpe"][:t][None]
    )  # [B, T, D]: token + learned position
    mask = causal_mask(t)  # [1, 1, T, T]
    if unroll:
        for i in range(config.n_layers):
            layer = jax.tree.map(lambda p, i=i: p[i], params["blocks"])
            x = encoder_layer(layer, x, mask, config.transformer)
    else:
        x = run_stack(encoder_layer, params["blocks"], x, mask, config.transformer)
    x = _final_norm(config, params, x)
    return jnp.einsum("BTD,VD->BTV", x, params["wte"]).astype(jnp.float32)  # tied output layer


def lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy in nats: ``logits [B, T, V]``, ``targets int[B, T]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, T, V]
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


# --8<-- [end:core]


# --8<-- [start:cache]
def init_cache(config: GPT2Config, batch: int, length: int, dtype=jnp.float32) -> PyTree:
    """Room for the keys and values of ``length`` positions: ``{"k", "v"}``, ``[L, B, S, H, K]``."""
    _check_config(config)
    batch = checks.positive_int("batch", batch)
    length = checks.positive_int("length", length)
    if length > config.max_len:
        raise ValueError(f"length: expected at most max_len={config.max_len}, got {length}")
    shape = (config.n_layers, batch, length, config.n_heads, config.d_head)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def _cached_block(config: GPT2Config, params: PyTree, x, cache: PyTree, pos):
    """One layer on ``x [B, T, D]`` at positions ``pos..pos+T-1``, reading and extending ``cache``.

    The same sub-layers as `encoder_layer`; only the attention differs: the new keys and values
    are written into the cache at ``pos`` and the queries attend over the whole cache, masked so
    that position ``pos + i`` sees cached positions ``<= pos + i`` only.
    """
    tc = config.transformer
    written = {}

    def attend(h):  # [B, T, D] -> [B, T, D]
        q, k, v = project_qkv(params["attn"]["qkv"], h)  # three [B, T, H, K]
        for name, new in (("k", k), ("v", v)):
            written[name] = jax.lax.dynamic_update_slice_in_dim(cache[name], new, pos, axis=1)
        s, t = cache["k"].shape[1], h.shape[1]
        query = pos + jnp.arange(t).reshape(-1, 1)  # [T, 1]: absolute positions of the queries
        mask = (jnp.arange(s).reshape(1, -1) <= query).reshape(1, 1, t, s)  # [1, 1, T, S]
        return project_out(
            params["attn"]["out"], dot_product_attention(q, written["k"], written["v"], mask)
        )

    x = sublayer(attend, x, params["ln1"], tc)
    x = sublayer(lambda h: feed_forward(params["ffn"], h, tc.activation), x, params["ln2"], tc)
    return x, written


def decode_step(config: GPT2Config, params: PyTree, cache: PyTree, tokens: jax.Array, pos):
    """Logits for ``tokens int[B, T]`` placed at positions ``pos..pos+T-1``, given the cache of
    positions ``0..pos-1`` -> ``(logits [B, T, V], cache)``. ``pos = 0`` with the whole prompt
    fills the cache (the *prefill*); then one token at a time costs ``O(S)``, not ``O(S^2)``."""
    check_tokens(config, tokens)
    room = cache["k"].shape[2]  # S
    if isinstance(pos, int) and not 0 <= pos <= room - tokens.shape[1]:
        raise ValueError(f"pos: {tokens.shape[1]} tokens at {pos} do not fit a cache of {room}")
    x = jnp.take(params["wte"], tokens, axis=0)  # [B, T, D]
    x = x + jax.lax.dynamic_slice_in_dim(params["wpe"], pos, tokens.shape[1])[None]

    def layer(h, xs):
        p, c = xs
        return _cached_block(config, p, h, c, pos)

    x, cache = jax.lax.scan(layer, x, (params["blocks"], cache))  # over L, cache [L, B, S, H, K]
    x = _final_norm(config, params, x)
    return jnp.einsum("BTD,VD->BTV", x, params["wte"]).astype(jnp.float32), cache


# --8<-- [end:cache]


# --8<-- [start:sampling]
def filter_logits(
    logits: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """``logits [B, V]`` divided by ``temperature``, with every token outside the ``top_k`` most
    likely, or outside the smallest set whose probability reaches ``top_p`` (nucleus sampling,
    Holtzman et al. 2020), set to ``-inf``. The most likely token always stays."""
    _check_sampling(temperature, top_k, top_p)
    logits = logits / temperature  # < 1 sharpens, > 1 flattens the distribution
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [B, 1]: the k-th largest logit
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None and top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[..., ::-1]  # [B, V], descending
        before = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1) - jax.nn.softmax(
            ordered, axis=-1
        )
        kept = jnp.sum(
            before < top_p, axis=-1, keepdims=True
        )  # [B, 1]: tokens needed to reach top_p
        cutoff = jnp.take_along_axis(ordered, kept - 1, axis=-1)  # [B, 1]: the smallest kept logit
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def _choose(logits, key, greedy: bool, temperature, top_k, top_p) -> jax.Array:
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)  # [B]


def generate(
    config: GPT2Config,
    params: PyTree,
    prompt: jax.Array,
    key: jax.Array | int,
    *,
    steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
) -> jax.Array:
    """Continue ``prompt int[B, T0]`` by ``steps`` tokens -> ``int32[B, T0 + steps]``.

    Token ``i`` is drawn with ``fold_in(key, i)`` from the filtered distribution (`filter_logits`),
    or is the most likely one (``greedy=True``). With ``use_cache`` each new token runs one
    `decode_step`; without, the whole sequence is recomputed for every token. Both give the same
    tokens for the same key.
    """
    check_tokens(config, prompt)
    steps = checks.positive_int("steps", steps)
    _check_sampling(temperature, top_k, top_p)
    key = checks.prng_key("key", key)
    if prompt.shape[1] + steps > config.max_len:
        raise ValueError(
            f"steps: prompt + steps must fit max_len={config.max_len}, "
            f"got {prompt.shape[1]} + {steps}"
        )
    options = (bool(greedy), float(temperature), top_k, None if top_p is None else float(top_p))
    run = _generate_cached if use_cache else _generate_recomputed
    return run(config, params, jnp.asarray(prompt, jnp.int32), key, steps, *options)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
def _generate_cached(config, params, prompt, key, steps, greedy, temperature, top_k, top_p):
    b, t0 = prompt.shape
    logits_, cache = decode_step(config, params, init_cache(config, b, t0 + steps), prompt, 0)

    def tick(carry, i):  # choose token i, then run it through the model at position t0 + i
        cache, last = carry
        token = _choose(last, jax.random.fold_in(key, i), greedy, temperature, top_k, top_p)  # [B]
        out, cache = decode_step(config, params, cache, token[:, None], t0 + i)
        return (cache, out[:, -1]), token

    (_, last), tokens = jax.lax.scan(tick, (cache, logits_[:, -1]), jnp.arange(steps - 1))
    final = _choose(last, jax.random.fold_in(key, steps - 1), greedy, temperature, top_k, top_p)
    return jnp.concatenate([prompt, tokens.T, final[:, None]], axis=1)  # [B, T0 + steps]


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
def _generate_recomputed(config, params, prompt, key, steps, greedy, temperature, top_k, top_p):
    b, t0 = prompt.shape
    buffer = (
        jnp.zeros((b, t0 + steps), jnp.int32).at[:, :t0].set(prompt)
    )  # later zeros: causally unseen

    def tick(buffer, i):
        last = logits(config, params, buffer)[:, t0 + i - 1]  # [B, V]: the whole prefix again
        token = _choose(last, jax.random.fold_in(key, i), greedy, temperature, top_k, top_p)
        return jax.lax.dynamic_update_slice_in_dim(buffer, token[:, None], t0 + i, axis=1), None

    return jax.lax.scan(tick, buffer, jnp.arange(steps))[0]


# --8<-- [end:sampling]


# --8<-- [start:huggingface]
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": jnp.bfloat16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def read_safetensors(source: str | Path | bytes) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file (a path or its bytes), read with numpy alone.

    The format: 8 bytes, a little-endian ``uint64`` ``n``; ``n`` bytes of JSON mapping each name
    to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into what follows); then the
    raw little-endian bytes of every tensor.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) < 8:
        raise ValueError(f"source: expected a safetensors file, got {len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if 8 + n > len(data):
        raise ValueError(f"source: header of {n} bytes does not fit a file of {len(data)} bytes")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: unsupported safetensors dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]]).newbyteorder("<")
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"])
        tensors[name] = array.astype(array.dtype.newbyteorder("="))
    return tensors


def _hf_config(hf_config: dict) -> GPT2Config:
    if not isinstance(hf_config, dict):
        raise TypeError(
            f"hf_config: expected the dict of config.json, got {type(hf_config).__name__}"
        )
    for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if name not in hf_config:
            raise ValueError(f"hf_config: missing {name!r}")
    act = hf_config.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"hf_config: activation_function {act!r} is not GPT-2's tanh GELU")
    for flag, value in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
        if hf_config.get(flag, value) != value:
            raise ValueError(f"hf_config: {flag}={hf_config[flag]!r} is not supported")
    return GPT2Config(
        vocab_size=hf_config["vocab_size"],
        d_model=hf_config["n_embd"],
        n_heads=hf_config["n_head"],
        n_layers=hf_config["n_layer"],
        max_len=hf_config["n_positions"],
        d_ff=hf_config.get("n_inner") or 4 * hf_config["n_embd"],
        ln_eps=float(hf_config.get("layer_norm_epsilon", 1e-5)),
    )


def from_huggingface(state_dict: dict[str, Any], hf_config: dict) -> tuple[GPT2Config, PyTree]:
    """``(config, params)`` from a Hugging Face ``GPT2LMHeadModel``'s tensors and ``config.json``.

    ``state_dict`` maps its parameter names (``transformer.h.0.attn.c_attn.weight``, ...; the
    ``transformer.`` prefix may be absent) to arrays. Its ``Conv1D`` weights are stored
    ``[in, out]``, the layout ``x @ W`` wants, so none is transposed: ``c_attn`` ``[D, 3D]`` is
    reshaped to ``[D, 3, H, K]`` and ``c_proj`` ``[D, D]`` to ``[H, K, D]``. The attention-mask
    buffers some versions store (``attn.bias``, ``attn.masked_bias``) are skipped; a missing,
    unknown or misshapen tensor raises naming it.
    """
    config = _hf_config(hf_config)
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
    d, h, k, f = config.d_model, config.n_heads, config.d_head, config.d_ff
    tensors = {name.removeprefix("transformer."): value for name, value in state_dict.items()}
    used = set()

    def take(
        name: str, shape: tuple[int, ...], reshape: tuple[int, ...] | None = None
    ) -> jax.Array:
        if name not in tensors:
            raise ValueError(f"state_dict: missing tensor {name!r}")
        array = np.asarray(tensors[name], dtype=np.float32)
        if array.shape != shape:
            raise ValueError(f"state_dict[{name!r}]: expected shape {shape}, got {array.shape}")
        used.add(name)
        return jnp.asarray(array.reshape(reshape or shape))

    def ln(prefix: str) -> PyTree:
        return {"scale": take(f"{prefix}.weight", (d,)), "bias": take(f"{prefix}.bias", (d,))}

    def block(i: int) -> PyTree:
        p = f"h.{i}"
        return {
            "attn": {
                "qkv": {
                    "kernel": take(
                        f"{p}.attn.c_attn.weight", (d, 3 * d), (d, 3, h, k)
                    ),  # columns q | k | v
                    "bias": take(f"{p}.attn.c_attn.bias", (3 * d,), (3, h, k)),
                },
                "out": {
                    "kernel": take(
                        f"{p}.attn.c_proj.weight", (d, d), (h, k, d)
                    ),  # rows: heads concatenated
                    "bias": take(f"{p}.attn.c_proj.bias", (d,)),
                },
            },
            "ln1": ln(f"{p}.ln_1"),
            "ffn": {
                "hidden": {
                    "kernel": take(f"{p}.mlp.c_fc.weight", (d, f)),
                    "bias": take(f"{p}.mlp.c_fc.bias", (f,)),
                },
                "out": {
                    "kernel": take(f"{p}.mlp.c_proj.weight", (f, d)),
                    "bias": take(f"{p}.mlp.c_proj.bias", (d,)),
                },
            },
            "ln2": ln(f"{p}.ln_2"),
        }

    blocks = [block(i) for i in range(config.n_layers)]
    params = {
        "wte": take("wte.weight", (config.vocab_size, d)),
        "wpe": take("wpe.weight", (config.max_len, d)),
        "blocks": jax.tree.map(lambda *layers: jnp.stack(layers), *blocks),  # every leaf [L, ...]
        "ln_f": ln("ln_f"),
    }
    if "lm_head.weight" in tensors:  # tied to wte in GPT-2: accept it only if it is the same matrix
        if not np.array_equal(
            np.asarray(tensors["lm_head.weight"], np.float32), np.asarray(params["wte"])
        ):
            raise ValueError(
                "state_dict['lm_head.weight']: expected the tied token embedding (wte)"
            )
        used.add("lm_head.weight")
    buffers = {n for n in tensors if n.endswith((".attn.bias", ".attn.masked_bias"))}
    unknown = sorted(set(tensors) - used - buffers)
    if unknown:
        raise ValueError(f"state_dict: unexpected tensors {unknown[:5]}")
    return config, params


# --8<-- [end:huggingface]


# ---- argument checks (before any compute) ----
def _check_config(config: Any) -> None:
    if not isinstance(config, GPT2Config):
        raise TypeError(f"config: expected a GPT2Config, got {type(config).__name__}")


def check_tokens(config: GPT2Config, tokens: Any, name: str = "tokens") -> None:
    """``tokens`` must be ``int[B, T]``, ``T <= max_len``, ids in ``[0, V)`` (when concrete)."""
    _check_config(config)
    transformer_check_tokens(name, tokens, config.transformer)


def _check_sampling(temperature: Any, top_k: Any, top_p: Any) -> None:
    checks.in_range("temperature", temperature, 0.0, float("inf"), low_inclusive=False)
    if top_k is not None:
        checks.positive_int("top_k", top_k)
    if top_p is not None:
        checks.in_range("top_p", top_p, 0.0, 1.0, low_inclusive=False)


# --8<-- [start:linen]
class LinenGPT2(nn.Module):
    """Functional twin: ``apply(variables, tokens) -> logits [B, T, V]``; ``variables["params"]``
    is `init_gpt2`'s tree, entry for entry (``wte``, ``wpe``, ``blocks``, ``ln_f``)."""

    config: GPT2Config

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        check_tokens(self.config, tokens)
        params = twins.declare(self, init_gpt2, self.config)
        return logits(self.config, params, tokens)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxGPT2(nnx.Module):
    """Object-oriented twin: one attribute per entry of `init_gpt2`'s tree, held as NNX objects."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        _check_config(config)
        self.config = config
        for name, entry in init_gpt2(rngs.params(), config).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        check_tokens(self.config, tokens)
        return logits(self.config, twins.pure(self), tokens)


# --8<-- [end:nnx]
