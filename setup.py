"""Compiles the router's hot path with mypyc; everything else is in pyproject.toml.

The modules in bakeoff.router.HOT_MODULES become extension modules beside
their sources (the wheel carries them; ``pip install -e .`` builds them in
place).  Without a C compiler, or with ``BAKEOFF_NO_COMPILE=1``, the install
goes on as pure Python and says so; ``bakeoff --version`` tells which build a
process uses.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROUTER = "router/src/bakeoff/router"
HOT_MODULES = ("http11", "headscan", "downstream", "upstream", "flow_control", "routing", "stats")


def note(msg: str) -> None:
    print(f"bakeoff setup: {msg}", file=sys.stderr, flush=True)


class OptionalBuildExt(build_ext):
    """Build the extensions if a C compiler works; else fall back to the pure-Python modules, saying so."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # distutils' CompileError, CCompilerError, PlatformError, OSError
            note(f"could not compile the router's hot path ({type(e).__name__}: {e}); installing it as pure Python")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as e:
            note(f"could not compile {ext.name} ({type(e).__name__}: {e}); installing it as pure Python")
            raise


def ext_modules() -> list:
    if os.environ.get("BAKEOFF_NO_COMPILE", "") not in ("", "0"):
        note("BAKEOFF_NO_COMPILE is set: the router's hot path stays pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        note("mypyc is not installed: the router's hot path stays pure Python")
        return []
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)  # mypy reads pyproject.toml (mypy_path) from here
    try:
        return mypycify(
            [f"{ROUTER}/{m}.py" for m in HOT_MODULES],
            opt_level="3",
            group_name="bakeoff.router._hot_path",
        )
    except (Exception, SystemExit) as e:  # mypy found an error: the sources still run as they are
        note(f"mypyc could not translate the router's hot path ({e!r}); it stays pure Python")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
