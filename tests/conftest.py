"""Strict settings for every test: silent rank promotion is an error, and so is any warning.

* ``jax_numpy_rank_promotion = "raise"``: adding ``[b, d]`` to ``[d, 1]`` by accident fails.
* Tests marked ``strict_dtypes`` (a module sets ``pytestmark = pytest.mark.strict_dtypes``) run
  under ``jax.numpy_dtype_promotion("strict")``: no implicit promotion at all, not even
  ``int32 * 0.5``. Modules whose code is written with explicit casts carry the mark.
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


@pytest.fixture(autouse=True)
def _strict_dtypes(request):
    if request.node.get_closest_marker("strict_dtypes") is None:
        yield
        return
    with jax.numpy_dtype_promotion("strict"):
        yield


# Claim tests hold for every one of these seeds. `tests/claims_over_seeds.py` widens them to
# 0-9 through IMPL_CLAIM_SEEDS to measure each claim's margin on ten seeds.
SEEDS = tuple(int(s) for s in os.environ.get("IMPL_CLAIM_SEEDS", "0,1,2").split(","))

# a folder: each worker appends what reports measured
_RECORD = os.environ.get("IMPL_RECORD_METRICS")
if _RECORD:
    import json

    from impl import report as _report

    _init = _report.Report.__init__

    def _recording_init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        metrics = {k: float(v) for k, v in self.metrics.items() if isinstance(v, int | float)}
        with open(Path(_RECORD) / f"metrics-{worker}.jsonl", "a") as out:
            out.write(json.dumps({"test": test, "title": self.title, "metrics": metrics}) + "\n")

    _report.Report.__init__ = _recording_init


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request) -> int:
    return request.param
