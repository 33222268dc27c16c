"""The one training loop every topic uses.

``run`` runs any jitted ``step_fn(state, batch, key) -> (state, metrics)``: a GAN's two
players, a PPO round of rollouts and updates, or — the common case, ``train`` — one
optimisation step of ``loss_fn`` with an Optax-style ``GradientTransformation``. Steps run in
chunks inside `jax.lax.scan`, so a chunk of hundreds of steps is one compiled call with no
Python in between. After each chunk the loop

* checks every metric for NaN/inf and raises `TrainingDiverged` naming the step and metric,
* optionally evaluates ``eval_fn(params)`` (jitted once),
* advances a progress bar (only on an interactive terminal; silent in CI and site builds).

Determinism: the key for step ``t`` is ``fold_in(key, t)``, so results depend on the seed and
the number of steps only — not on the chunk size, and not on how many devices run it.

Compilation: the compiled chunk is cached by *configuration* (`fingerprint`: the step's code
and the values it closes over, hyperparameters included), not by object identity, so an
optimizer or loss rebuilt with the same settings reuses it; the cache holds 64 entries.

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

import collections
import functools
import os
import sys
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from impl import checks

__all__ = [
    "COMPILE_CACHE",
    "Progress",
    "RunResult",
    "TrainResult",
    "TrainingDiverged",
    "batched",
    "even_chunk",
    "fingerprint",
    "first_step",
    "progress_enabled",
    "run",
    "train",
]

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
        sys.stderr.write(
            f"\r{self.label} [{bar}] {frac:4.0%}  {done}/{self.total}  {extra}  {elapsed:.1f}s "
        )
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


# ---------------------------------------------------------------------------------------
# The compile cache, keyed by configuration rather than by object identity.
# ---------------------------------------------------------------------------------------
_SMALL_ARRAY = 64  # arrays up to this many elements are keyed by value; larger ones by identity


class _Identity:
    """Keys an unhashable object (or a large array) by identity, keeping it alive while cached."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


def fingerprint(obj: Any, _depth: int = 0) -> Any:
    """A hashable key that is equal for two *configurations* that compute the same thing.

    Functions are keyed by their code, defaults and the fingerprints of the values they close over;
    tuples (Optax's ``GradientTransformation`` is one) and ``partial`` objects by their contents;
    numbers and strings by value; small concrete arrays (and PRNG keys) by their bytes. Anything
    else — a mutable list or dict, a large array, an unknown object, nesting deeper than 12 levels —
    by identity. So ``sgd(0.1, momentum=0.9)`` built twice gives the same key (both are closures
    over the same numbers), while ``sgd(0.2, ...)`` gives another.

    Like ``jax.jit`` itself, this assumes a function's closed-over values are not mutated after
    it is first compiled.
    """
    if _depth > 12:
        return _Identity(obj)
    deeper = functools.partial(fingerprint, _depth=_depth + 1)
    if obj is None or isinstance(obj, bool | int | str | bytes):
        return (type(obj).__name__, obj)
    if isinstance(obj, float):
        return ("float", repr(obj))  # repr tells 0.0 from -0.0 and keeps NaN equal to itself
    if isinstance(obj, functools.partial):
        return ("partial", deeper(obj.func), deeper(obj.args), deeper(obj.keywords))
    if isinstance(obj, types.FunctionType):
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(deeper(cell.cell_contents))
            except ValueError:  # an empty cell (a name assigned after the function was made)
                return _Identity(obj)
        return (
            "function",
            obj.__code__,
            deeper(obj.__defaults__),
            deeper(obj.__kwdefaults__),
            tuple(cells),
        )
    if isinstance(obj, types.MethodType):
        return ("method", deeper(obj.__func__), deeper(obj.__self__))
    if isinstance(obj, tuple):
        return (type(obj), tuple(deeper(item) for item in obj))
    if isinstance(obj, np.ndarray | np.generic | jax.Array) and not isinstance(
        obj, jax.core.Tracer
    ):
        if np.size(obj) <= _SMALL_ARRAY:
            # a typed key: its bits and its RNG
            if jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
                return ("key", str(obj.dtype), fingerprint(jax.random.key_data(obj)))
            value = np.asarray(obj)
            return ("array", str(value.dtype), value.shape, value.tobytes())
        return _Identity(obj)
    try:
        hash(obj)
    except TypeError:
        return _Identity(obj)
    return ("object", obj)


class _CompileCache:
    """A bounded LRU map from a configuration's fingerprint to its jitted chunk function."""

    def __init__(self, maxsize: int = 64):
        self.maxsize, self.entries = maxsize, collections.OrderedDict()
        self.hits = self.misses = 0

    def get(self, key, build: Callable[[], Callable]) -> Callable:
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        value = self.entries[key] = build()
        while len(self.entries) > self.maxsize:
            self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self.entries.clear()
        self.hits = self.misses = 0


COMPILE_CACHE = _CompileCache()


def _sampler(batch_size: int | None, mesh: Mesh | None) -> Callable:
    batch_sharding = NamedSharding(mesh, PartitionSpec("data")) if mesh is not None else None

    def sample(data, key):
        if batch_size is None or data is None:
            return data
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(key, (batch_size,), 0, n)
        batch = jax.tree.map(lambda a: a[idx], data)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return batch

    return sample


def _build_chunk(step_fn: Callable, batch_size: int | None, mesh: Mesh | None) -> Callable:
    """The jitted function running ``length`` steps of ``step_fn`` under ``lax.scan``."""
    sample = _sampler(batch_size, mesh)

    def one_step(state, t, data, key):
        k_batch, k_step = jax.random.split(jax.random.fold_in(key, t))
        state, metrics = step_fn(state, sample(data, k_batch), k_step)
        return state, _flat_metrics(dict(metrics))

    @functools.partial(jax.jit, static_argnames="length")
    def run_chunk(state, data, key, first_step, *, length: int):
        ts = first_step + jnp.arange(length)
        return jax.lax.scan(lambda c, t: one_step(c, t, data, key), state, ts)

    return run_chunk


def _train_step(
    loss_fn: Callable, optimizer: optax.GradientTransformation, stateful: bool
) -> Callable:
    """``train``'s step: one gradient step of ``loss_fn`` with ``optimizer`` on
    ``(params, opt_state, model_state)``."""

    def step(state, batch, key):
        params, opt_state, model_state = state
        if stateful:

            def objective(p):
                loss, (metrics, new_state) = loss_fn(p, model_state, batch, key)
                return loss, (dict(metrics), new_state)

            (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
                params
            )
        else:
            objective = lambda p: _as_loss_and_metrics(loss_fn(p, batch, key))  # noqa: E731
            (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, model_state), {"loss": loss, **metrics}

    return step


def _mesh_for(batch_size: int | None, devices: Sequence[jax.Device]) -> Mesh | None:
    """The largest data-parallel mesh whose size divides the batch (``None`` for one device)."""
    if batch_size is None or len(devices) < 2:
        return None
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if n == 1:
        return None
    return Mesh(np.asarray(devices[:n]), ("data",))


def _check_data(data: PyTree) -> None:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data: expected a pytree with at least one array")
    n = leaves[0].shape[0] if leaves[0].ndim else 0
    if any(leaf.ndim == 0 or leaf.shape[0] != n for leaf in leaves):
        shapes = [tuple(leaf.shape) for leaf in leaves]
        raise ValueError(
            f"data: expected arrays sharing a leading (example) dimension, got shapes {shapes}"
        )


class RunResult(NamedTuple):
    """What `run` returns: the final ``state``, per-step ``history``, ``evals`` and ``seconds``."""

    state: PyTree
    history: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    seconds: float


def run(
    step_fn: Callable,
    state: PyTree,
    data: PyTree = None,
    *,
    key: jax.Array | int,
    steps: int,
    batch_size: int | None = None,
    chunk: int = 250,
    eval_fn: Callable[[PyTree], dict] | None = None,
    progress: bool | None = None,
    label: str = "train",
    devices: Sequence[jax.Device] | None = None,
) -> RunResult:
    """Run any jitted ``step_fn(state, batch, key) -> (state, metrics)`` for ``steps`` steps.

    The general loop under `train`: two-player training (a GAN's alternating updates) or
    rollout-based training (PPO: roll out, compute advantages, several epochs of updates) is
    one ``step_fn`` over a state pytree of its own design. Steps run in ``lax.scan`` chunks;
    after each chunk every metric is checked for NaN/inf (`TrainingDiverged` names the step
    and the metric), ``eval_fn(state)`` runs (jitted), and the progress bar advances.

    Args:
        step_fn: ``(state, batch, key) -> (state, metrics)``; metrics a (nested) dict of arrays.
            Its *configuration* keys the compile cache (`fingerprint`): a step rebuilt from the
            same code and hyperparameters reuses the compiled loop.
        state: any pytree of arrays (parameters, optimiser states, counters, …).
        data: pytree of arrays with a shared leading dimension, or ``None`` (the step makes
            its own data, e.g. by sampling a generator or rolling out a policy).
        key: PRNG key or int seed. Step ``t`` gets ``fold_in(key, t)``, split into the batch
            key and the key handed to ``step_fn``.
        steps: number of steps (> 0).
        batch_size: examples per step, sampled with replacement from ``data``; ``None`` = the
            whole of ``data`` (or ``None``) every step.
        chunk: steps per compiled ``lax.scan`` call; also the evaluation period.
        eval_fn: optional ``state -> dict of scalars``, run after every chunk.
        progress: show a progress bar; ``None`` = only on an interactive terminal.
        label: the progress bar's label.
        devices: devices to shard the batch over; default ``jax.devices()``.

    Returns:
        A `RunResult`.
    """
    start = time.perf_counter()
    key = checks.prng_key("key", key)
    steps = checks.positive_int("steps", steps)
    chunk = checks.positive_int("chunk", chunk)
    if not callable(step_fn):
        raise TypeError(
            f"step_fn: expected a function (state, batch, key) -> (state, metrics), got {step_fn!r}"
        )
    if data is not None:
        _check_data(data)
    if batch_size is not None:
        checks.positive_int("batch_size", batch_size)
        if data is None:
            raise ValueError("batch_size: sampling a batch needs data; got data=None")
    mesh = _mesh_for(batch_size, list(devices) if devices is not None else jax.devices())
    if mesh is not None:
        state, data = jax.device_put((state, data), NamedSharding(mesh, PartitionSpec()))
    elif devices is not None:
        state, data = jax.device_put((state, data), devices[0])
    run_chunk = COMPILE_CACHE.get(
        ("chunk", fingerprint(step_fn), batch_size, mesh),
        lambda: _build_chunk(step_fn, batch_size, mesh),
    )
    jitted_eval = (
        COMPILE_CACHE.get(("eval", fingerprint(eval_fn)), lambda: jax.jit(eval_fn))
        if eval_fn
        else None
    )

    bar = Progress(steps, label, progress_enabled(progress))
    history: dict[str, list[np.ndarray]] = {}
    evals: dict[str, list] = {"step": []}
    done = 0
    try:
        while done < steps:
            length = min(chunk, steps - done)
            state, metrics = run_chunk(state, data, key, jnp.int32(done), length=length)
            metrics = jax.device_get(metrics)  # blocks: one chunk in flight at a time
            _check_finite(metrics, first_step=done + 1)
            for name, values in metrics.items():
                history.setdefault(name, []).append(np.asarray(values))
            done += length
            if jitted_eval is not None:
                scores = jax.device_get(jitted_eval(state))
                _check_finite(
                    {k: np.asarray([v]) for k, v in scores.items()}, first_step=done, where="eval"
                )
                evals["step"].append(done)
                for name, value in scores.items():
                    evals.setdefault(name, []).append(float(value))
            shown = {"loss": float(history["loss"][-1][-1])} if "loss" in history else {}
            bar.update(done, **shown)
    finally:
        bar.close()
    return RunResult(
        state=state,
        history={k: np.concatenate(v) for k, v in history.items()},
        evals={k: np.asarray(v) for k, v in evals.items()} if eval_fn is not None else {},
        seconds=time.perf_counter() - start,
    )


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

    The common case of `run`: the step is one gradient step of ``loss_fn`` with ``optimizer``.

    Args:
        loss_fn: the objective. With ``optimizer`` it keys the compile cache by configuration
            (`fingerprint`): rebuilding ``sgd(0.1, momentum=0.9)`` does not recompile.
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
    checks.prng_key("key", key)
    checks.positive_int("steps", steps)
    checks.positive_int("chunk", chunk)
    _check_data(data)
    if batch_size is not None:
        checks.positive_int("batch_size", batch_size)
    stateful = model_state is not None
    if opt_state is None:
        opt_state = optimizer.init(params)
    evaluate = None
    if eval_fn is not None:
        evaluate = _eval_params_and_state(eval_fn) if stateful else _eval_params(eval_fn)
    out = run(
        _train_step(loss_fn, optimizer, stateful),
        (params, opt_state, model_state),
        data,
        key=key,
        steps=steps,
        batch_size=batch_size,
        chunk=chunk,
        eval_fn=evaluate,
        progress=progress,
        label=label,
        devices=devices,
    )
    params, opt_state, model_state = out.state
    return TrainResult(
        params=params,
        opt_state=opt_state,
        model_state=model_state if stateful else None,
        history=out.history,
        evals=out.evals,
        seconds=time.perf_counter() - start,
    )


def _eval_params(eval_fn: Callable) -> Callable:
    return lambda state: eval_fn(state[0])


def _eval_params_and_state(eval_fn: Callable) -> Callable:
    return lambda state: eval_fn(state[0], state[2])


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
    # mean[i]: steps i .. i + window - 1
    mean = np.convolve(np.asarray(values), np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(mean < threshold if below else mean >= threshold)
    return int(hits[0]) + window if hits.size else None


def batched(fn: Callable, x: jax.Array, batch: int = 512) -> jax.Array:
    """Apply ``fn`` to ``x`` in slices of ``batch`` rows (bounded memory for evaluation)."""
    checks.positive_int("batch", batch)
    parts = [fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return jnp.concatenate(parts) if parts else fn(x)
