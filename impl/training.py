"""The one training loop every topic uses.

``train`` runs ``steps`` optimisation steps of ``loss_fn`` with an Optax-style
``GradientTransformation``. Steps run in chunks inside `jax.lax.scan`, so a chunk of
hundreds of steps is one compiled call with no Python in between. After each chunk the loop

* checks every metric for NaN/inf and raises `TrainingDiverged` naming the step and metric,
* optionally evaluates ``eval_fn(params)`` (jitted once),
* advances a progress bar (only on an interactive terminal; silent in CI and site builds).

Determinism: the key for step ``t`` is ``fold_in(key, t)``, so results depend on the seed and
the number of steps only — not on the chunk size, and not on how many devices run it.

Devices: given several devices, the batch is sharded across them along a ``"data"`` mesh
axis with `jax.sharding` (data parallelism); parameters and the dataset are replicated
and XLA inserts the gradient all-reduce. On one device the same code runs unchanged.

The loss function's contract:

```python
loss_fn(params, batch, key) -> loss                      # a scalar
loss_fn(params, batch, key) -> (loss, metrics)           # metrics: dict of scalars
# with model_state=... (e.g. batch-norm statistics):
loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))
```

``batch`` is ``data`` indexed by ``batch_size`` random example indices (a pytree of arrays
sharing their leading dimension), or the whole of ``data`` when ``batch_size`` is ``None``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from impl import checks

__all__ = ["Progress", "TrainResult", "TrainingDiverged", "even_chunk", "first_step", "progress_enabled", "train"]

PyTree = Any


class TrainingDiverged(FloatingPointError):
    """A metric became NaN or infinite. ``step`` is 1-based: the step whose update produced it."""

    def __init__(self, step: int, metric: str, value: float):
        self.step, self.metric, self.value = step, metric, value
        super().__init__(f"training diverged at step {step}: {metric} = {value}")


class TrainResult(NamedTuple):
    """What `train` returns.

    Attributes:
        params: final parameters.
        opt_state: final optimiser state (pass it back in to continue training).
        model_state: final model state (``None`` unless ``model_state`` was given).
        history: per-step metrics, ``{"loss": float[steps], ...}`` as numpy arrays.
        evals: ``{"step": int[k], name: float[k], ...}`` from ``eval_fn`` after each chunk.
        seconds: wall-clock time of the whole call, compilation included.
    """

    params: PyTree
    opt_state: PyTree
    model_state: PyTree
    history: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    seconds: float


# ---------------------------------------------------------------------------------------
# Progress bar: one line on stderr, drawn only on an interactive terminal.
# ---------------------------------------------------------------------------------------
def progress_enabled(progress: bool | None) -> bool:
    """``progress=None`` means: on for an interactive terminal, off in CI and site builds."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI") or os.environ.get("IMPL_PROGRESS", "1") == "0":
        return False
    return sys.stderr.isatty()


class Progress:
    """A minimal text progress bar: ``label [#####.....]  50%  500/1000  loss 0.1234``."""

    def __init__(self, total: int, label: str = "train", enabled: bool = True, width: int = 28):
        self.total, self.label, self.enabled, self.width = total, label, enabled, width
        self.start = time.perf_counter()

    def update(self, done: int, **metrics: float) -> None:
        if not self.enabled:
            return
        frac = done / max(self.total, 1)
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        extra = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label} [{bar}] {frac:4.0%}  {done}/{self.total}  {extra}  {elapsed:.1f}s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------
# The compiled chunk: `length` steps under lax.scan.
# ---------------------------------------------------------------------------------------
def _flat_metrics(metrics: dict, prefix: str = "") -> dict[str, jax.Array]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``. A metric may be an array (e.g. one value per
    model when several train side by side); its history then gains that shape per step."""
    flat = {}
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, key + "/"))
        else:
            flat[key] = value
    return flat


def _as_loss_and_metrics(out) -> tuple[jax.Array, dict]:
    if isinstance(out, tuple):
        loss, metrics = out
        return loss, dict(metrics)
    return out, {}


@functools.lru_cache(maxsize=64)
def _compiled_chunk(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    batch_size: int | None,
    stateful: bool,
    mesh: Mesh | None,
) -> Callable:
    """Build (once per configuration) the jitted function running a chunk of steps.

    Cached so that a second ``train`` call with the same ``loss_fn`` and ``optimizer``
    reuses the compiled executable instead of tracing again.
    """
    batch_sharding = NamedSharding(mesh, PartitionSpec("data")) if mesh is not None else None

    def sample(data, key):
        if batch_size is None:
            return data
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(key, (batch_size,), 0, n)
        batch = jax.tree.map(lambda a: a[idx], data)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return batch

    def step(carry, t, data, key):
        params, opt_state, model_state = carry
        k_batch, k_loss = jax.random.split(jax.random.fold_in(key, t))
        batch = sample(data, k_batch)
        if stateful:

            def objective(p):
                loss, (metrics, new_state) = loss_fn(p, model_state, batch, k_loss)
                return loss, (dict(metrics), new_state)

            (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        else:
            objective = lambda p: _as_loss_and_metrics(loss_fn(p, batch, k_loss))  # noqa: E731
            (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = _flat_metrics({"loss": loss, **metrics})
        return (params, opt_state, model_state), metrics

    @functools.partial(jax.jit, static_argnames="length")
    def run_chunk(carry, data, key, first_step, *, length: int):
        ts = first_step + jnp.arange(length)
        return jax.lax.scan(lambda c, t: step(c, t, data, key), carry, ts)

    return run_chunk


def _mesh_for(batch_size: int | None, devices: Sequence[jax.Device]) -> Mesh | None:
    """The largest data-parallel mesh whose size divides the batch (``None`` for one device)."""
    if batch_size is None or len(devices) < 2:
        return None
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if n == 1:
        return None
    return Mesh(np.asarray(devices[:n]), ("data",))


def train(
    loss_fn: Callable,
    params: PyTree,
    optimizer: optax.GradientTransformation,
    data: PyTree,
    *,
    key: jax.Array | int,
    steps: int,
    batch_size: int | None = None,
    chunk: int = 250,
    eval_fn: Callable[[PyTree], dict] | None = None,
    opt_state: PyTree = None,
    model_state: PyTree = None,
    progress: bool | None = None,
    label: str = "train",
    devices: Sequence[jax.Device] | None = None,
) -> TrainResult:
    """Train ``params`` for ``steps`` steps; see the module docstring for ``loss_fn``'s contract.

    Args:
        loss_fn: the objective; its identity (with ``optimizer``'s) keys the compile cache.
        params: initial parameters (any pytree of arrays).
        optimizer: an ``optax.GradientTransformation`` (the project's own, from
            `impl.optimization`, or Optax's).
        data: pytree of arrays with a shared leading dimension ``n``.
        key: PRNG key or int seed; drives batch sampling and the ``key`` given to ``loss_fn``.
        steps: number of optimisation steps (> 0).
        batch_size: examples per step, sampled with replacement; ``None`` = full batch.
        chunk: steps per compiled ``lax.scan`` call; also the evaluation period.
        eval_fn: optional ``params -> dict of scalars`` (``(params, model_state) -> dict``
            when ``model_state`` is given), run after every chunk.
        opt_state: resume from this optimiser state instead of ``optimizer.init(params)``.
        model_state: non-trained state threaded through ``loss_fn`` (e.g. running statistics).
        progress: show a progress bar; ``None`` = only on an interactive terminal.
        label: the progress bar's label.
        devices: devices to shard the batch over; default ``jax.devices()``.

    Returns:
        A `TrainResult`.

    Raises:
        TrainingDiverged: when any metric becomes NaN or infinite; names the first bad step.
        ValueError: for a bad ``steps``, ``chunk``, ``batch_size`` or inconsistent ``data``.
    """
    start = time.perf_counter()
    key = checks.prng_key("key", key)
    steps = checks.positive_int("steps", steps)
    chunk = checks.positive_int("chunk", chunk)
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data: expected a pytree with at least one array")
    n = leaves[0].shape[0] if leaves[0].ndim else 0
    if any(leaf.ndim == 0 or leaf.shape[0] != n for leaf in leaves):
        shapes = [tuple(leaf.shape) for leaf in leaves]
        raise ValueError(f"data: expected arrays sharing a leading (example) dimension, got shapes {shapes}")
    if batch_size is not None:
        checks.positive_int("batch_size", batch_size)
    stateful = model_state is not None
    mesh = _mesh_for(batch_size, list(devices) if devices is not None else jax.devices())
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        params, data, model_state = jax.device_put((params, data, model_state), replicated)
    elif devices is not None:
        params, data, model_state = jax.device_put((params, data, model_state), devices[0])
    if opt_state is None:
        opt_state = optimizer.init(params)
    run_chunk = _compiled_chunk(loss_fn, optimizer, batch_size, stateful, mesh)
    jitted_eval = _compiled_eval(eval_fn, stateful) if eval_fn is not None else None

    bar = Progress(steps, label, progress_enabled(progress))
    carry = (params, opt_state, model_state)
    history: dict[str, list[np.ndarray]] = {}
    evals: dict[str, list] = {"step": []}
    done = 0
    try:
        while done < steps:
            length = min(chunk, steps - done)
            carry, metrics = run_chunk(carry, data, key, jnp.int32(done), length=length)
            metrics = jax.device_get(metrics)  # blocks: one chunk in flight at a time
            _check_finite(metrics, first_step=done + 1)
            for name, values in metrics.items():
                history.setdefault(name, []).append(np.asarray(values))
            done += length
            if jitted_eval is not None:
                args = (carry[0], carry[2]) if stateful else (carry[0],)
                scores = jax.device_get(jitted_eval(*args))
                _check_finite({k: np.asarray([v]) for k, v in scores.items()}, first_step=done, where="eval")
                evals["step"].append(done)
                for name, value in scores.items():
                    evals.setdefault(name, []).append(float(value))
            bar.update(done, loss=float(history["loss"][-1][-1]))
    finally:
        bar.close()
    params, opt_state, model_state = carry
    return TrainResult(
        params=params,
        opt_state=opt_state,
        model_state=model_state if stateful else None,
        history={k: np.concatenate(v) for k, v in history.items()},
        evals={k: np.asarray(v) for k, v in evals.items()} if eval_fn is not None else {},
        seconds=time.perf_counter() - start,
    )


@functools.lru_cache(maxsize=64)
def _compiled_eval(eval_fn: Callable, stateful: bool) -> Callable:
    del stateful  # part of the cache key only: the arity differs
    return jax.jit(eval_fn)


def _check_finite(metrics: dict[str, np.ndarray], first_step: int, where: str = "train") -> None:
    """Raise `TrainingDiverged` at the earliest non-finite value ("loss" checked first)."""
    worst: tuple[int, str, float] | None = None
    for name in sorted(metrics, key=lambda k: k != "loss"):
        values = np.asarray(metrics[name]).reshape(len(np.atleast_1d(metrics[name])), -1)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size and (worst is None or bad[0] < worst[0]):
            worst = (int(bad[0]), name, float(values[bad[0]][~np.isfinite(values[bad[0]])][0]))
    if worst is not None:
        offset, name, value = worst
        label = name if where == "train" else f"{where} {name}"
        raise TrainingDiverged(first_step + offset, label, value)


def even_chunk(steps: int, largest: int = 250) -> int:
    """The largest ``chunk`` for :func:`train` that divides ``steps`` and is at most ``largest``.

    Equal chunks mean one compiled loop; a ragged last chunk would compile a second one.
    """
    checks.positive_int("steps", steps)
    checks.positive_int("largest", largest)
    return max(c for c in range(1, min(steps, largest) + 1) if steps % c == 0)


def first_step(values, threshold: float, *, window: int, below: bool = True) -> int | None:
    """How many steps it took for the ``window``-step running mean of ``values [steps]`` to get
    below ``threshold`` (at or above it if ``below=False``); ``None`` if it never did.

    Averaging over a window keeps one lucky mini-batch from counting as "reached".
    """
    checks.positive_int("window", window)
    mean = np.convolve(np.asarray(values), np.ones(window) / window, mode="valid")  # mean[i]: steps i .. i + window - 1
    hits = np.flatnonzero(mean < threshold if below else mean >= threshold)
    return int(hits[0]) + window if hits.size else None


def batched(fn: Callable, x: jax.Array, batch: int = 512) -> jax.Array:
    """Apply ``fn`` to ``x`` in slices of ``batch`` rows (bounded memory for evaluation)."""
    checks.positive_int("batch", batch)
    parts = [fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return jnp.concatenate(parts) if parts else fn(x)
