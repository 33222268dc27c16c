"""Strict settings for every test: silent rank promotion is an error, and so is any warning.

* ``jax_numpy_rank_promotion = "raise"``: adding ``[b, d]`` to ``[d, 1]`` by accident fails.
* Warnings are errors (``filterwarnings = error`` in pyproject.toml).
"""

import os

os.environ.setdefault("IMPL_PROGRESS", "0")

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

SEEDS = (0, 1, 2)  # claim tests hold for every one of these


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request) -> int:
    return request.param
