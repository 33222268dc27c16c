"""MkDocs hook: run the pages' Python examples at build time, with an on-disk result cache.

A block written as ```` ```python exec="on" session="main" result="text" ```` runs when the site
is built (markdown-exec parses the fence options and renders the result). This hook replaces
markdown-exec's Python runner with one that

* scopes sessions to the page, so two pages may both use ``session="main"``;
* captures everything written to stdout, including output printed by ``impl`` functions
  such as `impl.plotting.show`;
* caches each block's output under ``.cache/examples/``, keyed by the code of the block and of
  every earlier block of its session, the source of the ``impl`` modules they import
  (transitively), the data files those modules name (``"milestones.csv"``) and the versions
  of the key packages. A warm rebuild executes nothing; a
  changed model re-runs exactly the pages that import it. When a block misses the cache after
  earlier blocks of its session hit it, those earlier blocks are replayed first, silently;
* names the page and the error when a block fails, which ``mkdocs build --strict`` turns into
  a failed build.

Environment: ``IMPL_EXAMPLES_CACHE=0`` disables the cache; ``IMPL_EXAMPLES=skip`` renders no
output at all (used by the test that checks the built site for external assets).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from markdown_exec._internal import main as markdown_exec_main
from markdown_exec._internal.formatters.base import ExecutionError, base_format
from markdown_exec._internal.rendering import code_block

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "examples"
log = logging.getLogger("mkdocs.plugins.examples")

_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "chex",
    "numpy",
    "matplotlib",
    "scikit-learn",
    "markdown-exec",
)

_state: dict = {"page": "<unknown>", "sessions": {}, "chains": {}, "pending": {}, "counter": 0}
_stats = {"ran": 0, "cached": 0}


# ---------------------------------------------------------------------------------------
# Cache key: code chain + transitive impl sources + package versions.
# ---------------------------------------------------------------------------------------
def _salt() -> str:
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}==absent")
    return ";".join(versions) + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports_of(path: Path) -> set[str]:
    """Absolute ``impl.*`` modules imported by a source file (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + "._"  # so one level up stays in this package
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: str = "") -> set[str]:
    """Modules named by the import statements of ``source`` that belong to ``impl``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # the block will fail to run and report it; key on everything
        return {"impl"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            # `from impl.x import y` may be a module
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m == "impl" or m.startswith("impl.")}


def _impl_digest(code: str) -> str:
    todo = _imports_in(code) | {"impl"}
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # parent packages run their __init__ too
            name = ".".join(parts[:i])
            if name in seen:
                continue
            path = _module_file(name)
            if path is None:
                continue
            seen[name] = path
            todo |= _imports_of(path) - seen.keys()
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].read_bytes())
    for data in sorted({f for path in seen.values() for f in _data_files_of(path)}):
        digest.update(str(data.relative_to(ROOT)).encode() + b"\0" + data.read_bytes())
    return digest.hexdigest()


_DATA_SUFFIXES = (".csv", ".tsv", ".json", ".txt")


def _data_files_of(path: Path) -> set[Path]:
    """Data files a module reads, found from the file names in its string literals.

    A module that reads ``essays/milestones.csv`` names ``"milestones.csv"`` somewhere in its
    source; the name is looked up beside the module, in its sub-folders, under ``essays/`` and
    at the repository root. Editing the data file then re-runs exactly the pages that use it.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.endswith(_DATA_SUFFIXES)
        ):
            name = node.value
            if "\n" in name or len(name) > 200:
                continue
            candidates = [
                path.parent / name,
                ROOT / "essays" / name,
                ROOT / name,
                *path.parent.glob(f"*/{name}"),
            ]
            found |= {c.resolve() for c in candidates if c.is_file()}
    return found


# ---------------------------------------------------------------------------------------
# Running one block.
# ---------------------------------------------------------------------------------------
def _exec(code: str, session: str | None) -> str:
    """Execute ``code`` in the session's namespace, returning all it wrote to stdout."""
    _state["counter"] += 1
    filename = f"<{_state['page']} example {_state['counter']}>"
    namespace = _state["sessions"].setdefault(session, {}) if session else {}
    namespace.setdefault("__name__", "__page_example__")
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, filename, "exec"), namespace)
    except Exception as error:
        lines = code.splitlines()
        trace = traceback.TracebackException.from_exception(error)
        for frame in trace.stack:
            if frame.filename == filename and frame.lineno and frame.lineno <= len(lines):
                frame._line = lines[frame.lineno - 1]  # show the page's line in the traceback
        text = "".join(trace.format())
        log.warning("%s: example failed: %s", _state["page"], f"{type(error).__name__}: {error}")
        raise ExecutionError(code_block("python", text)) from error
    return buffer.getvalue()


def _run(
    code: str,
    returncode: int | None = None,
    session: str | None = None,
    id: str | None = None,
    **extra,
):
    if os.environ.get("IMPL_EXAMPLES") == "skip":
        return ""
    page = _state["page"]
    chain_key = (page, session) if session else None
    prior = _state["chains"].get(chain_key, []) if chain_key else []
    all_code = "\n".join([*prior, code])
    key = hashlib.sha256(
        json.dumps([_SALT, _impl_digest(all_code), prior, code]).encode()
    ).hexdigest()
    cached = CACHE_DIR / f"{key}.out"
    use_cache = os.environ.get("IMPL_EXAMPLES_CACHE", "1") != "0"
    scoped = f"{page}::{session}" if session else None
    if use_cache and cached.exists():
        output = cached.read_text(encoding="utf-8")
        if chain_key:
            _state["chains"].setdefault(chain_key, []).append(code)
            _state["pending"].setdefault(chain_key, []).append(code)
        _stats["cached"] += 1
        return output
    for earlier in _state["pending"].pop(chain_key, []):  # restore the session's state first
        _exec(earlier, scoped)
    output = _exec(code, scoped)
    _stats["ran"] += 1
    if chain_key:
        _state["chains"].setdefault(chain_key, []).append(code)
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cached.write_text(output, encoding="utf-8")
    return output


def _format_python(**kwargs):
    return base_format(language="python", run=_run, **kwargs)


_SALT = _salt()
markdown_exec_main.formatters["python"] = _format_python
markdown_exec_main.formatters["py"] = _format_python


# ---------------------------------------------------------------------------------------
# MkDocs events.
# ---------------------------------------------------------------------------------------
def on_pre_build(config, **kwargs):
    """Fresh sessions for every build (``mkdocs serve`` rebuilds in the same process)."""
    os.environ["IMPL_SITE_BUILD"] = "1"  # impl.plotting.show prints inline SVG
    os.environ["IMPL_PROGRESS"] = "0"  # no progress bars in the build log
    _state.update(sessions={}, chains={}, pending={}, counter=0)
    _stats.update(ran=0, cached=0)


def on_page_markdown(markdown, page, config, files, **kwargs):
    _state["page"] = page.file.src_uri
    return markdown


def on_post_build(config, **kwargs):
    log.info("examples: %d executed, %d from cache", _stats["ran"], _stats["cached"])
    training = sys.modules.get("impl.training")  # loaded only if an example trained something
    if training is not None:
        cache = training.COMPILE_CACHE
        log.info(
            "training loops: %d compiled, %d reused from the compile cache",
            cache.misses,
            cache.hits,
        )
