"""Which build of the router's hot path runs: compiled by mypyc, or the pure-Python modules (issue 18 item 2).

``pip install -e .`` (and the wheel) compile bakeoff.router's hot modules
with mypyc; ``bakeoff --version`` names the build in use, and
``BAKEOFF_PURE_PYTHON=1`` forces the pure-Python modules (CI runs tests/router
both ways).  The extension must not be used when a source file is newer than
it: an edited checkout would otherwise run stale code.  Outside CI a machine
without a C compiler has no extension; the tests that need one skip there.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bakeoff.router

ROUTER_DIR = Path(bakeoff.router.__file__).resolve().parent
HOT = bakeoff.router.HOT_MODULES


def _built() -> bool:
    return all(
        any((ROUTER_DIR / f"{m}{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES) for m in HOT
    )


def _need_build() -> None:
    if _built():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but the router's hot path is not compiled: `pip install -e .` must build it (setup.py)")
    pytest.skip("the router's hot path is not compiled here (no C compiler, or BAKEOFF_NO_COMPILE at install)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BAKEOFF_PURE_PYTHON"}
    env.update(extra)
    return env


def _run(code_or_args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, *code_or_args], capture_output=True, text=True, env=env, timeout=120, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


PROBE = (
    "import bakeoff.router as r, bakeoff.router.downstream as d, bakeoff.router.upstream as u; "
    "print(r.hot_path()); print(d.__file__); print(u.__file__)"
)


def test_version_says_compiled_and_the_router_modules_are_the_extension() -> None:
    _need_build()
    assert _run(["-m", "bakeoff", "--version"], _env()).endswith("router hot path: compiled (mypyc)")
    build, down, up = _run(["-c", PROBE], _env()).splitlines()
    assert build == "compiled (mypyc)"
    assert down.endswith(".so") and up.endswith(".so"), (down, up)


def test_pure_python_forced_by_the_environment() -> None:
    out = _run(["-m", "bakeoff", "--version"], _env(BAKEOFF_PURE_PYTHON="1"))
    assert out.endswith("router hot path: pure Python (BAKEOFF_PURE_PYTHON=1)"), out
    build, down, up = _run(["-c", PROBE], _env(BAKEOFF_PURE_PYTHON="1")).splitlines()
    assert down.endswith("downstream.py") and up.endswith("upstream.py"), (down, up)


def test_a_source_newer_than_its_extension_runs_as_source(tmp_path: Path) -> None:
    """A copy of the package whose downstream.py was edited after the build: all of the hot path runs from source."""
    _need_build()
    copy = tmp_path / "bakeoff" / "router"
    shutil.copytree(ROUTER_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    later = time.time() + 5
    os.utime(copy / "downstream.py", (later, later))
    env = _env(PYTHONPATH=str(tmp_path))
    build, down, up = _run(["-c", PROBE], env, cwd=tmp_path).splitlines()
    assert build == "pure Python (compiled extension older than downstream.py: reinstall to rebuild)", build
    assert down == str(copy / "downstream.py") and up == str(copy / "upstream.py"), (down, up)
    # The untouched copy uses its extension: the check is about the edit, not the copy.
    os.utime(copy / "downstream.py", (later - 3600, later - 3600))
    build, down, _ = _run(["-c", PROBE], env, cwd=tmp_path).splitlines()
    assert build == "compiled (mypyc)" and down.startswith(str(copy)) and down.endswith(".so"), (build, down)
