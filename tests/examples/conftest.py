"""The shop implementations as real subprocesses on 127.0.0.1, each with its own SQLite file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
IMPLEMENTATIONS = ("mainline", "cached", "n_plus_one", "buggy", "better_checkout")


def _load_shop_common():
    # Under a name of its own: "common" alone could clash with other test helpers.
    spec = importlib.util.spec_from_file_location("shop_common", SHOP / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shop_common = _load_shop_common()  # the seed data is the ground truth every implementation must serve


class ShopProcess:
    """``python examples/shop/<impl>.py --port P --db FILE`` as a child process."""

    def __init__(self, impl: str, workdir: Path) -> None:
        self.impl = impl
        self.port = free_port()
        self.db_path = workdir / f"{impl}-{self.port}.db"
        self.log_path = workdir / f"{impl}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spawn(self) -> ShopProcess:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(SHOP / f"{self.impl}.py"), "--port", str(self.port), "--db", str(self.db_path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def wait_healthy(self, timeout: float = 30.0) -> ShopProcess:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.impl} exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return r.status == 200 and json.load(r).get("status") == "ok"

        eventually(
            healthy,
            timeout=timeout,
            retry=(urllib.error.URLError, OSError, ValueError),
            what=f"{self.impl} to answer /healthz (log: {self.log_path})",
        )
        return self

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def start_shops(impls, workdir: Path) -> dict[str, ShopProcess]:
    # Spawn all first, then wait: the interpreters start in parallel.
    procs = {impl: ShopProcess(impl, workdir).spawn() for impl in impls}
    try:
        for p in procs.values():
            p.wait_healthy()
    except BaseException:
        for p in procs.values():
            p.stop()
        raise
    return procs


@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    """All five implementations, shared by a module's tests (each test uses its own users and products)."""
    procs = start_shops(IMPLEMENTATIONS, tmp_path_factory.mktemp("shops"))
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture
def start_shop(tmp_path):
    """Start named implementations for one test; stopped (and checked to exit cleanly) afterwards."""
    started: list[ShopProcess] = []

    def start(*impls: str) -> list[ShopProcess]:
        procs = start_shops(impls, tmp_path)
        started.extend(procs.values())
        return list(procs.values())

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def seed() -> dict[int, dict]:
    """The seeded catalogue by product id, as the API should show it."""
    categories, products = shop_common.seed_rows()
    names = dict(categories)
    return {
        pid: {
            "id": pid,
            "name": name,
            "category": names[cat],
            "price_cents": price,
            "stock": stock,
            "weight_grams": weight,
            "description": desc,
        }  # fmt: skip
        for pid, name, cat, price, stock, weight, desc in products
    }
