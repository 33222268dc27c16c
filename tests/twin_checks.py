"""One test helper for every Linen/NNX twin pair: same weights in, same outputs and gradients out.

```python
from twin_checks import assert_twins_agree

assert_twins_agree(
    linen=dnn.LinenMLP(features=[16, 3]),
    nnx_model=dnn.NnxMLP([2, 16, 3], rngs=nnx.Rngs(0)),
    inputs=(x,),
    loss=lambda logits: dnn.cross_entropy(logits, labels),
)
```

It initialises the Linen module, loads its variables into the NNX model with
`impl.twins.load_linen` (no hand-written name mapping: the trees match key for key), then
compares the outputs, and the gradients of ``loss(output)`` with respect to the parameters
(when the twins have any) and to the first input (when it is a float array). Twins without
parameters (an activation, dropout) are checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from impl import twins


def load_twins(
    linen,
    nnx_model,
    inputs: tuple,
    *,
    key: jax.Array | None = None,
    init_kwargs: dict | None = None,
):
    """Initialise ``linen`` on ``inputs`` and copy its variables into ``nnx_model``; return the
    variables."""
    key = jax.random.key(0) if key is None else key
    variables = linen.init(key, *inputs, **(init_kwargs or {}))
    variables = {k: v for k, v in variables.items() if k in twins.COLLECTIONS}
    twins.load_linen(nnx_model, variables)
    chex.assert_trees_all_equal_structs(twins.variables(nnx_model), twins._plain(variables))
    return variables


def assert_twins_agree(
    linen,
    nnx_model,
    inputs: tuple,
    *,
    loss: Callable[[Any], jax.Array] | None = None,
    linen_apply: Callable | None = None,
    nnx_apply: Callable | None = None,
    key: jax.Array | None = None,
    init_kwargs: dict | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
):
    """Assert the twins compute the same outputs (and, with ``loss``, the same gradients).

    Args:
        linen, nnx_model: the two twins (the NNX one built with the same hyperparameters).
        inputs: positional arguments of both ``__call__``s.
        loss: ``output -> scalar``; when given, gradients w.r.t. all parameters are compared.
        linen_apply: ``(variables, *inputs) -> output``; default ``linen.apply(variables, *inputs)``
            (pass one to add ``rngs=``, ``mutable=`` or mode flags).
        nnx_apply: ``(model, *inputs) -> output``; default ``model(*inputs)``.
        key: the PRNG key for ``linen.init``.
        init_kwargs: keyword arguments of ``linen.init``.

    Returns:
        ``(variables, linen_output, nnx_output)`` for further checks.
    """
    variables = load_twins(linen, nnx_model, inputs, key=key, init_kwargs=init_kwargs)
    linen_apply = linen_apply or (lambda v, *xs: linen.apply(v, *xs))
    nnx_apply = nnx_apply or (lambda m, *xs: m(*xs))
    out_linen = linen_apply(variables, *inputs)
    out_nnx = nnx_apply(nnx_model, *inputs)
    chex.assert_trees_all_close(out_linen, out_nnx, rtol=rtol, atol=atol)
    if loss is None:
        return variables, out_linen, out_nnx
    if "params" in variables:  # gradients with respect to every parameter
        others = {k: v for k, v in variables.items() if k != "params"}

        def linen_loss(params):
            return loss(linen_apply({"params": params, **others}, *inputs))

        grads_linen = jax.grad(linen_loss)(variables["params"])
        grads_nnx = nnx.grad(lambda m: loss(nnx_apply(m, *inputs)))(nnx_model)
        grads_nnx = twins._lists_back(nnx.to_pure_dict(grads_nnx))
        chex.assert_trees_all_close(twins._plain(grads_linen), grads_nnx, rtol=rtol, atol=atol)
    # and with respect to the first input
    if jnp.issubdtype(jnp.asarray(inputs[0]).dtype, jnp.inexact):
        rest = inputs[1:]
        dx_linen = jax.grad(lambda x: loss(linen_apply(variables, x, *rest)))(inputs[0])
        dx_nnx = nnx.grad(lambda m, x: loss(nnx_apply(m, x, *rest)), argnums=1)(
            nnx_model, inputs[0]
        )
        chex.assert_trees_all_close(dx_linen, dx_nnx, rtol=rtol, atol=atol)
    return variables, out_linen, out_nnx
