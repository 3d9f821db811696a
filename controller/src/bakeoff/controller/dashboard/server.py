"""The dashboard's HTTP server: pages, server-sent events, and the approve/abort actions."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from bakeoff.controller.report.html import context, render

STATIC = Path(__file__).resolve().parent / "static"
PUSH_EVERY = 0.5  # seconds between renders of a watched page: a change shows within about this much
# An action must carry this header: a page on another site cannot send it without a CORS preflight
# (which this server never answers), so it cannot approve or abort through a browser on this machine.
ACTION_HEADER = "X-Bakeoff-Dashboard"


class DashboardError(Exception):
    """The dashboard could not start (e.g. its port is in use)."""


class SourceError(Exception):
    """An action or a read the source refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Source(Protocol):
    where: str

    def rows(self) -> list[dict[str, Any]]: ...

    def report(self, key: str) -> dict[str, Any] | None: ...

    def approve(self, key: str, variant: str) -> str: ...

    def abort(self, key: str, reason: str) -> str: ...


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


class Dashboard:
    def __init__(self, source: Source, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        self.host, self.port = host, port
        self.runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/b/{key}", self.page)
        app.router.add_get("/stream", self.stream)
        app.router.add_post("/b/{key}/approve", self.approve)
        app.router.add_post("/b/{key}/abort", self.abort)
        app.router.add_get("/static/dashboard.js", self.script)
        return app

    async def start(self) -> str:
        # an open page's event stream never ends by itself: stopping waits for it at most a second
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            if e.errno == errno.EADDRINUSE:
                raise DashboardError(
                    f"dashboard port {self.host}:{self.port} is in use; choose another with --ui-port "
                    "(0 picks a free one)"
                ) from None
            raise DashboardError(f"dashboard cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        server = getattr(site, "_server", None)
        port = server.sockets[0].getsockname()[1] if server is not None and server.sockets else self.port
        self.url = f"http://{self.host}:{port}/"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- reading ------------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any) -> Any:
        # a blocking source (the cluster's API calls) reads in a thread; an in-process one (the run's
        # Runner, which the event loop changes) on the loop, between the run's passes
        if getattr(self.source, "blocking", True):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def _rows(self) -> list[dict[str, Any]]:
        rows = await self._call(self.source.rows)
        for r in rows:
            r.setdefault("href", f"/b/{r['key']}")
            r["age"] = age(r.get("age_s"))
        return rows

    async def _context(self, key: str) -> dict[str, Any] | None:
        rep = await self._call(self.source.report, key)
        # the charts are the costly part (tens of ms a look and variant): off the event loop, which in
        # `bakeoff run` is the router's too
        return await asyncio.to_thread(context, rep) if rep is not None else None

    async def index(self, request: web.Request) -> web.Response:
        try:
            rows = await self._rows()
        except SourceError as e:
            return web.Response(text=_error_page(str(e), self.source.where), content_type="text/html", status=e.status)
        page = render("dashboard.html.j2", c=None, rows=rows, where=self.source.where, stream="/stream", key="")
        return web.Response(text=page, content_type="text/html")

    async def page(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        try:
            c = await self._context(key)
        except SourceError as e:
            return web.Response(text=_error_page(str(e), self.source.where), content_type="text/html", status=e.status)
        if c is None:
            return web.Response(
                text=_error_page(f"no bake-off {key} (deleted, or never there)", self.source.where),
                content_type="text/html",
                status=404,
            )
        page = render("dashboard.html.j2", c=c, rows=[], where=self.source.where, stream="/stream", key=key)
        return web.Response(text=page, content_type="text/html")

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "dashboard.js").read_text(), content_type="application/javascript")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``update`` with the page's fragment whenever it changed, ``gone`` when the
        bake-off was deleted, ``problem`` when the source cannot be read (the page keeps what it shows)."""
        key = request.query.get("key") or ""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        last = None
        try:
            while True:
                began = time.monotonic()
                try:
                    if key:
                        c = await self._context(key)
                        if c is None:
                            msg = {"message": f"bake-off {key} was deleted; the page shows it as it was last seen"}
                            await resp.write(_event("gone", msg))
                            last = "gone"
                        else:
                            body = await asyncio.to_thread(render, "fragment.html.j2", c=c, rows=[])
                            if body != last:
                                last = body
                                actions = {
                                    "waiting": c["waiting"],
                                    "can_approve": c["can_approve"],
                                    "can_abort": c["can_abort"],
                                }
                                await resp.write(_event("update", {"html": body, **actions, "at": time.time()}))
                    else:
                        body = render("fragment.html.j2", c=None, rows=await self._rows())
                        if body != last:
                            last = body
                            await resp.write(_event("update", {"html": body, "at": time.time()}))
                except SourceError as e:
                    await resp.write(_event("problem", {"message": str(e)}))
                # at most half the time rendering, however large the bake-off
                busy = time.monotonic() - began
                await self._wait(max(PUSH_EVERY, busy) if last != "gone" else PUSH_EVERY * 4)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def _wait(self, timeout: float) -> None:
        """Until the source says something changed (a source that can: the local run's events), or ``timeout``."""
        changed = getattr(self.source, "changed", None)
        if changed is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    # -- acting -------------------------------------------------------------------
    async def _act(self, request: web.Request, what: str) -> web.Response:
        if request.headers.get(ACTION_HEADER) != "1":
            return web.json_response({"ok": False, "message": f"missing the {ACTION_HEADER} header"}, status=403)
        key = request.match_info["key"]
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            got = await request.json()
            body = got if isinstance(got, dict) else {}
        try:
            if what == "approve":
                msg = await self._call(self.source.approve, key, str(body.get("variant") or ""))
            else:
                msg = await self._call(self.source.abort, key, str(body.get("reason") or "aborted from the dashboard"))
        except SourceError as e:
            return web.json_response({"ok": False, "message": str(e)}, status=e.status)
        return web.json_response({"ok": True, "message": msg})

    async def approve(self, request: web.Request) -> web.Response:
        return await self._act(request, "approve")

    async def abort(self, request: web.Request) -> web.Response:
        return await self._act(request, "abort")


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _error_page(message: str, where: str) -> str:
    import html

    return (
        f"<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>bakeoff dashboard</title></head><body>"
        f"<p><a href='/'>all bake-offs</a> · {html.escape(where)}</p>"
        f"<p class='notice' id='notice'>{html.escape(message)}</p></body></html>"
    )
