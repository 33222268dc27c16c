"""Benchmark: one GPT training step (forward, backward, AdamW) in JAX, and the same in PyTorch.

    python benchmarks/gpt.py               # run, print, write the tables to docs/performance.md
    python benchmarks/gpt.py --reps 10     # quicker, noisier
    python benchmarks/gpt.py --no-write    # print only

The model is topic 4.5's GPT-2 (`impl.transformers.gpt2`) at nanoGPT's small CPU configuration:
vocabulary 65 (characters), context 64, 4 layers, 4 heads, width 128, batch 32, float32. The step
is ``jax.value_and_grad`` of the mean next-token cross-entropy followed by the project's own
AdamW (`impl.optimization.adam.adamw`), jitted with parameters and optimizer state donated.

What it reports:

* this machine's float32 (and bfloat16) matmul peak: the best of several jitted 2048 x 2048
  matmuls;
* the step's median time, tokens/s, model FLOP/s (``6 N T`` with ``N`` the parameters outside
  the position table and ``T`` the tokens per step) and the fraction of the peak;
* when torch is importable (the ``reference`` extra), the same model written for PyTorch
  (`benchmarks/gpt_torch.py`, ``torch.optim.AdamW``), timed interleaved with ours in the same
  process, so that other load on the machine slows both alike: the ratio ours / PyTorch;
* the variants that decide where the time goes: attention by einsum (topic 4.1's) or by
  ``jax.nn.dot_product_attention``; fused or separate query/key/value projections; layers under
  ``lax.scan`` or unrolled; with and without buffer donation; the shares of the loss, the
  backward pass and the optimizer; bfloat16 matmuls (with a loss curve against float32);
* compile time, and generation speed with and without the key/value cache for 256 new tokens.

Timings depend on the machine and its load: the script prints ``lscpu``'s model name and the
load average, and the interleaving makes the *ratios* the numbers to read.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from impl.data.corpus import load_corpus
from impl.data.lm import lm_windows
from impl.data.tokenizers import CharTokenizer
from impl.optimization.adam import adamw
from impl.transformers import gpt2
from impl.transformers.transformer import (
    causal_mask,
    encoder_layer,
    feed_forward,
    project_out,
    run_stack,
    sublayer,
)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
START, END = "<!-- gpt:start -->", "<!-- gpt:end -->"
VOCAB, CONTEXT, LAYERS, HEADS, WIDTH, BATCH = 65, 64, 4, 4, 128, 32
CONFIG = gpt2.GPT2Config(
    vocab_size=VOCAB, d_model=WIDTH, n_heads=HEADS, n_layers=LAYERS, max_len=CONTEXT
)
LR = 1e-3


# ---------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except (OSError, subprocess.CalledProcessError, AttributeError):
        return platform.processor() or platform.machine()


def matmul_peak(dtype=jnp.float32, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of the best of ``reps`` jitted ``n x n`` matmuls (``2 n^3`` FLOPs each)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    best = min(_time(lambda: f(a, b).block_until_ready()) for _ in range(reps))
    return 2 * n**3 / best


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# Forward variants, built from topic 4.1's and 4.5's pieces
# ---------------------------------------------------------------------------------------
def _block(params, x, config, *, attention: str, fused: bool):
    """4.1's encoder layer, pre-LN and causal, with the attention kernel and projections chosen."""
    tc = config.transformer
    t = x.shape[1]

    def attend(h):
        kernel, bias = (
            params["attn"]["qkv"]["kernel"],
            params["attn"]["qkv"]["bias"],
        )  # [D, 3, H, K], [3, H, K]
        if fused:
            qkv = jnp.einsum("BTD,DCHK->CBTHK", h, kernel) + bias[:, None, None]
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q, k, v = (
                jnp.einsum("BTD,DHK->BTHK", h, kernel[:, i]) + bias[i][None, None] for i in range(3)
            )
        if attention == "jax.nn":
            o = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
        else:
            scores = jnp.einsum("BTHK,BSHK->BHTS", q, k) / np.sqrt(q.shape[-1]).astype(q.dtype)
            causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
            weights = jax.nn.softmax(
                jnp.where(causal, scores, jnp.finfo(scores.dtype).min), axis=-1
            )
            o = jnp.einsum("BHTS,BSHK->BTHK", weights, v)
        return project_out(params["attn"]["out"], o)

    x = sublayer(attend, x, params["ln1"], tc)
    return sublayer(lambda h: feed_forward(params["ffn"], h, tc.activation), x, params["ln2"], tc)


def make_logits(attention: str = "4.1", fused: bool = True, unroll: bool = False, dtype=None):
    """``(params, tokens) -> logits``: ``attention="4.1"`` is `gpt2.logits` itself (4.1's
    ``dot_product_attention`` inside its ``encoder_layer``); ``"einsum"`` and ``"jax.nn"`` swap in
    a plain causal einsum attention or ``jax.nn.dot_product_attention``."""
    if attention == "4.1" and fused:
        return lambda params, tokens: gpt2.logits(
            CONFIG, params, tokens, dtype=dtype, unroll=unroll
        )

    def forward(params, tokens):
        params = params if dtype is None else jax.tree.map(lambda p: p.astype(dtype), params)
        x = params["wte"][tokens] + params["wpe"][: tokens.shape[1]][None]
        layer = functools.partial(_block, config=CONFIG, attention=attention, fused=fused)
        if attention == "4.1":

            def layer(p, h):
                return encoder_layer(p, h, causal_mask(h.shape[1]), CONFIG.transformer)

        if unroll:
            for i in range(CONFIG.n_layers):
                x = layer(jax.tree.map(lambda p, i=i: p[i], params["blocks"]), x)
        else:
            x = run_stack(layer, params["blocks"], x)
        x = gpt2._final_norm(CONFIG, params, x)
        return jnp.einsum("BTD,VD->BTV", x, params["wte"]).astype(jnp.float32)

    return forward


def make_step(forward, *, donate: bool = True, part: str = "step"):
    """A jitted ``(params, opt_state, batch) -> (params, opt_state, loss)``; ``part`` cuts it
    short: ``"grad"`` (no optimizer), ``"forward"`` (loss only)."""
    optimizer = adamw(LR, b2=0.99, weight_decay=0.01)

    def loss_fn(params, batch):
        return gpt2.lm_loss(forward(params, batch["inputs"]), batch["targets"])

    def step(params, opt_state, batch):
        if part == "forward":
            return params, opt_state, loss_fn(params, batch)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        if part == "grad":
            return grads, opt_state, loss
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree.map(jnp.add, params, updates), opt_state, loss

    donated = (0, 1) if donate and part == "step" else ()  # the parts keep their inputs
    return jax.jit(step, donate_argnums=donated), optimizer


class JaxRunner:
    """One compiled variant with its own copy of the parameters and optimizer state."""

    def __init__(self, forward, batch, **kwargs):
        self.step, optimizer = make_step(forward, **kwargs)
        self.updates = kwargs.get("part", "step") == "step"
        self.params = gpt2.init_gpt2(jax.random.key(0), CONFIG)
        self.opt_state = optimizer.init(self.params)
        self.batch = batch
        self.compile_s = _time(lambda: self())

    def __call__(self) -> float:
        out = self.step(self.params, self.opt_state, self.batch)
        jax.block_until_ready(out)
        if self.updates:
            self.params, self.opt_state = out[0], out[1]
        return float(out[2])


def data(seed: int = 0):
    """nanoGPT's character-level setting on the project's prose: 65 ids (7 specials, 58 chars)."""
    text = load_corpus()
    tokenizer = CharTokenizer.train(text, VOCAB, byte_fallback=False)
    ids = tokenizer.encode(text)
    return lm_windows(ids, context=CONTEXT, n=BATCH * 400, key=seed)


def batch_at(windows, i: int) -> dict:
    sl = slice((i % 400) * BATCH, (i % 400 + 1) * BATCH)
    return {"inputs": windows["inputs"][sl], "targets": windows["targets"][sl]}


def median_step(runner, reps: int, block: int = 3) -> float:
    return statistics.median(min(_time(runner) for _ in range(block)) for _ in range(reps))


# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------
def flops_per_step() -> float:
    n = (
        gpt2.count_parameters(CONFIG) - CONFIG.max_len * CONFIG.d_model
    )  # without the position table
    return 6.0 * n * BATCH * CONTEXT


def compare_with_torch(windows, reps: int) -> dict | None:
    try:
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import gpt_torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    batch = batch_at(windows, 0)
    ours = JaxRunner(make_logits(), batch)
    _, torch_step = gpt_torch.training_step(VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, lr=LR)
    x, y = (torch.from_numpy(np.asarray(batch[k]).astype(np.int64)) for k in ("inputs", "targets"))
    for _ in range(3):
        torch_step(x, y)
    ratios, t_ours, t_torch = [], [], []
    for r in range(reps):
        pair = [("ours", ours), ("torch", lambda: torch_step(x, y))]
        times = {}
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            times[name] = min(_time(fn) for _ in range(3))
        t_ours.append(times["ours"])
        t_torch.append(times["torch"])
        ratios.append(times["ours"] / times["torch"])
    return {
        "ours_ms": 1e3 * statistics.median(t_ours),
        "torch_ms": 1e3 * statistics.median(t_torch),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def variants(windows, reps: int) -> list[tuple[str, float, float]]:
    """``(name, median ms, compile s)`` of every variant, measured round-robin."""
    batch = batch_at(windows, 0)
    table = {
        "ours: 4.1's attention, fused QKV, scan, donated": JaxRunner(make_logits(), batch),
        "attention by plain einsum": JaxRunner(make_logits("einsum"), batch),
        "attention by jax.nn.dot_product_attention": JaxRunner(make_logits("jax.nn"), batch),
        "separate Q, K, V projections": JaxRunner(make_logits("einsum", fused=False), batch),
        "layers unrolled": JaxRunner(make_logits(unroll=True), batch),
        "no buffer donation": JaxRunner(make_logits(), batch, donate=False),
        "bfloat16 matmuls": JaxRunner(make_logits(dtype=jnp.bfloat16), batch),
        "bfloat16, unrolled": JaxRunner(make_logits(unroll=True, dtype=jnp.bfloat16), batch),
        "forward + backward only (no optimizer)": JaxRunner(make_logits(), batch, part="grad"),
        "forward only (loss)": JaxRunner(make_logits(), batch, part="forward"),
    }
    times = {name: [] for name in table}
    for r in range(reps):
        order = list(table) if r % 2 == 0 else list(table)[::-1]
        for name in order:
            times[name].append(min(_time(table[name]) for _ in range(3)))
    return [(name, 1e3 * statistics.median(times[name]), table[name].compile_s) for name in table]


def loss_share(windows, reps: int) -> float:
    """ms of the loss alone: cross-entropy on ``[B, T, V]`` logits, forward and backward."""
    batch = batch_at(windows, 0)
    logits = jax.random.normal(jax.random.key(0), (BATCH, CONTEXT, VOCAB))
    f = jax.jit(jax.value_and_grad(gpt2.lm_loss))
    jax.block_until_ready(f(logits, batch["targets"]))
    return 1e3 * median_step(lambda: jax.block_until_ready(f(logits, batch["targets"])), reps)


def bf16_curve(windows, steps: int = 300) -> tuple[float, float, float]:
    """Train float32 and bfloat16 from the same start on the same batches:
    ``(final f32 loss, final bf16 loss, largest gap of the 20-step running means)``."""
    curves = {}
    for name, dtype in (("f32", None), ("bf16", jnp.bfloat16)):
        runner = JaxRunner(make_logits(dtype=dtype), batch_at(windows, 0))
        losses = []
        for i in range(steps):
            runner.batch = batch_at(windows, i)
            losses.append(runner())
        curves[name] = np.convolve(losses, np.ones(20) / 20, mode="valid")
    return (
        float(curves["f32"][-1]),
        float(curves["bf16"][-1]),
        float(np.max(np.abs(curves["f32"] - curves["bf16"]))),
    )


def generation(new_tokens: int = 256) -> dict:
    """Tokens/s for ``new_tokens`` after a 16-token prompt, batch 1, with and without the cache."""
    config = gpt2.GPT2Config(
        vocab_size=VOCAB, d_model=WIDTH, n_heads=HEADS, n_layers=LAYERS, max_len=512
    )
    params = gpt2.init_gpt2(jax.random.key(0), config)
    prompt = jnp.ones((1, 16), jnp.int32)
    out = {}
    for use_cache in (True, False):
        run = lambda use_cache=use_cache: jax.block_until_ready(  # noqa: E731
            gpt2.generate(
                config, params, prompt, 0, steps=new_tokens, top_k=10, use_cache=use_cache
            )
        )
        out[f"compile_{use_cache}"] = _time(run)
        out[use_cache] = new_tokens / min(_time(run) for _ in range(3))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--curve-steps", type=int, default=300, help="steps of the bfloat16 curve")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    windows = data()
    peak32, peak16 = matmul_peak(jnp.float32), matmul_peak(jnp.bfloat16)
    flops = flops_per_step()
    torch_side = compare_with_torch(windows, args.reps)
    rows = variants(windows, max(args.reps // 2, 5))
    loss_ms = loss_share(windows, args.reps)
    f32, bf16, gap = bf16_curve(windows, args.curve_steps)
    gen = generation()
    ours_ms = rows[0][1]
    versions = f"Python {platform.python_version()}, jax {jax.__version__}"
    if torch_side:
        versions += f", torch {torch_side['torch']} ({torch_side['threads']} threads)"
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores (load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end); {versions}; {datetime.date.today()}.",
        "",
        f"Matmul peak (best 2048 x 2048): float32 {peak32 / 1e9:.0f} GFLOP/s, "
        f"bfloat16 {peak16 / 1e9:.0f} GFLOP/s. Model: {gpt2.count_parameters(CONFIG):,} "
        f"parameters; 6 N T = {flops / 1e9:.2f} GFLOP per step ({BATCH * CONTEXT} tokens).",
        "",
    ]
    if torch_side:
        lines += [
            "| training step, float32 | ms (median) | tokens/s | model GFLOP/s | of float32 peak |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, ms in (
            ("ours (JAX)", torch_side["ours_ms"]),
            ("PyTorch", torch_side["torch_ms"]),
        ):
            rate = flops / ms / 1e6  # GFLOP/s
            lines.append(
                f"| {name} | {ms:.2f} | {BATCH * CONTEXT / ms * 1e3:,.0f} | {rate:.0f} | "
                f"{rate / (peak32 / 1e9):.0%} |"
            )
        lines += [
            "",
            f"Ratio ours / PyTorch, interleaved, median of {args.reps}: "
            f"**{torch_side['ratio']:.2f}** (min {torch_side['ratio_min']:.2f}, "
            f"max {torch_side['ratio_max']:.2f}).",
            "",
        ]
    lines += [
        "| variant (JAX) | ms per step (median) | vs ours | compile (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, ms, compile_s in rows:
        lines.append(f"| {name} | {ms:.2f} | {ms / ours_ms:.2f} | {compile_s:.1f} |")
    lines += [
        f"| the loss alone (cross-entropy on [B, T, V] logits, forward + backward) | "
        f"{loss_ms:.2f} | {loss_ms / ours_ms:.2f} | |",
        "",
        f"bfloat16 against float32, {args.curve_steps} steps from the same start on the same "
        f"batches: final loss {bf16:.3f} against {f32:.3f}; the 20-step running means never "
        f"differ by more than {gap:.3f}.",
        "",
        f"Generation, 256 new tokens after a 16-token prompt, batch 1, top-k 10 (max_len 512): "
        f"{gen[True]:,.0f} tokens/s with the key/value cache, {gen[False]:,.0f} tokens/s "
        f"recomputing the prefix (**{gen[True] / gen[False]:.1f}x**); first calls, compile "
        f"included: {gen['compile_True']:.1f} s and {gen['compile_False']:.1f} s.",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        page = PAGE.read_text()
        if START not in page:
            raise SystemExit(f"{PAGE}: no {START} ... {END} markers to write between")
        page = re.sub(
            f"{re.escape(START)}.*?{re.escape(END)}",
            f"{START}\n{table}\n{END}",
            page,
            flags=re.DOTALL,
        )
        PAGE.write_text(page)
        print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
