"""Chapter 2.7, *Energy* — the energy of a small training run on this machine, scaled up.

A multi-layer perceptron learns the digits for a few thousand steps. The experiment counts
the arithmetic the run did — ``6 · N · D`` floating-point operations for ``N`` weights and
``D`` training examples, the rule the milestone file uses for language models (Kaplan et al.
2020) — and the energy it took:

* **measured**, where the operating system exposes the processor's energy counters (Intel's
  RAPL, and AMD's under the same name, in ``/sys/class/powercap``; usually readable only by
  root since 2020, so most machines do not let this code read them), or
* **estimated** otherwise, as an assumed power per busy core (:data:`WATTS_PER_CORE`, a
  server processor's rated power shared over its cores) times the CPU-seconds the run used.
  The report says which of the two it is.

Energy per operation is then the bridge to the milestones. A run of ``F`` operations on a
chip that delivers ``P`` FLOP/s while drawing ``W`` watts needs ``F · W / P`` joules: this
machine's measured ``W / P``, and each accelerator's rated power over its peak 16-bit
throughput from ``essays/hardware.csv`` (:mod:`impl.essay.hardware`). The second is a lower
bound — a chip running flat out at its rated power, with nothing else in the data centre
drawing power — and the report sets it beside the energy published for the same runs.

Shapes: digits ``x`` are ``float32[b, 64]``; labels ``int32[b]``; the network is
``64 → 256 → 256 → 10`` (:func:`impl.deep_networks.dnn.mlp`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp

from impl import checks, data, plotting
from impl.deep_networks import dnn
from impl.essay import hardware, milestones
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = [
    "CHIP_OF",
    "PUBLISHED",
    "RAPL_ROOT",
    "WATTS_PER_CORE",
    "Published",
    "RunEnergy",
    "chip_for",
    "chip_joules_per_flop",
    "experiment",
    "joules_between",
    "milestone_energy",
    "read_rapl",
    "training_flop",
]

RAPL_ROOT = Path("/sys/class/powercap")
# The assumed power of one busy core when no counter can be read: AMD's EPYC 9654, the newest
# server processor in essays/hardware.csv, is rated at 360 W for its 96 cores (AMD's product
# page), 3.75 W a core. An estimate, not a measurement: a core's share of the rated power, with
# memory, disks, fans and the power supply's losses left out.
WATTS_PER_CORE = 360.0 / 96
SIZES = (64, 256, 256, 10)
CHUNK = 250

# The chip each milestone's `hardware` text names, as a row of hardware.csv (same compute and
# rated power as the variant the paper used: the A100's 80 GB version differs only in memory).
CHIP_OF = {
    "P100": "Tesla P100 (SXM2)",
    "V100": "Tesla V100 (SXM2)",
    "A100": "A100 (SXM4, 40 GB)",
    "H100": "H100 (SXM5)",
    "TPU v3": "TPU v3",
    "TPU v4": "TPU v4",
    "GTX 580": "GeForce GTX 580",
}


class Published(NamedTuple):
    """Training energy a paper or model card reports for a milestone, in megawatt-hours."""

    system: str
    mwh: float
    source: str


PUBLISHED = (
    Published("GShard (600B MoE)", 24.1, "Patterson et al. 2021, arXiv:2104.10350, Table 4"),
    Published("GPT-3", 1287.0, "Patterson et al. 2021, arXiv:2104.10350, Table 4"),
    Published("BLOOM", 433.0, "Luccioni, Viguier & Ligozat 2023, JMLR 24: the final training run"),
    # Model cards state GPU-hours and a power per GPU; their product is the energy they imply.
    Published("Llama 2 70B", 1_720_320 * 400 / 1e6,
              "Touvron et al. 2023, arXiv:2307.09288, Table 2: GPU-h × 400 W"),
    Published("Llama 3 405B", 30.84e6 * 700 / 1e6,
              "Meta, Llama 3.1 model card (2024): 30.84 M GPU-hours × 700 W"),
)  # fmt: skip


# --8<-- [start:core]
def training_flop(n_weights: int, examples: int) -> float:
    """Arithmetic of training: ``6 · N · D`` — 2 FLOP per weight per example forwards, 4
    backwards."""
    checks.positive_int("n_weights", n_weights)
    checks.positive_int("examples", examples)
    return 6.0 * n_weights * examples


def read_rapl(root: str | Path = RAPL_ROOT) -> dict[str, tuple[int, int]] | None:
    """The processor packages' energy counters, ``{zone: (energy_uj, max_energy_range_uj)}``.

    Only top-level zones (``intel-rapl:0``, ...) are read: their sub-zones (cores, memory) are
    parts of the same package and would be counted twice. ``None`` when there are no counters
    or they cannot be read (on most Linux systems only root may read them).
    """
    root = Path(root)
    try:
        zones = sorted(p for p in root.iterdir() if re.fullmatch(r"[a-z-]*rapl:\d+", p.name))
        counters = {
            z.name: (
                int((z / "energy_uj").read_text()),
                int((z / "max_energy_range_uj").read_text()),
            )
            for z in zones
        }
    except (OSError, ValueError):  # missing, unreadable or garbled: no measurement
        return None
    return counters or None


def joules_between(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """Energy between two :func:`read_rapl` readings, in joules; a counter may wrap around once."""
    if set(before) != set(after):
        raise ValueError(f"after: expected the zones {sorted(before)}, got {sorted(after)}")
    total = 0
    for zone, (start, wrap) in before.items():
        end = after[zone][0]
        # the counter passed its maximum
        total += end - start if end >= start else end + wrap - start
    return total * 1e-6


def chip_joules_per_flop(chip: hardware.Chip) -> float | None:
    """Joules per operation of a chip at its peak for training: rated watts / peak FLOP/s."""
    peak = hardware.ml_peak_tflops(chip)
    if peak is None or chip.power_w is None:
        return None
    return chip.power_w / (peak * 1e12)


# --8<-- [end:core]


def chip_for(hardware_text: str, chips: dict[str, hardware.Chip]) -> hardware.Chip | None:
    """The row of hardware.csv that a milestone's ``hardware`` text names, or ``None``."""
    for token, name in CHIP_OF.items():
        if (
            re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![0-9])", hardware_text)
            and name in chips
        ):
            return chips[name]
    return None


class RunEnergy(NamedTuple):
    """A milestone's training compute and the energy it implies (``None`` where unknown)."""

    system: str
    year: int
    flop: float
    reported: bool  # compute reported in the paper (True) or 6·N·D from its parameters and tokens
    chip: str | None
    chip_mwh: float | None  # on its own chips at peak and rated power: a lower bound
    here_mwh: float  # at this machine's joules per FLOP
    published_mwh: float | None


def milestone_energy(joules_per_flop_here: float, utilisation: float = 1.0) -> list[RunEnergy]:
    """Energy of every milestone whose compute is known, at this machine's rate and on its own
    chips.

    ``utilisation`` is the share of the chips' peak the run achieved (1 gives the lower bound).
    """
    checks.in_range("joules_per_flop_here", joules_per_flop_here, 0.0, 1.0, low_inclusive=False)
    checks.in_range("utilisation", utilisation, 0.0, 1.0, low_inclusive=False)
    chips = hardware.by_name(hardware.load())
    published = {p.system: p.mwh for p in PUBLISHED}
    runs = []
    for row in milestones.load():
        flop = row.training_compute_flop or milestones.compute_6nd(row)
        if flop is None:
            continue
        chip = chip_for(row.hardware, chips)
        per_flop = chip_joules_per_flop(chip) if chip is not None else None
        chip_mwh = flop * per_flop / utilisation / 3.6e9 if per_flop is not None else None
        runs.append(
            RunEnergy(
                row.system,
                row.year,
                flop,
                row.training_compute_flop is not None,
                chip.name if chip else None,
                chip_mwh,
                flop * joules_per_flop_here / 3.6e9,
                published.get(row.system),
            )
        )
    return runs


def loss_fn(params, batch, key):
    """Mean cross-entropy of the perceptron on a minibatch (``key`` unused: no dropout)."""
    del key
    logits = dnn.mlp(params, batch["x"], activation="tanh")  # [b, 10]
    return dnn.cross_entropy(logits, batch["y"])


OPTIMIZER = adam(learning_rate=1e-3)  # one object, so the warm-up's compiled loop is reused


def _process_seconds() -> float:
    return time.process_time()  # CPU time of every thread of this process, XLA's included


# --8<-- [start:experiment]
def experiment(
    seed: int = 0,
    *,
    progress: bool | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    watts_per_core: float = WATTS_PER_CORE,
    rapl_root: str | Path = RAPL_ROOT,
) -> Report:
    """Train the perceptron for ``steps`` steps, measure (or estimate) the energy, scale it up.

    A first call of :data:`CHUNK` steps compiles the loop, so that the timed run measures
    arithmetic, not compilation. Metrics: ``flop``, ``seconds``, ``cpu_seconds``,
    ``gflop_per_s``, ``joules``, ``joules_per_flop``, ``measured`` (1 when read from
    counters, 0 when estimated), ``test_accuracy``, and for each milestone with known compute
    ``mwh_here_<slug>``, ``mwh_chip_<slug>`` (where its chip is in the hardware file) and
    ``mwh_published_<slug>`` (where a figure is published).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("batch_size", batch_size)
    checks.in_range("watts_per_core", watts_per_core, 0.0, 1000.0, low_inclusive=False)
    if steps % CHUNK:
        raise ValueError(f"steps: expected a multiple of {CHUNK}, got {steps}")
    start = time.perf_counter()
    split = data.load_digits()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    params = dnn.init_mlp(jax.random.key(seed), SIZES)
    n_weights = sum(int(leaf.size) for leaf in jax.tree.leaves(params))
    batch = {"x": x, "y": y}
    kwargs = dict(batch_size=batch_size, chunk=CHUNK, progress=progress, label="2.7 energy")
    # compile once, untimed
    train(loss_fn, params, OPTIMIZER, batch, key=seed, steps=CHUNK, **kwargs)

    before, cpu0, wall0 = read_rapl(rapl_root), _process_seconds(), time.perf_counter()
    result = train(loss_fn, params, OPTIMIZER, batch, key=seed, steps=steps, **kwargs)
    after, cpu1, wall1 = read_rapl(rapl_root), _process_seconds(), time.perf_counter()

    flop = training_flop(n_weights, steps * batch_size)
    seconds, cpu_seconds = wall1 - wall0, cpu1 - cpu0
    measured = before is not None and after is not None and set(before) == set(after)
    joules = joules_between(before, after) if measured else watts_per_core * cpu_seconds
    if not joules > 0:  # a counter that did not move: fall back to the estimate
        measured, joules = False, watts_per_core * cpu_seconds
    per_flop = joules / flop
    test_acc = float(
        dnn.accuracy(
            dnn.mlp(result.params, jnp.asarray(split.x_test), "tanh"), jnp.asarray(split.y_test)
        )
    )
    runs = milestone_energy(per_flop)
    # --8<-- [end:experiment]

    metrics = {
        "flop": flop, "seconds": seconds, "cpu_seconds": cpu_seconds,
        "gflop_per_s": flop / seconds / 1e9, "joules": joules, "joules_per_flop": per_flop,
        "measured": float(measured), "test_accuracy": test_acc,
    }  # fmt: skip
    for run in runs:
        slug = _slug(run.system)
        metrics[f"mwh_here_{slug}"] = run.here_mwh
        if run.chip_mwh is not None:
            metrics[f"mwh_chip_{slug}"] = run.chip_mwh
        if run.published_mwh is not None:
            metrics[f"mwh_published_{slug}"] = run.published_mwh
    how = (
        "measured by the processor's energy counters (RAPL), whole package"
        if measured
        else "ESTIMATED: no readable energy counters; "
        f"{watts_per_core:.2f} W per busy core × {cpu_seconds:.1f} CPU-s"
    )
    lines = [
        f"toy run: {n_weights:,} weights, {steps} steps of "
        f"{batch_size} digits, test accuracy {test_acc:.1%}",
        f"arithmetic 6·N·D = {flop:.3g} FLOP in {seconds:.2f} "
        f"s ({flop / seconds / 1e9:.1f} GFLOP/s achieved)",
        f"energy {joules:.1f} J — {how}",
        f"this machine: {per_flop * 1e12:.0f} pJ per FLOP",
        "",
        f"{'milestone':<20} {'year':>4} {'FLOP':>9}  {'chip':<18} "
        f"{'its chips*':>10} {'published':>10} {'this CPU':>9} {'core-years':>11}",
    ]
    for run in runs:
        chip = run.chip or "—"
        chip_mwh = _energy_text(run.chip_mwh) if run.chip_mwh is not None else "—"
        pub = _energy_text(run.published_mwh) if run.published_mwh is not None else "—"
        years_here = run.flop / (flop / cpu_seconds) / (365.25 * 86400)  # core-years at this rate
        lines.append(
            f"{run.system:<20} {run.year:>4} {run.flop:>9.2g}{'' if run.reported else '~'} "
            f"{chip[:18]:<18} {chip_mwh:>10} {pub:>10} {_energy_text(run.here_mwh):>9} "
            f"{years_here:>11,.0f}"
        )
    lines += [
        "~ compute estimated as 6·N·D from the reported parameters and tokens",
        "* at the chips' peak 16-bit throughput and rated "
        "power: a lower bound on the chips' own energy",
    ]
    fig = _figure(per_flop, measured, runs)
    return Report("2.7 Energy — a toy run's joules, scaled to the milestones", metrics, lines, fig,
                  time.perf_counter() - start)  # fmt: skip


def _energy_text(mwh: float) -> str:
    """Megawatt-hours as a short string in a readable unit: ``15 kWh``, ``1.3 GWh``."""
    for unit, scale in (("GWh", 1e3), ("MWh", 1.0), ("kWh", 1e-3)):
        if mwh >= scale:
            return f"{mwh / scale:.3g} {unit}"
    return f"{mwh * 1e6:.3g} Wh"


def _slug(name: str) -> str:
    return "_".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def _figure(per_flop_here: float, measured: bool, runs: list[RunEnergy]):
    fig, (ax_chip, ax_runs) = plotting.figure(2, 1, height=4.2)
    chips = hardware.load()
    for kind, marker, color in (("gpu", "o", 0), ("tpu", "s", 1), ("cpu", "^", 2)):
        pts = [(c.year, chip_joules_per_flop(c), c.name) for c in chips if c.kind == kind]
        pts = [(yr, j, n) for yr, j, n in pts if j is not None]
        ax_chip.scatter(
            [p[0] for p in pts],
            [p[1] * 1e12 for p in pts],
            s=24,
            marker=marker,
            zorder=3,
            color=plotting.PALETTE[color],
            label=kind.upper(),
        )
        for yr, j, name in pts:
            if name in _CHIP_LABELS:
                ax_chip.annotate(
                    name, (yr, j * 1e12), xytext=(4, 3), textcoords="offset points", fontsize=8
                )
    ax_chip.scatter(
        [2026],
        [per_flop_here * 1e12],
        s=90,
        marker="*",
        color=plotting.PALETTE[3],
        zorder=4,
        label="this machine, " + ("measured" if measured else "estimated"),
    )
    ax_chip.set(yscale="log", xlabel="year", ylabel="picojoules per FLOP (rated power / peak)",
                title="Energy per operation at peak", xlim=(2005, 2028))  # fmt: skip
    ax_chip.legend(fontsize=8, loc="lower left")

    for i, (label, get, marker) in enumerate((
        ("on its own chips, at peak (lower bound)", lambda r: r.chip_mwh, "o"),
        ("published", lambda r: r.published_mwh, "D"),
    )):  # fmt: skip
        pts = [(r.year, get(r), r.system) for r in runs if get(r) is not None]
        ax_runs.scatter(
            [p[0] + 0.12 * i for p in pts],
            [p[1] for p in pts],
            s=34,
            marker=marker,
            zorder=3,
            color=plotting.PALETTE[i],
            label=label,
        )
        if i == 0:
            for yr, mwh, name in pts:
                ax_runs.annotate(
                    name, (yr, mwh), xytext=(4, -9), textcoords="offset points", fontsize=8
                )
    extra = [p for p in PUBLISHED if p.system not in {r.system for r in runs}]
    years = {r.system: r.year for r in milestones.load()}
    ax_runs.scatter(
        [years[p.system] + 0.12 for p in extra],
        [p.mwh for p in extra],
        s=34,
        marker="D",
        zorder=3,
        color=plotting.PALETTE[1],
    )
    for p in extra:
        ax_runs.annotate(
            p.system,
            (years[p.system] + 0.12, p.mwh),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=8,
        )
    ax_runs.set(
        yscale="log",
        xlabel="year",
        ylabel="training energy (MWh)",
        title="Energy of training runs",
        xlim=(2016.5, 2026),
    )
    ax_runs.legend(fontsize=8, loc="upper left")
    return fig


_CHIP_LABELS = {"GeForce 8800 GTX", "Tesla K80", "Tesla V100 (SXM2)", "H100 (SXM5)", "B200 (HGX)",
                "Xeon X5570", "EPYC 9654", "Tesla P100 (SXM2)"}  # fmt: skip
