"""Shared test set-up: every test runs on uvloop, like the router in production."""

import os

import pytest
import uvloop


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}


def require_binary(path: str, what: str) -> None:
    """Skip when a system binary is missing, except in CI, where that is a failure."""
    if os.path.exists(path):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} ({path}) is missing in CI: .ci/run must install it")
    pytest.skip(f"{what} ({path}) is not installed")
