"""The locust launcher: a locust file run headless by locust as a library, in a child process.

Importing locust patches sockets, threads and the ``select`` module with
gevent for the whole process, which would break the asyncio loop (and the
router) running in this one; so the child patches first, loads the locust
file, runs every concrete ``User`` class in it with a local runner, and
prints one JSON line of :class:`~bakeoff.load.LoadStats` on stdout at the
end.  Its log (locust's own lines) goes to ``log_path`` when given.  The
target's events URL and the think time reach the locust file in
``BAKEOFF_EVENTS_URL`` and ``BAKEOFF_THINK_TIME`` (examples/shop/locustfile.py
reads them); a locust file that keeps a module-level ``COUNTS`` dict (errors,
sessions, purchases, events_sent, events_failed) has it reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bakeoff.load import LoadStats, Target

# The child patches with gevent before anything imports ssl (asyncio and aiohttp
# do); patching later makes gevent warn of subtle breakage.
_CHILD_BOOT = (
    "from gevent import monkey; monkey.patch_all(); "
    "from bakeoff.load.locustload import child_main; raise SystemExit(child_main())"
)


@dataclass(frozen=True)
class LocustLoad:
    """``users`` locust users from ``locustfile``, started at ``spawn_rate`` a second (default: all at once).

    Runs until ``stop`` is set (then locust stops its users and still
    reports), or ``seconds`` when given.
    """

    locustfile: Path
    users: int
    think: float = 0.0
    spawn_rate: float | None = None
    seconds: float | None = None
    log_path: Path | None = None

    @property
    def description(self) -> str:
        return f"locust, {self.users} users, {self.locustfile}"

    async def run(self, target: Target, stop: asyncio.Event) -> LoadStats:
        env = dict(os.environ, BAKEOFF_THINK_TIME=str(self.think))
        if target.events_url:
            env["BAKEOFF_EVENTS_URL"] = target.events_url
        else:
            env.pop("BAKEOFF_EVENTS_URL", None)
        args = [
            "--locustfile", str(self.locustfile), "--host", target.url, "--users", str(self.users),
            "--spawn-rate", str(self.spawn_rate or self.users),
        ]  # fmt: skip
        if self.seconds is not None:
            args += ["--seconds", str(self.seconds)]
        log = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CHILD_BOOT, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=log if log is not None else asyncio.subprocess.PIPE,
                env=env, cwd=str(self.locustfile.parent),
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()
        communicate = asyncio.ensure_future(proc.communicate())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            limit = None if self.seconds is None else self.seconds + 30
            await asyncio.wait({communicate, stopper}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            if not communicate.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)  # the child stops its users and still reports
                try:
                    await asyncio.wait_for(asyncio.shield(communicate), 15)
                except TimeoutError:
                    proc.kill()
            out, err = await communicate
        except BaseException:
            if proc.returncode is None:
                proc.kill()
            raise
        finally:
            stopper.cancel()
        lines = out.decode(errors="replace").strip().splitlines()
        if proc.returncode != 0 or not lines:
            said = (
                f"see {self.log_path}" if self.log_path is not None else (err or b"").decode(errors="replace")[-4000:]
            )
            raise RuntimeError(f"locust ({self.locustfile}) exited with {proc.returncode}: {said}")
        return LoadStats(**json.loads(lines[-1]))


def child_main(argv: list[str] | None = None) -> int:
    """Runs in the child process: locust as a library, one JSON line of LoadStats on stdout at the end."""
    p = argparse.ArgumentParser(prog="bakeoff.load.locustload")
    p.add_argument("--locustfile", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--spawn-rate", type=float, required=True)
    p.add_argument("--seconds", type=float, default=None)
    args = p.parse_args(argv)

    import importlib.util

    import gevent
    from locust import User, events
    from locust.env import Environment
    from locust.log import setup_logging
    from locust.stats import print_stats

    setup_logging("INFO")
    spec = importlib.util.spec_from_file_location(f"bakeoff_locustfile_{Path(args.locustfile).stem}", args.locustfile)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{args.locustfile}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    users = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, User) and not v.abstract]
    if not users:
        raise SystemExit(f"{args.locustfile}: defines no locust User class (e.g. class Reader(HttpUser))")
    env = Environment(user_classes=users, host=args.host, events=events)
    runner = env.create_local_runner()
    env.events.init.fire(environment=env, runner=runner, web_ui=None)
    gevent.signal_handler(signal.SIGTERM, runner.quit)
    started = time.monotonic()
    runner.start(args.users, spawn_rate=args.spawn_rate)
    if args.seconds is not None:
        gevent.spawn_later(args.seconds, runner.quit)
    runner.greenlet.join()
    print_stats(env.stats)
    totals = env.stats.total
    counts = getattr(module, "COUNTS", None) or {}
    stats = LoadStats(
        requests=totals.num_requests,
        errors=counts.get("errors", totals.num_failures),
        **{k: counts.get(k, 0) for k in ("sessions", "purchases", "events_sent", "events_failed")},
    )
    print(f"locust ran {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(json.dumps(stats.to_dict()), flush=True)
    return 0
