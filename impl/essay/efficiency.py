"""Chapter 2.6, *Compute efficiency* — the same arithmetic, written several ways, timed.

Three comparisons, each computing the same numbers in different ways:

1. **Dispatch and compilation.** A one-hidden-layer network applied to a batch of examples:
   as a Python loop over examples (every operation dispatched on its own), as ``jax.vmap``
   (one batched operation per layer, still dispatched one by one), and as ``jax.jit(vmap)``
   (the whole batch compiled by XLA into one program).
2. **Attention and memory.** Scaled dot-product attention (Vaswani et al. 2017) written the
   textbook way, materialising the full ``[heads, T, T]`` score matrix; as a *blocked* loop over
   key blocks with the running ("online") softmax that FlashAttention (Dao et al. 2022) is
   built on, which never holds more than ``[heads, T, block]`` scores; and as the library's
   ``jax.nn.dot_product_attention``. On a GPU the library can call a fused kernel that keeps
   each block in on-chip memory; on a CPU it lowers to the same XLA operations as the
   textbook version, and the blocked loop saves memory rather than time.
3. **Precision.** A ``jnp.dot`` of ``n × n`` matrices in ``float32`` and in ``bfloat16``.
   Whether 16 bits are faster depends on the hardware: GPUs and TPUs have units for it; a CPU
   gains only if it has bfloat16 instructions (and XLA uses them).

Shapes: network inputs ``float32[batch, d_in]``; attention ``q, k, v`` are
``float32[batch, T, heads, d_head]``, the layout of ``jax.nn.dot_product_attention``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.essay.compute import median_seconds
from impl.report import Report

__all__ = [
    "SEQ_LENS",
    "attention_timings",
    "blocked_attention",
    "dispatch_timings",
    "experiment",
    "mlp_example",
    "naive_attention",
    "precision_timings",
]

SEQ_LENS = (256, 512, 1024, 2048)
HEADS, D_HEAD = 4, 64


# --8<-- [start:dispatch]
def mlp_example(params, x: jax.Array) -> jax.Array:
    """One example through a hidden tanh layer: ``x [d_in]`` -> a scalar."""
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])  # [hidden]
    return hidden @ params["w2"]  # []


def python_loop(params, xs: jax.Array) -> jax.Array:
    """``[batch, d_in] -> [batch]``, one example at a time, each operation dispatched on its own."""
    return jnp.stack([mlp_example(params, x) for x in xs])


batched = jax.vmap(mlp_example, in_axes=(None, 0))  # [batch, d_in] -> [batch], one op per layer
compiled = jax.jit(batched)  # the same, compiled by XLA into one program
# --8<-- [end:dispatch]


# --8<-- [start:attention]
def naive_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Textbook attention: ``softmax(q kᵀ / √d) v``, with the full score matrix in memory.

    ``q, k, v [b, T, h, d]`` -> ``[b, T, h, d]``; the scores are ``[b, h, T, T]``.
    """
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])  # [b, h, T, T]
    weights = jax.nn.softmax(scores, axis=-1)  # [b, h, T, T]
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)  # [b, T, h, d]


def blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array, block: int = 128) -> jax.Array:
    """Exact attention over key blocks with a running softmax (the recurrence of FlashAttention).

    For each block of ``block`` keys: scores ``s`` for that block only, a running maximum ``m``
    (for numerical safety), a running normaliser ``norm`` and a running weighted sum ``acc``, each
    rescaled by ``exp(m_old - m_new)`` when the maximum grows. Only ``[b, h, T, block]`` scores
    exist at a time. ``q, k, v [b, T, h, d]`` -> ``[b, T, h, d]``; ``T`` must divide by ``block``.
    """
    b, t, h, d = q.shape
    if t % block:
        raise ValueError(f"block: expected a divisor of the sequence length {t}, got {block}")
    kb = k.reshape(b, t // block, block, h, d).transpose(1, 0, 2, 3, 4)  # [blocks, b, block, h, d]
    vb = v.reshape(b, t // block, block, h, d).transpose(1, 0, 2, 3, 4)  # [blocks, b, block, h, d]
    scale = 1.0 / math.sqrt(d)

    def step(carry, kv):
        m, norm, acc = carry  # [b, h, T], [b, h, T], [b, h, T, d]
        k_j, v_j = kv  # [b, block, h, d]
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k_j) * scale  # [b, h, T, block]
        m_new = jnp.maximum(m, s.max(axis=-1))  # [b, h, T]
        p = jnp.exp(s - m_new[..., None])  # [b, h, T, block]
        rescale = jnp.exp(m - m_new)  # [b, h, T]
        norm = norm * rescale + p.sum(axis=-1)
        acc = acc * rescale[..., None] + jnp.einsum("bhqk,bkhd->bhqd", p, v_j)  # [b, h, T, d]
        return (m_new, norm, acc), None

    init = (
        jnp.full((b, h, t), -jnp.inf, q.dtype),
        jnp.zeros((b, h, t), q.dtype),
        jnp.zeros((b, h, t, d), q.dtype),
    )
    (_, norm, acc), _ = jax.lax.scan(step, init, (kb, vb))
    return (acc / norm[..., None]).transpose(0, 2, 1, 3)  # [b, T, h, d]


# --8<-- [end:attention]


def dispatch_timings(
    batch: int = 256, d_in: int = 64, hidden: int = 128, *, seed: int = 0, repeats: int = 3
):
    """Seconds per batch for the Python loop, ``vmap`` and ``jit(vmap)``, and their largest
    disagreement."""
    checks.positive_int("batch", batch)
    checks.positive_int("d_in", d_in)
    checks.positive_int("hidden", hidden)
    checks.positive_int("repeats", repeats)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {
        "w1": jax.random.normal(k1, (d_in, hidden)) / math.sqrt(d_in),  # [d_in, hidden]
        "b1": jnp.zeros((hidden,)),  # [hidden]
        "w2": jax.random.normal(k2, (hidden,)) / math.sqrt(hidden),  # [hidden]
    }
    xs = jax.random.normal(k3, (batch, d_in))  # [batch, d_in]
    variants = {"python loop": python_loop, "vmap": batched, "jit(vmap)": compiled}
    seconds = {
        name: median_seconds(fn, params, xs, repeats=repeats, min_seconds=0.01)
        for name, fn in variants.items()
    }
    outs = [np.asarray(fn(params, xs)) for fn in variants.values()]
    error = max(float(np.max(np.abs(o - outs[0]))) for o in outs)
    return seconds, error


def attention_timings(
    seq_lens: Sequence[int] = SEQ_LENS, *, block: int = 128, seed: int = 0, repeats: int = 3
):
    """Per sequence length: seconds for textbook, blocked and library attention, score memory, and
    error.

    Returns ``{T: {"naive": s, "blocked": s, "library": s, "naive_scores_mb": MB,
    "blocked_scores_mb": MB, "max_error": float}}``.
    """
    seq_lens = list(seq_lens)
    if not seq_lens:
        raise ValueError("seq_lens: expected at least one sequence length")
    checks.positive_int("block", block)
    for i, t in enumerate(seq_lens):
        checks.positive_int(f"seq_lens[{i}]", t)
        if t % block:
            raise ValueError(f"seq_lens[{i}]: expected a multiple of block={block}, got {t}")
    checks.positive_int("repeats", repeats)
    variants = {
        "naive": jax.jit(naive_attention),
        "blocked": jax.jit(lambda q, k, v: blocked_attention(q, k, v, block)),
        "library": jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v)),
    }
    result = {}
    for t in seq_lens:
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), t), 3)
        # [1, T, h, d] each
        q, k, v = (jax.random.normal(key, (1, t, HEADS, D_HEAD)) for key in keys)
        row = {
            name: median_seconds(fn, q, k, v, repeats=repeats, min_seconds=0.01)
            for name, fn in variants.items()
        }
        outs = [np.asarray(fn(q, k, v)) for fn in variants.values()]
        row["max_error"] = max(float(np.max(np.abs(o - outs[0]))) for o in outs)
        row["naive_scores_mb"] = HEADS * t * t * 4 / 1e6
        row["blocked_scores_mb"] = HEADS * t * block * 4 / 1e6
        result[t] = row
    return result


def precision_timings(n: int = 1024, *, seed: int = 0, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of an ``n × n`` jitted ``jnp.dot`` in ``float32`` and ``bfloat16``, and bf16's
    relative error."""
    checks.positive_int("n", n)
    checks.positive_int("repeats", repeats)
    ka, kb = jax.random.split(jax.random.key(seed))
    a = jax.random.normal(ka, (n, n), jnp.float32)  # [n, n]
    b = jax.random.normal(kb, (n, n), jnp.float32)  # [n, n]
    dot = jax.jit(jnp.dot)
    result = {}
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        a_, b_ = a.astype(dtype), b.astype(dtype)
        result[name] = 2.0 * n**3 / median_seconds(dot, a_, b_, repeats=repeats) / 1e9
    exact = np.asarray(dot(a, b))
    low = np.asarray(dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)).astype(jnp.float32))
    result["bf16_relative_error"] = float(np.linalg.norm(low - exact) / np.linalg.norm(exact))
    return result


def experiment(
    seed: int = 0,
    *,
    progress: bool | None = None,
    seq_lens: Sequence[int] = SEQ_LENS,
    n: int = 1024,
    repeats: int = 3,
) -> Report:
    """Time the three comparisons; report speed-ups, memory and agreement.

    Metrics: ``loop_ms``, ``vmap_ms``, ``jit_ms``, ``speedup_jit_over_loop``,
    ``speedup_vmap_over_loop``; per sequence length ``T``: ``attention_naive_ms_T{T}``,
    ``attention_blocked_ms_T{T}``, ``attention_library_ms_T{T}``, ``scores_mb_T{T}``;
    ``attention_max_error``; ``float32_gflops``, ``bfloat16_gflops``, ``speedup_bf16``,
    ``bf16_relative_error``.
    """
    checks.non_negative_int("seed", seed)
    seq_lens = list(seq_lens)
    if not seq_lens:
        raise ValueError("seq_lens: expected at least one sequence length")
    for i, t in enumerate(seq_lens):
        checks.positive_int(f"seq_lens[{i}]", t)
        if t % 128:
            raise ValueError(f"seq_lens[{i}]: expected a multiple of 128 (the block size), got {t}")
    checks.positive_int("n", n)
    checks.positive_int("repeats", repeats)
    del progress  # each part runs in seconds
    start = time.perf_counter()
    dispatch, dispatch_error = dispatch_timings(seed=seed, repeats=repeats)
    attention = attention_timings(seq_lens, seed=seed, repeats=repeats)
    precision = precision_timings(n, seed=seed, repeats=repeats)

    metrics = {
        "loop_ms": dispatch["python loop"] * 1e3,
        "vmap_ms": dispatch["vmap"] * 1e3,
        "jit_ms": dispatch["jit(vmap)"] * 1e3,
        "speedup_vmap_over_loop": dispatch["python loop"] / dispatch["vmap"],
        "speedup_jit_over_loop": dispatch["python loop"] / dispatch["jit(vmap)"],
        "dispatch_max_error": dispatch_error,
    }
    for t, row in attention.items():
        metrics |= {
            f"attention_{name}_ms_T{t}": row[name] * 1e3 for name in ("naive", "blocked", "library")
        }
        metrics[f"scores_mb_T{t}"] = row["naive_scores_mb"]
    metrics["attention_max_error"] = max(row["max_error"] for row in attention.values())
    metrics |= {
        "float32_gflops": precision["float32"],
        "bfloat16_gflops": precision["bfloat16"],
        "speedup_bf16": precision["bfloat16"] / precision["float32"],
        "bf16_relative_error": precision["bf16_relative_error"],
    }

    lines = ["1. one network, 256 examples: the same numbers three ways"]
    for name, seconds in dispatch.items():
        lines.append(
            f"   {name:<12} {seconds * 1e3:9.3f} ms   "
            f"({dispatch['python loop'] / seconds:,.0f}x the loop's speed)"
        )
    lines.append(f"   largest disagreement between them: {dispatch_error:.1e}")
    lines.append(
        f"2. attention, {HEADS} heads of {D_HEAD} dimensions "
        "(ms per call; MB of scores held at once)"
    )
    lines.append(
        f"   {'T':>5} {'textbook':>9} {'blocked':>9} "
        f"{'library':>9} {'textbook MB':>12} {'blocked MB':>11}"
    )
    for t, row in attention.items():
        lines.append(
            f"   {t:>5} {row['naive'] * 1e3:>9.2f} {row['blocked'] * 1e3:>9.2f} "
            f"{row['library'] * 1e3:>9.2f}"
            f" {row['naive_scores_mb']:>12.1f} {row['blocked_scores_mb']:>11.1f}"
        )
    lines.append(f"   largest disagreement between the three: {metrics['attention_max_error']:.1e}")
    lines.append(f"3. {n} x {n} matrix product")
    lines.append(f"   float32  {precision['float32']:8.1f} GFLOP/s")
    lines.append(
        f"   bfloat16 {precision['bfloat16']:8.1f} GFLOP/s  ({metrics['speedup_bf16']:.2f}x "
        f"float32; relative error {precision['bf16_relative_error']:.1e})"
    )
    fig = _figure(dispatch, attention, precision)
    return Report("2.6 Compute efficiency — the same arithmetic, several ways", metrics, lines, fig,
                  time.perf_counter() - start)  # fmt: skip


def _figure(dispatch, attention, precision):
    fig, (ax_d, ax_a, ax_p) = plotting.figure(3, 1, height=3.4)
    names = list(dispatch)
    ax_d.bar(names, [dispatch[k] * 1e3 for k in names], color=plotting.PALETTE[:3])
    ax_d.set(yscale="log", ylabel="ms per batch", title="Loop, vmap, jit")
    ax_d.tick_params(axis="x", labelsize=8)
    lens = list(attention)
    for i, (name, label) in enumerate(
        (
            ("naive", "textbook"),
            ("blocked", "blocked (online softmax)"),
            ("library", "jax.nn.dot_product_attention"),
        )
    ):
        ax_a.plot(
            lens,
            [attention[t][name] * 1e3 for t in lens],
            "o-",
            color=plotting.PALETTE[i],
            label=label,
        )
    ax_a.set(
        xscale="log",
        yscale="log",
        xlabel="sequence length T",
        ylabel="ms per call",
        title="Attention",
    )
    ax_a.set_xticks(lens, [str(t) for t in lens])
    ax_a.minorticks_off()
    ax_a.legend(fontsize=8)
    kinds = ["float32", "bfloat16"]
    ax_p.bar(kinds, [precision[k] for k in kinds], color=[plotting.PALETTE[0], plotting.PALETTE[1]])
    ax_p.set(ylabel="GFLOP/s", title="Matrix product precision")
    return fig
