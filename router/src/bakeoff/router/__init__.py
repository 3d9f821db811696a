"""The router's hot path runs compiled (mypyc) when a build of it is present, else as pure Python.

``pip install`` compiles ``HOT_MODULES`` with mypyc into extension modules
beside their sources (setup.py); the ``.py`` files stay the reference and the
fallback.  The extension is not used -- and the ``.py`` files are imported
instead -- when ``BAKEOFF_PURE_PYTHON=1`` is set (CI runs tests/router both
ways), or when a source file is newer than its extension (an edited checkout
whose build is stale).  ``hot_path()`` says which is in use and why;
``bakeoff --version`` prints it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

HOT_MODULES = ("http11", "headscan", "downstream", "upstream", "flow_control", "routing", "stats")
PURE_ENV = "BAKEOFF_PURE_PYTHON"
_HERE = Path(__file__).resolve().parent


def _forced_pure() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0", "false", "no")


def _extension(name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = _HERE / f"{name}{suffix}"
        if p.exists():
            return p
    return None


# An installer writes a wheel's files one after the other, so a source may be
# a moment newer than its extension; an edit comes later than this.
_STALE_AFTER_SECONDS = 2.0


def _stale() -> list[str]:
    """Hot modules whose source is newer than their compiled extension (edited since the build)."""
    stale = []
    for name in HOT_MODULES:
        ext = _extension(name)
        if ext is not None and (_HERE / f"{name}.py").stat().st_mtime > ext.stat().st_mtime + _STALE_AFTER_SECONDS:
            stale.append(name)
    return stale


def hot_path() -> str:
    """Which build of the hot path this process uses, in words, with the reason for a fallback."""
    if _forced_pure():
        return f"pure Python ({PURE_ENV}=1)"
    missing = [n for n in HOT_MODULES if _extension(n) is None]
    if missing:
        return (
            "pure Python (no compiled extension: installed from an sdist or without a C compiler; "
            "see docs/benchmarks.md)"
        )
    if _use_source:
        return f"pure Python (compiled extension older than {', '.join(_use_source)}.py: reinstall to rebuild)"
    return "compiled (mypyc)"


class _SourceFinder:
    """Finds the hot modules as their .py files, ahead of the extension modules beside them."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = {f"{__name__}.{n}": n for n in names}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        short = self.names.get(fullname)
        if short is None:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{short}.py")


# All or nothing: the compiled modules call each other natively, so mixing a
# compiled one with a source one (edited since, or never built) is not done.
_use_source: list[str] = [] if _forced_pure() else _stale()
if _forced_pure() or _use_source or any(_extension(n) is None for n in HOT_MODULES):
    sys.meta_path.insert(0, _SourceFinder(HOT_MODULES))
