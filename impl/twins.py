"""The one bridge between a topic's Linen module and its NNX twin.

Every topic declares its parameter tree once, in an ``init_*`` function that returns plain
dicts and lists of arrays — the tree its pure functions take. Both twins derive from it:

* the **Linen** module stores each top-level entry with ``self.param(name, ...)`` — for a tree
  of several entries, :func:`declare` does it in one call — so ``variables["params"]`` *is* that
  tree;
* the **NNX** module stores the same entries as attributes named like the tree's keys, built
  with :func:`to_nnx` (dicts become ``nnx.Dict``, lists ``nnx.List``, arrays ``nnx.Param``),
  and reads them back with :func:`pure`.

So the twins agree *structurally*: ``pure(nnx_model) == linen_variables["params"]`` key for
key, and no test maps names by hand. ``nnx.split``/``nnx.merge`` remain the way to take a
whole NNX object apart; :func:`pure` is the narrower question "which arrays would the pure
function take?".

```python
params = init_mlp(key, [2, 16, 3])            # the tree, declared once
model.layers = to_nnx(params)                 # NNX: objects around the same arrays
mlp(pure(model.layers), x)                    # back to the tree the function takes
load_linen(model, linen_variables)            # copy Linen's weights into the NNX twin
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

__all__ = ["COLLECTIONS", "declare", "load_linen", "pure", "to_nnx", "variables"]

PyTree = Any

#: Linen variable collections and the NNX variable types that hold them.
COLLECTIONS: dict[str, type[nnx.Variable]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


def to_nnx(tree: PyTree, kind: type[nnx.Variable] = nnx.Param) -> Any:
    """A pure tree of arrays as NNX objects: dict → ``nnx.Dict``, list/tuple → ``nnx.List``,
    array → ``kind(array)`` (``nnx.Param`` by default; ``nnx.BatchStat`` for running statistics).
    """
    if isinstance(tree, dict):
        return nnx.Dict({key: to_nnx(value, kind) for key, value in tree.items()})
    if isinstance(tree, list | tuple):
        return nnx.List([to_nnx(value, kind) for value in tree])
    if isinstance(tree, jax.Array) or hasattr(tree, "shape"):
        return kind(tree)
    raise TypeError(
        f"tree: expected dicts, lists and arrays, got a leaf of type {type(tree).__name__}"
    )


def declare(module: nn.Module, init_fn: Callable[..., dict], *args, **kwargs) -> dict:
    """Inside a Linen ``@nn.compact`` method: register ``init_fn(key, *args, **kwargs)``'s tree as
    parameters, one ``module.param`` per top-level key, and return it.

    So ``variables["params"]`` has exactly the keys of the tree the pure functions take, and the
    NNX twin, which holds ``twins.to_nnx(init_fn(...))`` under attributes of the same names,
    matches it key for key. The keys are found with ``jax.eval_shape`` (nothing is computed);
    each entry is drawn from its own Linen parameter key.
    """
    shapes = jax.eval_shape(lambda key: init_fn(key, *args, **kwargs), jax.random.key(0))
    if not isinstance(shapes, dict):
        raise TypeError(
            f"init_fn: expected a function returning a dict of entries, got {type(shapes).__name__}"
        )
    return {
        name: module.param(name, lambda key, name=name: init_fn(key, *args, **kwargs)[name])
        for name in shapes
    }


def _lists_back(tree: PyTree) -> PyTree:
    """NNX reports an ``nnx.List`` as a dict keyed 0..n-1; give the list back."""
    if isinstance(tree, dict):
        keys = list(tree)
        if (
            keys
            and all(isinstance(k, int) for k in keys)
            and sorted(keys) == list(range(len(keys)))
        ):
            return [_lists_back(tree[i]) for i in range(len(keys))]
        return {key: _lists_back(value) for key, value in tree.items()}
    return tree


def pure(node: Any, kind: type[nnx.Variable] = nnx.Param) -> PyTree:
    """The pure tree of ``kind`` variables held by an NNX module, ``nnx.Dict`` or ``nnx.List``.

    Lists come back as lists, so the result has exactly the structure the ``init_*`` function
    returned. Works inside ``nnx.jit``/``nnx.grad`` (the leaves are then tracers).
    """
    return _lists_back(nnx.to_pure_dict(nnx.state(node, kind)))


def variables(model: nnx.Module) -> dict[str, PyTree]:
    """The NNX model's state as a Linen-style variables dict:
    ``{"params": ..., "batch_stats": ...}`` (collections the model does not have are left out)."""
    out = {}
    for collection, kind in COLLECTIONS.items():
        tree = pure(model, kind)
        if jax.tree.leaves(tree):
            out[collection] = tree
    return out


def _paths(tree: PyTree) -> set[str]:
    return {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


def load_linen(model: nnx.Module, linen_variables: dict[str, PyTree]) -> nnx.Module:
    """Copy a Linen variables dict (``{"params": ..., "batch_stats": ...}``) into ``model`` in
    place.

    The trees must match key for key and shape for shape; otherwise a ``ValueError`` lists the
    paths that differ. Returns ``model`` for chaining.
    """
    for collection, tree in linen_variables.items():
        if collection not in COLLECTIONS:
            expected = sorted(COLLECTIONS)
            raise ValueError(
                f"linen_variables: unknown collection {collection!r}; expected one of {expected}"
            )
        kind = COLLECTIONS[collection]
        current = pure(model, kind)
        # plain dicts and lists (Linen may hand over FrozenDicts, tuples)
        tree = _lists_back(_plain(tree))
        ours, theirs = _paths(current), _paths(tree)
        if ours != theirs:
            raise ValueError(
                f"linen_variables[{collection!r}]: structure differs from the NNX model's; "
                f"only in Linen: {sorted(theirs - ours)}, only in NNX: {sorted(ours - theirs)}"
            )
        for (path, mine), theirs_leaf in zip(
            jax.tree_util.tree_leaves_with_path(current), jax.tree.leaves(tree), strict=True
        ):
            if mine.shape != theirs_leaf.shape:
                raise ValueError(
                    f"linen_variables[{collection!r}]{jax.tree_util.keystr(path)}: expected shape "
                    f"{tuple(mine.shape)}, got {tuple(theirs_leaf.shape)}"
                )
        state = nnx.state(model, kind)
        nnx.replace_by_pure_dict(state, _as_int_keyed(tree))
        nnx.update(model, state)
    return model


def _plain(tree: PyTree) -> PyTree:
    if hasattr(tree, "items"):
        return {key: _plain(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return [_plain(value) for value in tree]
    return tree


def _as_int_keyed(tree: PyTree) -> PyTree:
    """Lists as dicts keyed 0..n-1: the form ``nnx.replace_by_pure_dict`` expects."""
    if isinstance(tree, dict):
        return {key: _as_int_keyed(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return {i: _as_int_keyed(value) for i, value in enumerate(tree)}
    return tree
