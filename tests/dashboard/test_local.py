"""The live dashboard of `bakeoff run --ui`, in a real browser (headless Chromium via Playwright):
a real run (real router, real variant processes, real sockets), the page it prints."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from tests.conftest import eventually_async
from tests.controller.conftest import bakeoff_doc, drive_load, variant_doc, write_docs
from tests.dashboard.browser import browser_page

pytestmark = [pytest.mark.slow, pytest.mark.serial]


async def dashboard_url(run) -> str:
    def find() -> str | None:
        m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/\S*)", run.output())
        if m is None and run.proc.poll() is not None:
            raise AssertionError(f"bakeoff run exited ({run.proc.returncode}):\n{run.output()[-3000:]}")
        return m.group(1) if m else None

    return await eventually_async(find, timeout=60, interval=0.2, what="the dashboard's address on stdout")


async def test_page_loads_clean_and_shows_a_rollback_within_2s(tmp_path, runs):
    spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(), variant_doc("erroring", "error")])
    run = runs(spec, tmp_path / "state", "--ui")
    url = await dashboard_url(run)
    st = await run.wait_for(lambda s: s if s.get("weights", {}).get("erroring") else None, 60, "erroring serving")
    stop = asyncio.Event()
    load = None
    try:
        async with browser_page() as (page, errors):
            await page.goto(url)
            # the page is live (its first update arrived) before any traffic, so the rollback comes later
            await page.wait_for_selector("#live[data-updated]", timeout=30_000)
            # record in the page when the rollback shows, without a reload
            await page.evaluate(
                """() => { window.__seen = null; const obs = new MutationObserver(() => {
                   const td = document.querySelector('#variants tr[data-variant="erroring"] td.phase');
                   if (td && td.textContent.trim() === 'RolledBack' && window.__seen === null) {
                     window.__seen = Date.now(); window.__sent = Number(document.getElementById('live').dataset.sent); } });
                   obs.observe(document.getElementById('live'), {childList: true, subtree: true}); }""",
            )
            assert await page.inner_text('#variants tr[data-variant="erroring"] td.phase') == "Serving"
            load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=20))
            await run.wait_for(
                lambda s: s if s["variants"]["erroring"]["phase"] == "RolledBack" else None, 60, "the rollback"
            )
            at = next(e["at"] for e in run.journal() if e.get("type") == "rolled_back")
            seen = await eventually_async(
                lambda: page.evaluate("() => window.__seen"), timeout=10, interval=0.1, what="the page showing it"
            )
            lag = seen / 1000 - at
            sent = await page.evaluate("() => window.__sent")
            print(
                f"rollback journaled at {at:.3f}; sent by the server {sent - at:.2f} s later, shown {lag:.2f} s later"
            )
            assert lag < 2.0, f"the page showed the rollback {lag:.2f} s after it was journaled"
            why = await page.inner_text('#why li[data-variant="erroring"]')
            assert why.startswith("erroring (RolledBack): Rolled back:"), why
            assert "error_rate" in why and "tolerance" in why, why
            assert await page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # no reload
            assert errors == [], errors
    finally:
        stop.set()
        if load is not None:
            await load


async def test_approve_button_promotes_a_waiting_winner(tmp_path, runs):
    b = bakeoff_doc(promotion={"mode": "manual"})
    spec = write_docs(tmp_path / "bake.yaml", [b, variant_doc("better", "better")])
    state = tmp_path / "state"
    run = runs(spec, state, "--ui")
    url = await dashboard_url(run)
    st = await run.wait_for(lambda s: s if s.get("router", {}).get("url") else None, 30, "the router")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=30))
    try:
        async with browser_page() as (page, errors):
            await page.goto(url)
            await run.wait_for(lambda s: s if s["phase"] == "AwaitingApproval" else None, 90, "a winner waiting")
            await page.wait_for_selector("#approve:not([hidden])", timeout=10_000)
            assert (await page.inner_text("#approve")).strip() == "Approve better"
            await page.click("#approve")
            await run.wait_for(lambda s: s if s["phase"] == "Promoted" else None, 30, "the promotion")
            await page.wait_for_function(
                """() => (document.querySelector('#variants tr[data-variant="better"] td.phase')||{}).textContent === 'Promoted'""",
                timeout=10_000,
            )
            assert "approved better" in await page.inner_text("#notice")
            assert errors == [], errors
    finally:
        stop.set()
        await load
    approved = [e for e in run.journal() if e.get("type") == "approved"]
    assert approved and approved[0]["variant"] == "better" and "dashboard" in approved[0]["reason"], approved
    # the static report the run wrote at its decision: the same components, saying why
    report = await eventually_async(
        lambda: (state / "report.html").exists() and (state / "report.html").read_text(), timeout=30, what="report"
    )
    why = re.search(r'<li data-variant="better">(.*?)</li>', report, re.S)
    assert why, report[:3000]
    text = re.sub(r"<[^>]+>", "", why.group(1))
    assert re.search(r"better \(Promoted\): Won: conversion interval \[\+[\d.]+ pp, \+[\d.]+ pp\]", text), text
    assert re.search(r"after \d+ s and \d+ requests", text), text
    assert '<details id="evidence-rest">' in report  # the rows that did not decide, folded
    assert '<figure data-metric="conversion">' in report  # a chart for the deciding metric
    assert '<figure id="shares"><svg class="chart shares"' in report
    assert "commit: <code>c0ffee-bette</code>" in report  # the change's commit, to 12 characters
    assert "judge:\n  alpha: 0.05\n" in report  # the configuration as YAML
    from bakeoff.controller.report.model import colour_of

    assert f'style="background:{colour_of("better")}"' in report


async def test_a_dashboard_port_in_use_is_a_warning_and_the_run_goes_on(tmp_path, runs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(), variant_doc("better", "better")])
        run = runs(spec, tmp_path / "state", "--ui", "--ui-port", str(port))
        await run.wait_for(lambda s: s if s.get("weights", {}).get("better") else None, 60, "the run serving")
        out = run.output()
        assert f"dashboard port 127.0.0.1:{port} is in use" in out and "goes on without it" in out, out
        assert run.proc.poll() is None
        time.sleep(0)  # the listener stays ours until here


async def test_abort_button_stops_the_run_without_a_winner(tmp_path, runs):
    spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(), variant_doc("better", "better")])
    run = runs(spec, tmp_path / "state", "--ui")
    url = await dashboard_url(run)
    await run.wait_for(lambda s: s if s.get("weights", {}).get("better") else None, 60, "better serving")
    async with browser_page() as (page, errors):
        await page.goto(url)
        await page.wait_for_selector("#abort:not([hidden])", timeout=30_000)
        await page.click("#abort")  # the confirmation dialog is accepted (tests/dashboard/browser.py)
        st = await run.wait_for(lambda s: s if s.get("decision") else None, 30, "the stop")
        assert st["decision"]["action"] == "stop" and "aborted from the dashboard" in st["decision"]["reason"], st
        await page.wait_for_selector("#decision.stopped", timeout=10_000)
        assert await page.is_hidden("#abort")
        assert errors == [], errors
