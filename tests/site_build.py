"""One strict build of the site for the tests that read built pages, made once per test process.

``IMPL_EXAMPLES=skip`` leaves the executed examples' output out (the examples themselves are
checked by CI's full build), so the build takes seconds rather than minutes. `test_site`,
`test_search` and `test_side_by_side` all read this one build.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def built_site() -> Path:
    """The folder of a fresh ``mkdocs build --strict`` (examples skipped); fails with its log."""
    site = Path(tempfile.mkdtemp(prefix="site-tests-"))
    env = {**os.environ, "IMPL_EXAMPLES": "skip", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return site
