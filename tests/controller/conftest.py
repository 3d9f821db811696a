"""Helpers for the controller tests: resource files, a `bakeoff run` subprocess, a small load driver."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import eventually_async

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(__file__).resolve().parent / "services" / "app.py"
BAKEOFF = [sys.executable, "-m", "bakeoff"]


def service(behaviour: str) -> list[str]:
    return ["python", str(SERVICE), "--port", "{port}", "--behaviour", behaviour]


def bakeoff_doc(name: str = "t", **over) -> dict:
    spec = {
        "mainline": {"command": service("good")},
        "routing": {
            "stickiness": {"header": "X-User-Id"},
            "maxCandidateShare": 0.8,
            "steps": [0.1, 0.2],
            "stepInterval": "2s",
        },
        "judge": {
            "alpha": 0.05,
            "minSamples": 300,
            "maxDuration": "60s",
            "guardrails": [
                {"metric": "error_rate", "maxIncrease": 0.05, "effectSize": 0.3},
                {"metric": "latency_p50", "maxIncreaseRatio": 1.0, "effectSize": 0.5},
            ],
            "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher", "effectSize": 0.3},
        },
        "router": {"listen": "127.0.0.1:0", "admin": "127.0.0.1:0"},
    }
    for k, v in over.items():
        spec[k] = v
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "Bakeoff", "metadata": {"name": name}, "spec": spec}


def variant_doc(name: str, behaviour: str, bakeoff: str = "t", **extra) -> dict:
    return {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "Variant",
        "metadata": {"name": name},
        "spec": {"bakeoff": bakeoff, "command": service(behaviour), "change": {"commit": f"c0ffee-{name}"}, **extra},
    }


def write_docs(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class RunProcess:
    """`bakeoff run` as a real subprocess in its own process group."""

    def __init__(self, spec: Path, state: Path, *extra: str) -> None:
        self.state = state
        self.out = open(state.parent / f"{state.name}-run.out", "ab")
        self.proc = subprocess.Popen(
            [*BAKEOFF, "run", str(spec), "--state-dir", str(state), "--headless", "--drain", "0.2", *extra],
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "BAKEOFF_LOG_LEVEL": "info"},
        )

    def status(self) -> dict | None:
        try:
            st = json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return None
        return st if st.get("pid") == self.proc.pid else None  # not a previous run's

    def journal(self) -> list[dict]:
        p = self.state / "journal.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def output(self) -> str:
        if not self.out.closed:  # kill() closes it
            self.out.flush()
        return (self.state.parent / f"{self.state.name}-run.out").read_text(errors="replace")

    async def wait_for(self, pred, timeout: float, what: str):
        def check():
            st = self.status()
            got = pred(st) if st is not None else None
            if not got and self.proc.poll() is not None and not pred(self.status() or {}):
                raise AssertionError(
                    f"bakeoff run exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}"
                )
            return got

        try:
            return await eventually_async(check, timeout=timeout, interval=0.2, what=what)
        except AssertionError as e:
            if not str(e).startswith("timed out"):
                raise
            raise AssertionError(f"{e}; status={json.dumps(self.status())[:2000]}\n{self.output()[-3000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            with_suppress(lambda: os.killpg(self.proc.pid, signal.SIGKILL))
            self.proc.wait(10)
        self.out.close()


def with_suppress(fn) -> None:
    try:
        fn()
    except (ProcessLookupError, PermissionError):
        pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it holds no resources and is not running
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().split(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


async def drive_load(url: str, stop: asyncio.Event, users: int = 12, new_user: float = 0.05) -> int:
    """Simulated users with sticky ids, as fast as the machine allows; returns requests sent.
    ``new_user``: the chance a user's next request comes under a new id (1.0: every request, so the
    split follows the weights closely from the first second instead of by a few dozen ids)."""
    sent = 0

    async def user(i: int, s: aiohttp.ClientSession) -> None:
        nonlocal sent
        rng = random.Random(i)
        uid = f"u{i}-{rng.getrandbits(32):x}"
        while not stop.is_set():
            try:
                async with s.get(f"{url}/item/{rng.randrange(100)}", headers={"X-User-Id": uid}) as r:
                    await r.read()
                sent += 1
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.05)  # a user pausing after an error, as a client would
            if rng.random() < new_user:
                uid = f"u{i}-{rng.getrandbits(32):x}"

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users), timeout=timeout) as s:
        await asyncio.gather(*(user(i, s) for i in range(users)))
    return sent


@pytest.fixture
def runs():
    started: list[RunProcess] = []

    def make(*a, **kw) -> RunProcess:
        r = RunProcess(*a, **kw)
        started.append(r)
        return r

    yield make
    for r in started:
        st = r.status() or {}
        r.kill()
        for w in (st.get("workloads") or {}).values():
            if w.get("pgid"):
                with_suppress(lambda pgid=w["pgid"]: os.killpg(pgid, signal.SIGKILL))
