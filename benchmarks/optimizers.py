"""Benchmark: the hand-written optimizers against Optax's, one jitted update step each.

    python benchmarks/optimizers.py             # run, print, write docs/performance.md
    python benchmarks/optimizers.py --reps 40   # quicker, noisier
    python benchmarks/optimizers.py --no-write  # print only

The parameters are a ~10M-parameter pytree shaped like a small transformer (token and position
embeddings, five blocks of attention and MLP kernels, biases and layer-norm scales). For each
optimizer the step under test is ``update`` followed by ``optax.apply_updates``, jitted with the
parameters and optimizer state donated, as a training loop would run it. Ours and Optax's run in
the same process, interleaved (the order flips every repetition), so that whatever else the machine
is doing slows both alike. Each repetition times a block of three steps on each side and keeps the
fastest of each (the one least disturbed by other processes), giving one ratio ``ours / optax``;
the table reports the median, minimum and maximum of those ratios over all repetitions, and the
ratio of the two fastest steps seen. A last column gives XLA's own count of the bytes each compiled
step reads and writes, ours over Optax's: a measure of the work that the load on the machine
cannot blur.

This is a script, not a test: timings depend on the machine and its load. The site shows the last
table it wrote (between the markers in ``docs/performance.md``); the site build never runs it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl.optimization import adam, weight_decay

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
START, END = "<!-- optimizers:start -->", "<!-- optimizers:end -->"


def transformer_like_params(d_model=384, n_layers=5, vocab=4096, context=256, seed=0) -> dict:
    """A pytree with the shapes of a small decoder-only transformer (about 10.5M parameters)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.02)

    def block():
        return {
            "ln1": {"scale": jnp.ones((d_model,)), "bias": jnp.zeros((d_model,))},
            "attention": {
                name: normal(d_model, d_model) for name in ("query", "key", "value", "out")
            },
            "ln2": {"scale": jnp.ones((d_model,)), "bias": jnp.zeros((d_model,))},
            "mlp": {
                "up": {"kernel": normal(d_model, 4 * d_model), "bias": jnp.zeros((4 * d_model,))},
                "down": {"kernel": normal(4 * d_model, d_model), "bias": jnp.zeros((d_model,))},
            },
        }

    return {
        "embed": normal(vocab, d_model),
        "position": normal(context, d_model),
        "blocks": [block() for _ in range(n_layers)],
        "ln_final": {"scale": jnp.ones((d_model,)), "bias": jnp.zeros((d_model,))},
    }


def pairs():
    """(name, ours, Optax's): every hand-written optimizer with matching settings."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)
    return [
        ("sgd", adam.sgd(1e-3), optax.sgd(1e-3)),
        ("sgd + momentum", adam.sgd(1e-3, momentum=0.9), optax.sgd(1e-3, momentum=0.9)),
        ("sgd + nesterov", adam.sgd(1e-3, 0.9, nesterov=True), optax.sgd(1e-3, 0.9, nesterov=True)),
        ("adagrad", adam.adagrad(1e-2), optax.adagrad(1e-2)),
        ("rmsprop", adam.rmsprop(1e-3), optax.rmsprop(1e-3)),
        ("rmsprop centered + momentum", adam.rmsprop(1e-3, centered=True, momentum=0.9),
         optax.rmsprop(1e-3, centered=True, momentum=0.9)),
        ("adam", adam.adam(1e-3), optax.adam(1e-3)),
        ("adam + schedule", adam.adam(schedule), optax.adam(schedule)),
        ("adamw + mask", adam.adamw(1e-3, weight_decay=0.1, mask=weight_decay.matrices_only),
         optax.adamw(1e-3, weight_decay=0.1, mask=weight_decay.matrices_only)),
    ]  # fmt: skip


def make_step(opt):
    """The jitted step: ``update`` then ``apply_updates``; parameters and state are donated."""

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


class Runner:
    """One optimizer's step with its own (donated, carried) parameters and state."""

    def __init__(self, opt, params, grads):
        self.step = make_step(opt)
        self.params = jax.tree.map(jnp.copy, params)
        self.state = opt.init(self.params)
        self.grads = grads
        cost = self.step.lower(self.params, self.state, grads).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost  # older JAX returns a list
        # XLA's count of memory traffic
        self.bytes = float(cost.get("bytes accessed", float("nan")))
        self()  # compile, and run once

    def __call__(self) -> float:
        start = time.perf_counter()
        self.params, self.state = self.step(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))
        return time.perf_counter() - start


def benchmark(reps: int, block: int = 3, warmup: int = 3) -> list[dict]:
    """``reps`` interleaved repetitions; each times a block of ``block`` steps per side and keeps
    its fastest."""
    params = transformer_like_params()
    rng = np.random.default_rng(1)
    grads = jax.tree.map(
        lambda p: jnp.asarray(rng.standard_normal(p.shape, dtype=np.float32) * 1e-3), params
    )
    rows = []
    for name, ours, theirs in pairs():
        a, b = Runner(ours, params, grads), Runner(theirs, params, grads)
        for _ in range(warmup):
            a(), b()
        ratios, times_a, times_b = [], [], []
        for rep in range(reps):
            first, second = (a, b) if rep % 2 == 0 else (b, a)  # alternate who goes first
            t_first = min(first() for _ in range(block))  # the fastest of a block: least disturbed
            t_second = min(second() for _ in range(block))
            ta, tb = (t_first, t_second) if first is a else (t_second, t_first)
            times_a.append(ta)
            times_b.append(tb)
            ratios.append(ta / tb)
        rows.append({
            "name": name,
            "ours_ms": 1e3 * statistics.median(times_a),
            "optax_ms": 1e3 * statistics.median(times_b),
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "fastest": min(times_a) / min(times_b),
            "bytes": a.bytes / b.bytes,
        })  # fmt: skip
        r = rows[-1]
        print(
            f"{name:<30} {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})",
            file=sys.stderr,
        )
    return rows


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores "
        f"({jax.devices()[0].platform.upper()} backend, load average {load:.1f} at start); "
        f"Python {platform.python_version()}, jax {jax.__version__}, optax {optax.__version__}; "
        f"{datetime.date.today().isoformat()}"
    )


def table(rows: list[dict], reps: int, n_params: int, where: str) -> str:
    lines = [
        f"Update step of a {n_params / 1e6:.1f}M-parameter "
        f"transformer-shaped pytree, {reps} interleaved repetitions per "
        f"optimizer (each the fastest of 3 steps per side). Machine: {where}.",
        "",
        "| optimizer | ours (ms, median) | Optax (ms, median) | ratio ours/Optax: "
        "median | min | max | fastest/fastest | XLA bytes accessed, ours/Optax |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['ours_ms']:.2f} | {r['optax_ms']:.2f} | **{r['median']:.3f}** "
            f"| {r['min']:.3f} | {r['max']:.3f} | {r['fastest']:.3f} | {r['bytes']:.6f} |"
        )
    return "\n".join(lines)


def write(text: str) -> None:
    page = PAGE.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), flags=re.DOTALL)
    if not pattern.search(page):
        raise SystemExit(f"{PAGE}: markers {START} ... {END} not found")
    PAGE.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reps", type=int, default=150, help="interleaved repetitions per optimizer (default 150)"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave docs/performance.md alone"
    )
    args = parser.parse_args(argv)
    where = machine()
    rows = benchmark(args.reps)
    n_params = sum(p.size for p in jax.tree.leaves(transformer_like_params()))
    text = table(rows, args.reps, n_params, where)
    print(text)
    if not args.no_write:
        write(text)
        print(f"\nwritten to {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
