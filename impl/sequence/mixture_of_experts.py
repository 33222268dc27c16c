"""3.8 Mixture of experts — many feed-forward experts, a few of them run per token.

Shazeer, Mirhoseini, Maziarz, Davis, Le, Hinton & Dean, *Outrageously large neural networks:
the sparsely-gated mixture-of-experts layer*, ICLR 2017. https://arxiv.org/abs/1701.06538

The idea: a layer of ``n`` expert networks and a gating network that, for each token, keeps
only the ``k`` experts with the largest (noisy) gate logits and mixes their outputs with a
softmax over those ``k`` logits. The other ``n - k`` experts are never run for that token, so
the parameter count grows with ``n`` while the compute per token stays that of ``k`` experts.
Left alone, the gate keeps choosing the experts it already favours, which then train faster
and are chosen even more; two auxiliary losses push back — the squared coefficient of
variation of each expert's total gate weight (*importance*) and of a smooth estimate of the
number of tokens it receives (*load*, via the normal CDF of the gate noise).

Layout: pure functions hold the math — `noisy_top_k_gating` (eqs. 3–5), `balancing_losses`
(eqs. 6–11), `dispatch` and `moe` (eq. 1 with sparse dispatch) and `moe_dense` (eq. 1 computed
for every expert, the reference). `LinenMoE` and `NnxMoE` hold the parameters and call `moe`.
The experts are the MLPs of topic 1.1 (`init_mlp`, `mlp`), stacked on a leading expert axis.

Dispatch: static shapes need a fixed buffer per expert, so each expert gets ``capacity`` rows
(GShard's expert capacity; the 2017 paper had none) and assignments beyond it are dropped.
Tokens are *gathered* into the buffers and the outputs gathered back — linear in the number of
tokens — rather than multiplied by a one-hot ``[T, n, C]`` dispatch tensor, whose einsums cost
``T * n * C * d``, quadratic in ``T``. On a CPU at this toy size, running every expert on every
token (`moe_dense`) is faster still: the bookkeeping outweighs the tiny experts' arithmetic.

Shapes: tokens ``x`` are ``float32[tokens, d_in]``; outputs ``[tokens, d_out]``; gate
weights ``{"w_gate", "w_noise"}: [d_in, n_experts]``; experts: a list of layers, each
``{"kernel": [n_experts, a, b], "bias": [n_experts, b]}``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.stats import norm

from impl import checks, plotting
from impl.deep_networks.dnn import init_mlp, mlp
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import train

__all__ = [
    "LinenMoE",
    "NnxMoE",
    "Routing",
    "balancing_losses",
    "capacity",
    "cv_squared",
    "dispatch",
    "experiment",
    "experts_forward",
    "init_experts",
    "init_gate",
    "init_moe",
    "load_probability",
    "moe",
    "moe_dense",
    "noisy_top_k_gating",
]


class Routing(NamedTuple):
    """What the gate decided for a batch of ``T`` tokens and ``n`` experts."""

    gates: jax.Array  # [T, n] G(x): k non-zero entries per row, summing to 1
    top_idx: jax.Array  # int32[T, k] the chosen experts, best first
    top_gates: jax.Array  # [T, k] their gate values
    clean: jax.Array  # [T, n] x W_g
    noisy: jax.Array  # [T, n] H(x) (equal to `clean` when no noise key is given)
    noise_std: jax.Array  # [T, n] Softplus(x W_noise)


# --8<-- [start:core]
def init_gate(d_in: int, n_experts: int) -> dict[str, jax.Array]:
    """``W_g`` and ``W_noise``, both zero (Appendix A): at first the gate is pure noise, so load is even."""
    return {"w_gate": jnp.zeros((d_in, n_experts)), "w_noise": jnp.zeros((d_in, n_experts))}


def noisy_top_k_gating(
    gate: dict[str, jax.Array], x: jax.Array, k: int, *, key: jax.Array | None = None, min_noise: float = 1e-2
) -> Routing:
    """Noisy top-k gating, eqs. 3–5. ``x [T, d_in]``; ``key=None`` gates without noise (evaluation).

    ``min_noise`` is added to the softplus so that eq. 9 never divides by zero (our addition).
    """
    _check_call(x, gate["w_gate"].shape[0], gate["w_gate"].shape[1], k, None)  # before any compute
    clean = x @ gate["w_gate"]  # [T, n]  (x W_g)
    noise_std = jax.nn.softplus(x @ gate["w_noise"]) + min_noise  # [T, n]  Softplus(x W_noise)
    noisy = clean if key is None else clean + jax.random.normal(key, clean.shape) * noise_std  # eq. 4: H(x)
    top_logits, top_idx = jax.lax.top_k(noisy, k)  # [T, k]  eq. 5: KeepTopK keeps these ...
    top_gates = jax.nn.softmax(top_logits, axis=-1)  # eq. 3: ... and the -inf others get 0
    gates = jnp.einsum("tk,tkn->tn", top_gates, jax.nn.one_hot(top_idx, clean.shape[-1]))  # [T, n]
    return Routing(gates, top_idx, top_gates, clean, noisy, noise_std)


def load_probability(routing: Routing, k: int) -> jax.Array:
    """``P(x, i)``, eqs. 8–9: the chance that expert ``i`` stays in the top k if only its own noise
    were drawn again. ``[T, n]``, differentiable in ``W_g`` and ``W_noise``."""
    n = routing.noisy.shape[-1]
    if k == n:  # every expert is always chosen
        return jnp.ones_like(routing.noisy)
    top = jax.lax.top_k(routing.noisy, k + 1)[0]  # [T, k+1] the k+1 largest noisy logits
    chosen = jnp.sum(jax.nn.one_hot(routing.top_idx, n), axis=1) > 0  # [T, n] i in the top k?
    # kth_excluding(H(x), k, i): the k-th largest of the *other* logits. For a chosen expert it is
    # the (k+1)-th largest overall; for any other expert it is the k-th largest.
    kth_excluding = jnp.where(chosen, top[:, k : k + 1], top[:, k - 1 : k])  # [T, n]
    return norm.cdf((routing.clean - kth_excluding) / routing.noise_std)  # eq. 9: Phi(...)


def cv_squared(v: jax.Array, eps: float = 1e-10) -> jax.Array:
    """Squared coefficient of variation ``Var(v) / Mean(v)^2`` of a vector ``[n]`` (0 for n = 1)."""
    return jnp.var(v) / (jnp.mean(v) ** 2 + eps)


def balancing_losses(routing: Routing, k: int, *, w_importance: float, w_load: float) -> dict[str, jax.Array]:
    """The two auxiliary losses and the vectors they balance (each ``[n]``)."""
    importance = jnp.sum(routing.gates, axis=0)  # eq. 6: Importance(X) = sum_x G(x)
    load = jnp.sum(load_probability(routing, k), axis=0)  # eq. 10: Load(X)_i = sum_x P(x, i)
    return {
        "importance": importance,
        "load": load,
        "loss_importance": w_importance * cv_squared(importance),  # eq. 7
        "loss_load": w_load * cv_squared(load),  # eq. 11
    }


# --8<-- [end:core]


# --8<-- [start:dispatch]
def init_experts(key: jax.Array, n_experts: int, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """``n_experts`` MLPs of 1.1 with layer ``sizes``, stacked: kernels ``[n, a, b]``, biases ``[n, b]``."""
    return jax.vmap(lambda k: init_mlp(k, sizes))(jax.random.split(key, n_experts))


def experts_forward(experts: list[dict[str, jax.Array]], inputs: jax.Array) -> jax.Array:
    """Run expert ``e`` on its own rows: ``inputs [n, C, d_in] -> [n, C, d_out]``."""
    return jax.vmap(mlp)(experts, inputs)


def capacity(tokens: int, n_experts: int, k: int, capacity_factor: float | None) -> int:
    """Rows each expert gets: ``ceil(factor * k * T / n)``, at most ``T``; ``None`` = ``T`` (no drops)."""
    if capacity_factor is None:
        return tokens
    return max(1, min(tokens, math.ceil(capacity_factor * k * tokens / n_experts)))


def dispatch(top_idx: jax.Array, n_experts: int, cap: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Assign each (token, choice) pair a row in its expert's buffer of ``cap`` rows.

    Rows are handed out first-choice-first (every token's best expert before anyone's second),
    then in token order; a pair that finds its expert's buffer full is *dropped*.
    Returns ``slot int[T, k]`` (row ``e * cap + position``), ``kept bool[T, k]`` and
    ``token_of_slot int[n * cap]`` (``T`` marks an empty row).
    """
    tokens, k = top_idx.shape
    choice_major = top_idx.T.reshape(-1)  # [k*T] all first choices, then all second choices, ...
    one_hot = jax.nn.one_hot(choice_major, n_experts, dtype=jnp.int32)  # [k*T, n]
    position = jnp.sum((jnp.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1)  # [k*T] place in the queue
    position = position.reshape(k, tokens).T  # [T, k]
    kept = position < cap  # [T, k]
    slot = jnp.where(kept, top_idx * cap + position, n_experts * cap)  # dropped -> one past the end
    token_ids = jnp.broadcast_to(jnp.arange(tokens)[:, None], (tokens, k))  # [T, k]
    token_of_slot = jnp.full((n_experts * cap,), tokens).at[slot.reshape(-1)].set(token_ids.reshape(-1), mode="drop")
    return slot, kept, token_of_slot


def moe(
    params: dict,
    x: jax.Array,
    *,
    k: int,
    key: jax.Array | None = None,
    capacity_factor: float | None = 2.0,
    w_importance: float = 0.1,
    w_load: float = 0.1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The sparsely-gated MoE layer, eq. 1: ``y = sum_i G(x)_i E_i(x)``, running only chosen experts.

    ``x [T, d_in] -> y [T, d_out]``; ``params = {"gate": ..., "experts": ...}``. ``key`` draws
    the gate noise (``None``: no noise, for evaluation). Returns ``(y, aux)`` with ``aux["loss"]``
    the balancing loss to add to the task loss, plus the routing statistics.
    """
    n = params["gate"]["w_gate"].shape[-1]
    _check_call(x, params["gate"]["w_gate"].shape[0], n, k, capacity_factor)
    routing = noisy_top_k_gating(params["gate"], x, k, key=key)
    cap = capacity(x.shape[0], n, k, capacity_factor)
    slot, kept, token_of_slot = dispatch(routing.top_idx, n, cap)
    x_padded = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)])  # row T: an empty buffer row
    expert_in = x_padded[token_of_slot].reshape(n, cap, x.shape[1])  # [n, cap, d_in] gather
    expert_out = experts_forward(params["experts"], expert_in).reshape(n * cap, -1)  # [n*cap, d_out]
    picked = expert_out[jnp.minimum(slot, n * cap - 1)]  # [T, k, d_out] each token's chosen outputs
    weights = jnp.where(kept, routing.top_gates, 0.0)  # [T, k] a dropped pair contributes nothing
    y = jnp.einsum("tk,tkd->td", weights, picked)  # eq. 1, summed over the k kept experts only
    aux = balancing_losses(routing, k, w_importance=w_importance, w_load=w_load)
    aux |= {"loss": aux["loss_importance"] + aux["loss_load"], "gates": routing.gates, "kept": kept}
    return y, aux


def moe_dense(params: dict, x: jax.Array, gates: jax.Array) -> jax.Array:
    """Eq. 1 computed the expensive way — every expert on every token: ``[T, d_in] -> [T, d_out]``."""
    n = gates.shape[-1]
    outputs = experts_forward(params["experts"], jnp.broadcast_to(x[None], (n, *x.shape)))  # [n, T, d_out]
    return jnp.einsum("tn,ntd->td", gates, outputs)


# --8<-- [end:dispatch]


def init_moe(key: jax.Array, d_in: int, n_experts: int, hidden: Sequence[int], d_out: int) -> dict:
    """Parameters of `moe`: a zero gate and ``n_experts`` MLPs ``[d_in, *hidden, d_out]``."""
    return {"gate": init_gate(d_in, n_experts), "experts": init_experts(key, n_experts, [d_in, *hidden, d_out])}


def _check_k_and_capacity(k: int, n_experts: int, capacity_factor: float | None) -> None:
    checks.positive_int("k", k)
    if k > n_experts:
        raise ValueError(f"k: expected at most n_experts = {n_experts} experts per token, got {k}")
    if capacity_factor is not None:
        checks.in_range("capacity_factor", capacity_factor, 0.0, float("inf"), low_inclusive=False)


def _check_config(n_experts: int, k: int, hidden: Sequence[int], d_out: int, capacity_factor) -> None:
    checks.positive_int("n_experts", n_experts)
    _check_k_and_capacity(k, n_experts, capacity_factor)
    for i, h in enumerate(hidden):
        checks.positive_int(f"hidden[{i}]", h)
    checks.positive_int("d_out", d_out)


def _check_call(x, d_in: int, n_experts: int, k: int, capacity_factor) -> None:
    checks.array_shape("x", x, ("tokens", d_in), dims=f"[tokens, d_in={d_in}]")
    _check_k_and_capacity(k, n_experts, capacity_factor)


# --8<-- [start:linen]
class LinenMoE(nn.Module):
    """Functional twin: ``{"params": {"gate": {"w_gate", "w_noise"}, "experts": [layers]}}``.

    ``apply(variables, x)`` evaluates (no noise); ``apply(variables, x, key=k)`` trains.
    """

    n_experts: int
    k: int
    hidden: Sequence[int]
    d_out: int
    capacity_factor: float | None = 2.0
    w_importance: float = 0.1
    w_load: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array, *, key: jax.Array | None = None):
        _check_config(self.n_experts, self.k, self.hidden, self.d_out, self.capacity_factor)
        checks.array_shape("x", x, ("tokens", "d_in"), dims="[tokens, d_in]")
        sizes = [x.shape[-1], *self.hidden, self.d_out]
        params = {
            "gate": self.param("gate", lambda _: init_gate(x.shape[-1], self.n_experts)),
            "experts": self.param("experts", init_experts, self.n_experts, sizes),
        }
        return moe(params, x, k=self.k, key=key, capacity_factor=self.capacity_factor,
                   w_importance=self.w_importance, w_load=self.w_load)  # fmt: skip


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxExpertLayer(nnx.Module):
    """One layer of all experts at once: ``kernel [n, a, b]``, ``bias [n, b]``."""

    def __init__(self, layer: dict[str, jax.Array]):
        self.kernel = nnx.Param(layer["kernel"])
        self.bias = nnx.Param(layer["bias"])


class NnxMoE(nnx.Module):
    """Object-oriented twin; ``model(x)`` evaluates, ``model(x, key=k)`` trains."""

    def __init__(
        self,
        d_in: int,
        n_experts: int,
        k: int,
        hidden: Sequence[int],
        d_out: int,
        *,
        capacity_factor: float | None = 2.0,
        w_importance: float = 0.1,
        w_load: float = 0.1,
        rngs: nnx.Rngs,
    ):
        checks.positive_int("d_in", d_in)
        _check_config(n_experts, k, hidden, d_out, capacity_factor)
        self.k, self.capacity_factor = k, capacity_factor
        self.w_importance, self.w_load = w_importance, w_load
        gate = init_gate(d_in, n_experts)
        self.w_gate = nnx.Param(gate["w_gate"])  # [d_in, n]
        self.w_noise = nnx.Param(gate["w_noise"])  # [d_in, n]
        experts = init_experts(rngs.params(), n_experts, [d_in, *hidden, d_out])
        self.experts = nnx.List([NnxExpertLayer(layer) for layer in experts])

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None):
        params = {
            "gate": {"w_gate": self.w_gate[...], "w_noise": self.w_noise[...]},
            "experts": [{"kernel": e.kernel[...], "bias": e.bias[...]} for e in self.experts],
        }
        return moe(params, x, k=self.k, key=key, capacity_factor=self.capacity_factor,
                   w_importance=self.w_importance, w_load=self.w_load)  # fmt: skip


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: 16 regression sub-tasks in 16 regions of input space. Does the gate
# spread tokens over the experts, and does adding experts help at the same compute per token?
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
N_TASKS, D_IN, D_OUT, HIDDEN, K = 16, 8, 4, 16, 2  # sub-tasks; token and target widths; expert MLP; top-k
SIZES = (2, 4, 8, 16)  # numbers of experts compared, all with k = 2 (n = 2: both experts always run)
W_BALANCE = 0.1  # w_importance = w_load for the balanced models


def make_task(key: jax.Array, n_tasks: int = N_TASKS) -> dict[str, jax.Array]:
    """``n_tasks`` sub-tasks: a centre in input space and a random map ``tanh(z A + b)`` for each."""
    draw = jax.random.normal(key, (n_tasks, D_IN + D_IN * D_OUT + D_OUT))  # one draw, cut in three
    return {
        "centres": 3.0 * draw[:, :D_IN],  # [n_tasks, D_IN], well apart: distance ~ 3 sqrt(2 D_IN)
        "maps": 1.5 * draw[:, D_IN:-D_OUT].reshape(n_tasks, D_IN, D_OUT) / jnp.sqrt(D_IN),  # A
        "offsets": draw[:, -D_OUT:],  # b, [n_tasks, D_OUT]
    }


def sample_task(key: jax.Array, task: dict[str, jax.Array], n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``n`` tokens ``x [n, D_IN]`` near a random sub-task's centre, targets ``y [n, D_OUT]``, sub-task ids."""
    k_which, k_z = jax.random.split(key)
    which = jax.random.randint(k_which, (n,), 0, task["centres"].shape[0])  # int[n]
    z = jax.random.normal(k_z, (n, D_IN))  # position relative to the centre
    y = jnp.tanh(jnp.einsum("nd,nde->ne", z, task["maps"][which]) + task["offsets"][which])  # [n, D_OUT]
    return task["centres"][which] + z, y, which


@jax.jit
def make_data(key: jax.Array) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """One draw of sub-tasks; 4096 training and 2048 held-out tokens from them."""
    k_task, k_tokens = jax.random.split(key)
    x, y, _ = sample_task(k_tokens, make_task(k_task), 4096 + 2048)
    return (x[:4096], y[:4096]), (x[4096:], y[4096:])


def _mse_and_loads(params, batch, key, w):
    y, aux = moe(params, batch["x"], k=K, key=key, w_importance=w, w_load=w)
    chosen = jnp.sum(aux["gates"] > 0, axis=0).astype(jnp.float32)  # [n] tokens per expert in this batch
    return jnp.mean(jnp.square(y - batch["y"])), aux["loss"], jnp.sqrt(cv_squared(chosen))


def loss_fn(params, batch, key):
    """Every model side by side (they share only the batch): ``params = {"n2": ..., "pair16": ...}``.

    ``"pair16"`` holds two 16-expert models stacked on a leading axis, trained without and with
    the balancing losses — one ``vmap``, so one compiled program for both.
    """
    total, metrics = 0.0, {}
    for n in SIZES[:-1]:
        mse, balance, _ = _mse_and_loads(params[f"n{n}"], batch, jax.random.fold_in(key, n), W_BALANCE)
        total, metrics[f"mse_n{n}"] = total + mse + balance, mse
    pair = functools.partial(_mse_and_loads, batch=batch, key=jax.random.fold_in(key, SIZES[-1]))
    mse, balance, load_cv = jax.vmap(lambda p, w: pair(p, w=w))(params["pair16"], jnp.array([0.0, W_BALANCE]))
    metrics |= {"mse_pair16": mse, "load_cv_pair16": load_cv}  # [2] each: (without, with)
    return total + jnp.sum(mse + balance), metrics


OPTIMIZER = adam(learning_rate=3e-3)


@jax.jit
def init_models(key: jax.Array) -> dict:
    """Every model with a zero gate; the model with ``n`` experts gets the first ``n`` of one draw of
    16, and the two 16-expert models start identical."""
    experts = init_experts(key, SIZES[-1], [D_IN, HIDDEN, D_OUT])  # one draw of the largest set
    first = lambda n: {"gate": init_gate(D_IN, n), "experts": jax.tree.map(lambda a: a[:n], experts)}  # noqa: E731
    params = {f"n{n}": first(n) for n in SIZES[:-1]}
    params["pair16"] = jax.tree.map(lambda a: jnp.stack([a, a]), first(SIZES[-1]))
    return params


def fit(key: jax.Array, x: jax.Array, y: jax.Array, *, steps: int, progress=None):
    """Train all models side by side in one compiled loop, mini-batches of 256 tokens."""
    return train(loss_fn, init_models(key), OPTIMIZER, {"x": x, "y": y}, key=key, steps=steps, batch_size=256,
                 chunk=steps, progress=progress, label="3.8 mixture of experts")  # fmt: skip


# --8<-- [end:experiment]


_forward = jax.jit(functools.partial(moe, k=K))  # evaluation: no noise, only the chosen experts run
_forward_dense = jax.jit(lambda p, x: moe_dense(p, x, noisy_top_k_gating(p["gate"], x, K).gates))  # all run


def evaluate(params, x: jax.Array, y: jax.Array) -> dict[str, float | np.ndarray]:
    """Held-out error (as a fraction of the targets' variance) and the gate's load, without noise."""
    out, aux = _forward(params, x)  # no noise; capacity factor 2, as in training
    n = aux["gates"].shape[-1]
    load = np.asarray(jnp.sum(aux["gates"] > 0, axis=0), dtype=np.float64) / (K * x.shape[0])  # [n] shares
    importance = np.asarray(jnp.sum(aux["gates"], axis=0), dtype=np.float64)
    return {
        "fvu": float(jnp.mean(jnp.square(out - y)) / jnp.mean(jnp.var(y, axis=0))),
        "load": load,
        "load_cv": float(np.std(load) / np.mean(load)),
        "importance_cv": float(np.std(importance) / np.mean(importance)),
        "max_over_mean_load": float(load.max() * n),
        "idle_experts": float(np.sum(load < 0.01)),  # experts given under 1% of the assignments
        "busiest_quarter_share": float(np.sort(load)[::-1][: max(1, n // 4)].sum()),
        "dropped_fraction": float(1.0 - jnp.mean(aux["kept"])),
    }


def costs(n: int) -> dict[str, int]:
    """Parameters in the layer, and parameters / multiply-adds used per token at evaluation."""
    expert = D_IN * HIDDEN + HIDDEN + HIDDEN * D_OUT + D_OUT  # one expert MLP
    return {
        "params": n * expert + 2 * D_IN * n,  # experts + W_g + W_noise
        "active_params": K * expert + D_IN * n,  # k experts + W_g (no noise at evaluation)
        "macs_per_token": K * (D_IN * HIDDEN + HIDDEN * D_OUT) + D_IN * n,
    }


def _milliseconds(fn, *args, repeats: int = 20) -> float:
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return 1e3 * (time.perf_counter() - start) / repeats


def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1500) -> Report:
    """Load balance with and without the auxiliary losses; held-out error as experts are added.

    ``seed`` draws the sub-tasks, the data and the initial experts. Metrics: for the two
    16-expert models (``unbalanced_*``, ``balanced_*``) the held-out load statistics, and for
    every number of experts ``n`` its held-out error ``experts_{n}_test_fvu`` and costs.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU
    (x, y), (x_test, y_test) = make_data(key)
    result = fit(jax.random.fold_in(key, 1), x, y, steps=steps, progress=progress)

    models = {f"n{n}": result.params[f"n{n}"] for n in SIZES[:-1]}
    for i, name in enumerate(("unbalanced", "balanced")):
        models[name] = jax.tree.map(lambda a, i=i: a[i], result.params["pair16"])
    scores = {name: evaluate(p, x_test, y_test) for name, p in models.items()}
    metrics = {}
    for name in ("unbalanced", "balanced"):
        metrics |= {f"{name}_{stat}": v for stat, v in scores[name].items() if stat != "load"}
    for n in SIZES:
        score = scores["balanced" if n == SIZES[-1] else f"n{n}"]
        metrics[f"experts_{n}_test_fvu"] = score["fvu"]
        metrics |= {f"experts_{n}_{k}": float(v) for k, v in costs(n).items()}

    # Sparse dispatch vs running every expert on every token, forward pass, this CPU.
    metrics["sparse_forward_ms"] = _milliseconds(_forward, models["balanced"], x_test)
    metrics["dense_forward_ms"] = _milliseconds(_forward_dense, models["balanced"], x_test)

    header = f"{'':<22}{'CV(load)':>9}{'CV(imp.)':>9}{'max/mean':>9}{'idle':>6}{'top 4':>7}{'dropped':>8}{'error':>7}"
    lines = [
        f"{N_TASKS} regression sub-tasks, tokens of width {D_IN}; experts are MLPs {D_IN}-{HIDDEN}-{D_OUT}, "
        f"top k = {K}; {steps} Adam steps, batch 256",
        f"16 experts, held-out load (share of the {K} x 2048 assignments):",
        header,
    ]
    for name, label in (("unbalanced", "without balancing"), ("balanced", f"with w = {W_BALANCE:g}")):
        s = scores[name]
        lines.append(
            f"{label:<22}{s['load_cv']:>9.2f}{s['importance_cv']:>9.2f}{s['max_over_mean_load']:>9.2f}"
            f"{s['idle_experts']:>6.0f}{s['busiest_quarter_share']:>7.0%}{s['dropped_fraction']:>8.1%}{s['fvu']:>7.3f}"
        )
    lines.append("(even load: CV 0, max/mean 1, top 4 of 16 take 25%; error = held-out MSE / target variance)")
    lines.append(f"{'experts':>8}{'params':>8}{'active/token':>13}{'MACs/token':>11}{'held-out error':>15}")
    for n in SIZES:
        row = [metrics[f"experts_{n}_{k}"] for k in ("params", "active_params", "macs_per_token", "test_fvu")]
        lines.append(f"{n:>8}{row[0]:>8.0f}{row[1]:>13.0f}{row[2]:>11.0f}{row[3]:>15.3f}")
    lines.append(
        f"forward pass, 2048 tokens, 16 experts, this CPU: sparse dispatch {metrics['sparse_forward_ms']:.2f} ms, "
        f"every expert on every token {metrics['dense_forward_ms']:.2f} ms"
    )
    fig = _figure(scores, result.history, metrics)
    return Report("3.8 Mixture of experts — load balance, and capacity at constant compute", metrics, lines, fig,
                  time.perf_counter() - start)  # fmt: skip


def _figure(scores, history, metrics):
    fig, axes = plotting.figure(3, width=11.0, height=3.4, gridspec_kw={"width_ratios": [1.2, 1.0, 1.0]})
    ax = axes[0]
    n = SIZES[-1]
    for j, (name, label) in enumerate((("unbalanced", "without balancing"), ("balanced", "with balancing"))):
        share = np.sort(scores[name]["load"])[::-1]
        ax.bar(np.arange(n) + (j - 0.5) * 0.4, 100 * share, 0.4, label=label, color=plotting.PALETTE[3 - 3 * j])
    ax.axhline(100 / n, color="grey", ls=":", lw=1, label="even share")
    ax.set_xticks(range(0, n, 3), [str(i + 1) for i in range(0, n, 3)])
    ax.set(xlabel="expert (busiest first)", ylabel="% of assignments", title="held-out load, 16 experts")
    ax.legend(fontsize=8)
    ax = axes[1]
    cv = history["load_cv_pair16"]  # [steps, 2]
    window = 25
    for j, label in enumerate(("without balancing", "with balancing")):
        smooth = np.convolve(cv[:, j], np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window, smooth, label=label, color=plotting.PALETTE[3 - 3 * j])
    ax.set(xlabel="step", ylabel="CV of tokens per expert", title="load imbalance during training (batch)")
    ax.legend(fontsize=8)
    ax = axes[2]
    errors = [metrics[f"experts_{m}_test_fvu"] for m in SIZES]
    ax.plot(SIZES, errors, "o-", color=plotting.PALETTE[0])
    for m, e in zip(SIZES, errors):
        ax.annotate(f"{metrics[f'experts_{m}_params']:.0f} params\n{metrics[f'experts_{m}_active_params']:.0f} active",
                    (m, e), textcoords="offset points", xytext=(5, 4), fontsize=7.5)  # fmt: skip
    ax.set(xscale="log", xlabel="experts (k = 2 run per token)", ylabel="held-out MSE / variance",
           title="more experts, same compute")  # fmt: skip
    ax.set_xticks(SIZES, [str(m) for m in SIZES])
    ax.minorticks_off()
    ax.set_xlim(SIZES[0] / 1.3, SIZES[-1] * 2.2)
    ax.set_ylim(0, 1.2 * max(errors))
    return fig
