"""Strict settings for every test: silent rank promotion is an error, and so is any warning.

* ``jax_numpy_rank_promotion = "raise"``: adding ``[b, d]`` to ``[d, 1]`` by accident fails.
* Warnings are errors (``filterwarnings = error`` in pyproject.toml).
* XLA's compiled programs are cached on disk, so a second run of the suite is several times faster.
"""

import os
from pathlib import Path

os.environ.setdefault("IMPL_PROGRESS", "0")

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# Compiled programs persist across runs in .cache/jax: a warm re-run of the suite skips most of
# XLA's compile time (the bulk of a small test's cost). Delete the folder to start cold.
_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "jax"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

SEEDS = (0, 1, 2)  # claim tests hold for every one of these


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request) -> int:
    return request.param
