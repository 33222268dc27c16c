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
for every expert, the reference). `LinenMoE` and `NnxMoE` hold the tree that `init_moe` declares
and call `moe`. The experts are the MLPs of topic 1.1 (`init_mlp`, `mlp`), stacked on a leading
expert axis. The experiment lives in :mod:`impl.sequence.mixture_of_experts_experiment`.

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

import math
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from jax.scipy.stats import norm

from impl import checks, twins
from impl.deep_networks.dnn import init_mlp, mlp

__all__ = [
    "LinenMoE",
    "NnxMoE",
    "Routing",
    "balancing_losses",
    "capacity",
    "cv_squared",
    "dispatch",
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
    """``W_g`` and ``W_noise``, both zero (Appendix A): at first the gate is pure noise, so load is
    even."""
    return {"w_gate": jnp.zeros((d_in, n_experts)), "w_noise": jnp.zeros((d_in, n_experts))}


def noisy_top_k_gating(
    gate: dict[str, jax.Array],
    x: jax.Array,
    k: int,
    *,
    key: jax.Array | None = None,
    min_noise: float = 1e-2,
) -> Routing:
    """Noisy top-k gating, eqs. 3–5. ``x [T, d_in]``; ``key=None`` gates without noise (evaluation).

    ``min_noise`` is added to the softplus so that eq. 9 never divides by zero (our addition).
    """
    _check_call(x, gate["w_gate"].shape[0], gate["w_gate"].shape[1], k, None)  # before any compute
    clean = x @ gate["w_gate"]  # [T, n]  (x W_g)
    noise_std = jax.nn.softplus(x @ gate["w_noise"]) + min_noise  # [T, n]  Softplus(x W_noise)
    # eq. 4: H(x)
    noisy = clean if key is None else clean + jax.random.normal(key, clean.shape) * noise_std
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


def balancing_losses(
    routing: Routing, k: int, *, w_importance: float, w_load: float
) -> dict[str, jax.Array]:
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
def init_experts(
    key: jax.Array, n_experts: int, sizes: Sequence[int]
) -> list[dict[str, jax.Array]]:
    """``n_experts`` MLPs of 1.1 with layer ``sizes``, stacked: kernels ``[n, a, b]``, biases
    ``[n, b]``."""
    return jax.vmap(lambda k: init_mlp(k, sizes))(jax.random.split(key, n_experts))


def experts_forward(experts: list[dict[str, jax.Array]], inputs: jax.Array) -> jax.Array:
    """Run expert ``e`` on its own rows: ``inputs [n, C, d_in] -> [n, C, d_out]``."""
    return jax.vmap(mlp)(experts, inputs)


def capacity(tokens: int, n_experts: int, k: int, capacity_factor: float | None) -> int:
    """Rows each expert gets: ``ceil(factor * k * T / n)``, at most ``T``; ``None`` = ``T`` (no
    drops)."""
    if capacity_factor is None:
        return tokens
    return max(1, min(tokens, math.ceil(capacity_factor * k * tokens / n_experts)))


def dispatch(
    top_idx: jax.Array, n_experts: int, cap: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Assign each (token, choice) pair a row in its expert's buffer of ``cap`` rows.

    Rows are handed out first-choice-first (every token's best expert before anyone's second),
    then in token order; a pair that finds its expert's buffer full is *dropped*.
    Returns ``slot int[T, k]`` (row ``e * cap + position``), ``kept bool[T, k]`` and
    ``token_of_slot int[n * cap]`` (``T`` marks an empty row).
    """
    tokens, k = top_idx.shape
    choice_major = top_idx.T.reshape(-1)  # [k*T] all first choices, then all second choices, ...
    one_hot = jax.nn.one_hot(choice_major, n_experts, dtype=jnp.int32)  # [k*T, n]
    # [k*T] place in the queue
    position = jnp.sum((jnp.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1)
    position = position.reshape(k, tokens).T  # [T, k]
    kept = position < cap  # [T, k]
    slot = jnp.where(kept, top_idx * cap + position, n_experts * cap)  # dropped -> one past the end
    token_ids = jnp.broadcast_to(jnp.arange(tokens)[:, None], (tokens, k))  # [T, k]
    token_of_slot = (
        jnp.full((n_experts * cap,), tokens)
        .at[slot.reshape(-1)]
        .set(token_ids.reshape(-1), mode="drop")
    )
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
    """The sparsely-gated MoE layer, eq. 1: ``y = sum_i G(x)_i E_i(x)``, running only chosen
    experts.

    ``x [T, d_in] -> y [T, d_out]``; ``params = {"gate": ..., "experts": ...}``. ``key`` draws
    the gate noise (``None``: no noise, for evaluation). Returns ``(y, aux)`` with ``aux["loss"]``
    the balancing loss to add to the task loss, plus the routing statistics.
    """
    n = params["gate"]["w_gate"].shape[-1]
    _check_call(x, params["gate"]["w_gate"].shape[0], n, k, capacity_factor)
    routing = noisy_top_k_gating(params["gate"], x, k, key=key)
    cap = capacity(x.shape[0], n, k, capacity_factor)
    slot, kept, token_of_slot = dispatch(routing.top_idx, n, cap)
    # row T: an empty buffer row
    x_padded = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)])
    expert_in = x_padded[token_of_slot].reshape(n, cap, x.shape[1])  # [n, cap, d_in] gather
    # [n*cap, d_out]
    expert_out = experts_forward(params["experts"], expert_in).reshape(n * cap, -1)
    picked = expert_out[jnp.minimum(slot, n * cap - 1)]  # [T, k, d_out] each token's chosen outputs
    weights = jnp.where(kept, routing.top_gates, 0.0)  # [T, k] a dropped pair contributes nothing
    y = jnp.einsum("tk,tkd->td", weights, picked)  # eq. 1, summed over the k kept experts only
    aux = balancing_losses(routing, k, w_importance=w_importance, w_load=w_load)
    aux |= {"loss": aux["loss_importance"] + aux["loss_load"], "gates": routing.gates, "kept": kept}
    return y, aux


def moe_dense(params: dict, x: jax.Array, gates: jax.Array) -> jax.Array:
    """Eq. 1 computed the expensive way — every expert on every token:
    ``[T, d_in] -> [T, d_out]``."""
    n = gates.shape[-1]
    # [n, T, d_out]
    outputs = experts_forward(params["experts"], jnp.broadcast_to(x[None], (n, *x.shape)))
    return jnp.einsum("tn,ntd->td", gates, outputs)


# --8<-- [end:dispatch]


def init_moe(key: jax.Array, d_in: int, n_experts: int, hidden: Sequence[int], d_out: int) -> dict:
    """Parameters of `moe`: a zero gate and ``n_experts`` MLPs ``[d_in, *hidden, d_out]``."""
    return {
        "gate": init_gate(d_in, n_experts),
        "experts": init_experts(key, n_experts, [d_in, *hidden, d_out]),
    }


def _check_k_and_capacity(k: int, n_experts: int, capacity_factor: float | None) -> None:
    checks.positive_int("k", k)
    if k > n_experts:
        raise ValueError(f"k: expected at most n_experts = {n_experts} experts per token, got {k}")
    if capacity_factor is not None:
        checks.in_range("capacity_factor", capacity_factor, 0.0, float("inf"), low_inclusive=False)


def _check_config(
    n_experts: int, k: int, hidden: Sequence[int], d_out: int, capacity_factor
) -> None:
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
    """Functional twin: ``variables["params"]`` is `init_moe`'s tree,
    ``{"gate": {"w_gate", "w_noise"}, "experts": [layers]}``.

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
        params = twins.declare(self, init_moe, x.shape[-1], self.n_experts, self.hidden, self.d_out)
        return moe(params, x, k=self.k, key=key, capacity_factor=self.capacity_factor,
                   w_importance=self.w_importance, w_load=self.w_load)  # fmt: skip


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxMoE(nnx.Module):
    """Object-oriented twin; ``model(x)`` evaluates, ``model(x, key=k)`` trains.

    ``self.gate`` and ``self.experts`` hold `init_moe`'s two entries as NNX objects
    (`impl.twins.to_nnx`): the gate's ``w_gate``, ``w_noise`` ``[d_in, n]``, and the stacked expert
    MLPs of topic 1.1.
    """

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
        for name, entry in init_moe(rngs.params(), d_in, n_experts, hidden, d_out).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None):
        return moe(twins.pure(self), x, k=self.k, key=key, capacity_factor=self.capacity_factor,
                   w_importance=self.w_importance, w_load=self.w_load)  # fmt: skip


# --8<-- [end:nnx]
