"""Chapter 2.5, *Compute* — this machine's arithmetic, measured, and the milestone runs priced in
it.

Two measurements and one division:

1. **Matrix multiplication throughput against size.** ``C = A · B`` for square ``float32``
   matrices of side ``n`` costs ``2n³`` floating-point operations (a multiply and an add per
   term) and moves at least ``3 · 4 · n²`` bytes (read ``A`` and ``B``, write ``C``), so its
   *arithmetic intensity* is at least ``n / 6`` FLOP per byte. Small products are limited by
   memory traffic and the fixed cost of a call; large ones by the arithmetic units. The jitted
   ``jnp.dot`` is timed after a warm-up call (which compiles it), as the median of a few runs.
2. **Memory bandwidth**, from a jitted sum over an array far larger than the caches: it does
   one addition per four bytes read and writes nothing, so it is limited by memory alone.
   The ratio ``peak FLOP/s ÷ bandwidth`` is the machine's *ridge point*: the intensity above
   which a program can keep the arithmetic busy (the roofline model of Williams, Waterman &
   Patterson 2009).
3. **The milestone runs on this machine**: each system in ``essays/milestones.csv`` with a
   training-compute figure (reported, or ``6 · N · D`` from its parameters and tokens; Kaplan et
   al. 2020) divided by the measured peak — and, for scale, by the dense 16-bit peak of one chip
   from ``essays/hardware.csv``.

Shapes: matrices are ``float32[n, n]``; the bandwidth probe is ``float32[2**25]`` (128 MiB).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.essay import hardware, milestones
from impl.report import Report

__all__ = [
    "SIZES",
    "bandwidth_gbs",
    "experiment",
    "matmul_intensity",
    "matmul_throughput",
    "median_seconds",
    "training_times",
]

SIZES = (32, 64, 128, 256, 512, 1024, 2048)
REFERENCE_CHIP = "H100 (SXM5)"  # the chip the milestone runs are also priced on
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.25 * SECONDS_PER_DAY


# --8<-- [start:experiment]
def median_seconds(fn: Callable, *args, repeats: int = 5, min_seconds: float = 0.02) -> float:
    """Median wall time of one call of ``fn(*args)``, compilation excluded.

    The first call (which compiles) is not timed. Each of the ``repeats`` samples runs the call
    enough times to last about ``min_seconds``, so that very fast calls are not lost in the
    resolution of the clock, and divides by the count.
    """
    checks.positive_int("repeats", repeats)
    checks.in_range("min_seconds", min_seconds, 0.0, 10.0, low_inclusive=False)
    jax.block_until_ready(fn(*args))  # warm-up: compile, allocate
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    once = time.perf_counter() - start
    inner = max(1, int(min_seconds / max(once, 1e-7)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def matmul_intensity(n: int, bytes_per_element: int = 4) -> float:
    """Arithmetic intensity of an ``n × n`` matrix product: ``2n³`` FLOP over ``3n²`` elements
    moved."""
    checks.positive_int("n", n)
    checks.positive_int("bytes_per_element", bytes_per_element)
    return 2.0 * n**3 / (3.0 * n**2 * bytes_per_element)


def matmul_throughput(
    sizes: Sequence[int] = SIZES, *, repeats: int = 5, seed: int = 0
) -> dict[int, float]:
    """GFLOP/s of a jitted ``float32`` ``jnp.dot`` for each square size ``n`` (``2n³`` FLOP per
    call)."""
    sizes = _check_sizes(sizes)
    checks.positive_int("repeats", repeats)
    dot = jax.jit(jnp.dot)
    result = {}
    for n in sizes:
        ka, kb = jax.random.split(jax.random.fold_in(jax.random.key(seed), n))
        a = jax.random.normal(ka, (n, n), jnp.float32)  # [n, n]
        b = jax.random.normal(kb, (n, n), jnp.float32)  # [n, n]
        result[n] = 2.0 * n**3 / median_seconds(dot, a, b, repeats=repeats) / 1e9
    return result


def bandwidth_gbs(n_elements: int = 2**25, *, repeats: int = 5) -> float:
    """Read bandwidth in GB/s from a jitted sum over ``float32[n_elements]``.

    A sum reads each element once and writes nothing, so no fresh output buffer has to be
    allocated and touched on every call (which, for an element-wise op, measures the operating
    system's page handling as much as the memory).
    """
    checks.positive_int("n_elements", n_elements)
    checks.positive_int("repeats", repeats)
    x = jnp.ones((n_elements,), jnp.float32)
    seconds = median_seconds(jax.jit(jnp.sum), x, repeats=repeats)
    return 4 * n_elements / seconds / 1e9  # one read of 4 bytes per element


def training_times(
    rows: list[milestones.Milestone], flops_per_second: float
) -> list[tuple[str, int, float, float]]:
    """``(system, year, training FLOP, seconds)`` for every milestone with a compute figure.

    The compute is the reported figure where there is one, else ``6 · N · D``; the time assumes
    the whole run proceeds at ``flops_per_second``.
    """
    checks.in_range("flops_per_second", flops_per_second, 0.0, float("inf"), low_inclusive=False)
    result = []
    for row in rows:
        flop = (
            row.training_compute_flop
            if row.training_compute_flop is not None
            else milestones.compute_6nd(row)
        )
        if flop is not None:
            result.append((row.system, row.year, flop, flop / flops_per_second))
    return result


# --8<-- [end:experiment]


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least two matrix sizes, got {sizes}")
    for i, n in enumerate(sizes):
        checks.positive_int(f"sizes[{i}]", n)
        if n > 8192:
            raise ValueError(
                f"sizes[{i}]: expected at most 8192 (a larger "
                f"product takes minutes on a CPU), got {n}"
            )
    return sizes


def _duration(seconds: float) -> str:
    if seconds < SECONDS_PER_DAY:
        return f"{seconds / 3600:.1f} hours"
    if seconds < SECONDS_PER_YEAR:
        return f"{seconds / SECONDS_PER_DAY:.0f} days"
    return f"{seconds / SECONDS_PER_YEAR:,.0f} years"


def experiment(
    seed: int = 0, *, progress: bool | None = None, sizes: Sequence[int] = SIZES, repeats: int = 5
) -> Report:
    """Measure matmul throughput and bandwidth, then time the milestone runs at the measured peak.

    Metrics: ``gflops_n{n}`` for each size, ``peak_gflops`` (the best of them),
    ``bandwidth_gbs``, ``ridge_flop_per_byte`` (peak over bandwidth), ``crossover_n`` (the
    matrix side whose intensity ``n/6`` equals the ridge point), and ``years_<system>`` for the
    milestone runs (GPT-3, Llama 3 405B) at this machine's peak.
    """
    checks.non_negative_int("seed", seed)
    sizes = _check_sizes(sizes)
    checks.positive_int("repeats", repeats)
    del progress  # nothing here runs long enough to need a progress bar
    start = time.perf_counter()
    gflops = matmul_throughput(sizes, repeats=repeats, seed=seed)
    bandwidth = bandwidth_gbs(repeats=repeats)
    peak = max(gflops.values())
    ridge = peak / bandwidth  # FLOP per byte
    crossover = 6.0 * ridge  # the n with n/6 = ridge

    chip = hardware.by_name(hardware.load())[REFERENCE_CHIP]
    chip_flops = hardware.ml_peak_tflops(chip) * 1e12
    rows = milestones.load()
    here = training_times(rows, peak * 1e9)
    there = training_times(rows, chip_flops)

    metrics = {f"gflops_n{n}": float(v) for n, v in gflops.items()}
    metrics |= {
        "peak_gflops": float(peak),
        "bandwidth_gbs": float(bandwidth),
        "ridge_flop_per_byte": float(ridge),
        "crossover_n": float(crossover),
    }
    for system, _, _, seconds in here:
        if system in ("GPT-3", "Llama 3 405B"):
            metrics[f"years_{system.replace(' ', '_')}"] = seconds / SECONDS_PER_YEAR

    lines = [
        f"float32 matrix product on this machine ({jax.devices()[0].device_kind}, "
        f"{len(jax.devices())} device)"
    ]
    lines.append(f"{'n':>6} {'FLOP/byte':>10} {'GFLOP/s':>9}")
    lines += [f"{n:>6} {matmul_intensity(n):>10.1f} {v:>9.1f}" for n, v in gflops.items()]
    lines.append(f"memory read bandwidth (a sum over 128 MiB): {bandwidth:.1f} GB/s")
    lines.append(
        f"ridge point: {peak:.0f} GFLOP/s / {bandwidth:.1f} GB/s = {ridge:.1f} FLOP/byte"
        f" -> matrices smaller than about n = {crossover:.0f} cannot keep the arithmetic busy"
    )
    lines.append("")
    lines.append(
        "training runs at this machine's peak, and on "
        f"one {REFERENCE_CHIP} at its dense 16-bit peak"
    )
    lines.append(
        f"{'system':<22} {'year':>4} {'FLOP':>9} {'this machine':>16} {'one ' + REFERENCE_CHIP:>18}"
    )
    for (system, year, flop, seconds), (_, _, _, chip_seconds) in zip(here, there):
        lines.append(
            f"{system:<22} {year:>4} {flop:>9.1e} {_duration(seconds):>16} "
            f"{_duration(chip_seconds):>18}"
        )
    lines.append("(peak rates: real runs reach a fraction of peak, so the true times are longer)")
    fig = _figure(gflops, peak, bandwidth, here, there)
    return Report(
        "2.5 Compute — this machine's arithmetic", metrics, lines, fig, time.perf_counter() - start
    )


def _figure(gflops, peak, bandwidth, here, there):
    fig, (ax_roof, ax_runs) = plotting.figure(2, 1, height=3.8)
    sizes = np.array(list(gflops))
    intensity = np.array([matmul_intensity(int(n)) for n in sizes])
    ax_roof.plot(
        intensity, list(gflops.values()), "o-", color=plotting.PALETTE[0], label="measured jnp.dot"
    )
    for n, x, y in zip(sizes, intensity, gflops.values()):
        ax_roof.annotate(f"n={n}", (x, y), xytext=(4, -10), textcoords="offset points", fontsize=8)
    grid = np.geomspace(intensity.min() / 2, intensity.max() * 2, 100)
    ax_roof.plot(grid, np.minimum(peak, bandwidth * grid), "--", color=plotting.PALETTE[1],
                 label="roofline: min(peak, bandwidth × intensity)")  # fmt: skip
    ax_roof.set(
        xscale="log",
        yscale="log",
        xlabel="arithmetic intensity (FLOP per byte)",
        ylabel="GFLOP/s",
        title="Matrix product on this machine",
    )
    ax_roof.legend(fontsize=8, loc="lower right")
    names = [s for s, *_ in here]
    y = np.arange(len(names))
    ax_runs.barh(
        y + 0.2,
        [s / SECONDS_PER_DAY for *_, s in here],
        height=0.4,
        color=plotting.PALETTE[0],
        label="this machine, at its peak",
    )
    ax_runs.barh(
        y - 0.2,
        [s / SECONDS_PER_DAY for *_, s in there],
        height=0.4,
        color=plotting.PALETTE[2],
        label=f"one {REFERENCE_CHIP}, at its peak",
    )
    ax_runs.set_yticks(y, names, fontsize=8)
    ax_runs.invert_yaxis()
    ax_runs.axvline(365.25, color=plotting.PALETTE[3], lw=1, ls=":")
    ax_runs.annotate(
        "one year",
        (365.25, len(names) - 0.6),
        xytext=(3, 0),
        textcoords="offset points",
        fontsize=8,
    )
    ax_runs.set(
        xscale="log", xlabel="days of computation", title="The milestone runs, priced in time"
    )
    ax_runs.legend(fontsize=8, loc="upper right")
    return fig
