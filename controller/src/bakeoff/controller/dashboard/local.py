"""The dashboard of one local run (``bakeoff run --ui``): the Runner in this process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bakeoff.controller.dashboard.server import SourceError
from bakeoff.controller.journal import write_request
from bakeoff.controller.reconcile import FINAL


class Changed:
    """Wakes every watching page at once when the run records an event (a rollback, a promotion)."""

    def __init__(self) -> None:
        self.waiters: set[asyncio.Future[None]] = set()

    def set(self) -> None:
        for f in self.waiters:
            if not f.done():
                f.set_result(None)
        self.waiters.clear()

    async def wait(self) -> None:
        f = asyncio.get_running_loop().create_future()
        self.waiters.add(f)
        try:
            await f
        finally:
            self.waiters.discard(f)


class _Notifying:
    """The run's view, with each event also waking the dashboard's pages."""

    def __init__(self, view: Any, changed: Changed) -> None:
        self._view = view
        self._changed = changed

    def event(self, e: dict[str, Any]) -> None:
        if self._view is not None:
            self._view.event(e)
        self._changed.set()

    def update(self, runner: Any) -> None:
        if self._view is not None:
            self._view.update(runner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


class RunSource:
    """Reads the running Runner; approves and aborts through its state directory, as
    ``bakeoff approve|abort`` do (the run picks the request up on its next pass and journals it)."""

    blocking = False  # read on the event loop, between the run's passes

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.where = f"local run, state in {runner.journal.dir}"
        self.changed = Changed()
        runner.view = _Notifying(runner.view, self.changed)

    def _check(self, key: str) -> None:
        if key != self.runner.b.name:
            raise SourceError(f"no bake-off {key} in this run (it runs {self.runner.b.name})", 404)

    def rows(self) -> list[dict[str, Any]]:
        r = self.runner
        st = r.state
        d = st.decision or {}
        leader = d.get("winner") or st.mainline
        return [
            {
                "key": r.b.name,
                "name": r.b.name,
                "phase": st.phase,
                "leader": leader,
                "variants": len(st.variants) + 1,
                "age_s": time.time() - r.started_at if r.started_at else None,
            }
        ]

    def report(self, key: str) -> dict[str, Any] | None:
        from bakeoff.controller.report.model import build

        if key != self.runner.b.name:
            return None
        rep = build(self.runner, None)
        # rendered in a thread while the run goes on: its own copies of the lists the run appends to
        rep["history"], rep["events"] = list(rep["history"]), [dict(e) for e in rep["events"]]
        return rep

    def approve(self, key: str, variant: str) -> str:
        self._check(key)
        st = self.runner.state
        waiting = [n for n, v in st.variants.items() if v.phase == "Winner"]
        if not waiting:
            raise SourceError(f"no winner is waiting for approval (phase {st.phase})", 409)
        if variant and variant not in waiting:
            raise SourceError(f"{variant} is not waiting for approval; waiting: {', '.join(waiting)}", 409)
        name = variant or waiting[0]
        write_request(self.runner.journal.dir / "approve", {"variant": name, "reason": "approved from the dashboard"})
        return f"approved {name}; the run promotes it on its next pass"

    def abort(self, key: str, reason: str) -> str:
        self._check(key)
        if self.runner.state.phase in FINAL:
            raise SourceError("already decided; nothing to abort", 409)
        write_request(self.runner.journal.dir / "abort", {"reason": reason})
        return "aborting; the run stops without a winner on its next pass"
