"""Shared test set-up: every test runs on uvloop, like the router in production.

Waiting: a test that waits for something to happen polls for it with
``eventually()`` (or ``eventually_async()`` in a coroutine) instead of
sleeping a fixed time, so it is as fast as the machine allows and, on a busy
machine, waits long enough; when the time is up the failure says what was
awaited and the last value seen.  A ``sleep`` left in a test is part of the
behaviour under test (a slow upstream, a client that dribbles its bytes) and
says so in a comment.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import uvloop

T = TypeVar("T")


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}


def _shown(value: object, limit: int = 2000) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, (str, bytes)):  # output or a log: what came last matters
        return f"({len(text)} characters) ..." + text[-limit:]
    return text[:limit] + f"... ({len(text)} characters)"


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g}s waiting for {what}; last value seen: {_shown(last)}")


def eventually(
    check: Callable[[], T],
    *,
    what: str,
    until: Callable[[T], object] = bool,
    timeout: float = 30.0,
    interval: float = 0.05,
    retry: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check()`` until it returns a true value (or one ``until`` accepts), and return that value.

    An exception of a type in ``retry`` counts as "not yet" (e.g. a refused
    connection while a server starts); any other exception ends the wait at
    once (e.g. a check that raises because the process it waits for exited).
    After ``timeout`` seconds the test fails naming ``what`` and the last
    value (or exception) ``check`` gave.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = check()
        except retry as e:
            last = e
        else:
            if until(last):
                return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    until: Callable[[T], object] = bool,
    timeout: float = 30.0,
    interval: float = 0.05,
    retry: tuple[type[BaseException], ...] = (),
) -> T:
    """``eventually()`` for a coroutine: ``check`` may be a plain function or return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = check()
            if inspect.isawaitable(last):
                last = await last
        except retry as e:
            last = e
        else:
            if until(last):
                return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(interval)


def require_binary(path: str, what: str) -> None:
    """Skip when a system binary is missing, except in CI, where that is a failure."""
    if os.path.exists(path):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} ({path}) is missing in CI: .ci/run must install it")
    pytest.skip(f"{what} ({path}) is not installed")


def require_tool(found: object, what: str, how: str) -> None:
    """Skip when a tool the test needs is missing (``found`` is false), except under CI=true: there it fails.

    ``how`` says how to get it (e.g. "apt-get install chromium").
    """
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing with CI=true: .ci/run must provide it ({how})")
    pytest.skip(f"{what} is not installed ({how})")
