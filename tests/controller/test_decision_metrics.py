"""The decisions as Prometheus metrics: `bakeoff run --metrics` (a real subprocess) scraped by a real
Prometheus, and the chart's Grafana dashboard, every query of which must find its series in that scrape.
The same run has OTEL_EXPORTER_OTLP_ENDPOINT set: its router's spans carry the bake-off's name and
each variant's commit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually_async
from tests.judge.conftest import prometheus_binary, wait_ready  # noqa: F401 - a fixture
from tests.router.test_tracing import Collector

ROOT = Path(__file__).resolve().parents[2]
QUOTES = ROOT / "examples" / "quotes" / "bakeoff.yaml"
DASHBOARD = ROOT / "charts" / "bakeoff" / "dashboards" / "bakeoff-decisions.json"
SERIES = (
    "bakeoff_phase",
    "bakeoff_variant_share",
    "bakeoff_variant_phase",
    "bakeoff_judge_estimate",
    "bakeoff_judge_lower",
    "bakeoff_judge_upper",
    "bakeoff_judge_requests",
    "bakeoff_decisions_total",
)
# Grafana's own variables, as a person viewing "All" over the last hour would have them.
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}

pytestmark = pytest.mark.slow


def dashboard_queries() -> tuple[list[str], list[str]]:
    """(every panel target's expr, every templating variable's query) of the shipped dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    variables = [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs, variables


def concrete(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$[a-z_]+", ".*", expr)  # the dashboard's own variables at "All"


async def test_bakeoff_run_metrics_scraped_by_prometheus_and_every_dashboard_query_finds_its_series(
    tmp_path,
    prometheus_binary,  # noqa: F811
):
    metrics_port, prom_port = free_port(), free_port()
    state = tmp_path / "state"
    out = open(tmp_path / "run.out", "wb")
    collector = await Collector().start()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_TRACES_SAMPLER_ARG": "0.05",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "bakeoff", "run", str(QUOTES), "--headless", "--state-dir", str(state)]
        + ["--metrics", f"127.0.0.1:{metrics_port}"],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: bakeoff-run\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        await wait_ready(f"http://127.0.0.1:{prom_port}", prom)
        async with aiohttp.ClientSession() as s:

            async def query(expr: str) -> list[dict]:
                if run.poll() is not None:
                    raise AssertionError(f"bakeoff run exited ({run.returncode}): {_tail(tmp_path)}")
                async with s.get(f"{api}/query", params={"query": expr}) as r:
                    body = await r.json()
                    assert body["status"] == "success", (expr, body)
                    return body["data"]["result"]

            # A decision was taken and scraped: a promotion or a rollback (which one is the judge's business).
            decided = await eventually_async(
                lambda: query('bakeoff_decisions_total{bakeoff="quotes", action=~"promoted|rolled_back"}'),
                until=lambda got: any(float(x["value"][1]) >= 1 for x in got),  # a new series reads 0 once
                what="a promotion or a rollback counted in Prometheus",
                timeout=240,
                interval=1,
            )
            assert decided and any(float(x["value"][1]) >= 1 for x in decided)
            # Both candidates were admitted in the run's first pass, before more than a scrape or two: the
            # dashboard's increase() still counts that decision (a series first scraped at 1 would read 0).
            admitted = await query('increase(bakeoff_decisions_total{bakeoff="quotes", action="admitted"}[1h])')
            assert {x["metric"]["variant"]: round(float(x["value"][1])) for x in admitted} == {
                "indexed": 1,
                "pretty": 1,
            }, admitted
            # Each series, as scraped: labels and plausible values.
            shares = await query('bakeoff_variant_share{bakeoff="quotes"}')
            assert {x["metric"]["variant"] for x in shares} >= {"mainline"}
            assert abs(sum(float(x["value"][1]) for x in shares) - 1) < 1e-6
            phases = await query('bakeoff_variant_phase{bakeoff="quotes"}')
            assert {x["metric"]["variant"] for x in phases} == {"mainline", "indexed", "pretty"}
            assert {x["metric"]["phase"] for x in phases if x["metric"]["variant"] == "mainline"} == {"mainline"}
            bounds = {}
            for name in ("estimate", "lower", "upper"):
                for x in await query(f'bakeoff_judge_{name}{{bakeoff="quotes", metric="latency_p50"}}'):
                    m = x["metric"]
                    bounds.setdefault((m["variant"], m["route"]), {})[name] = float(x["value"][1])
            # per route too (the quotes bake-off judges its routes "list" and "item" as well as the whole)
            assert {r for _, r in bounds} >= {"all", "list", "item"}, bounds
            for key, b in bounds.items():
                if len(b) == 3:
                    assert b["lower"] <= b["estimate"] <= b["upper"], (key, b)
            assert await query('bakeoff_phase{bakeoff="quotes"} == 1')
            assert await query('bakeoff_judge_requests{bakeoff="quotes"} > 0')
            # The dashboard: every query names only these series, and each returns data from this scrape.
            exprs, variables = dashboard_queries()
            named = set(re.findall(r"\bbakeoff_[a-z_]+", " ".join(exprs + variables)))
            assert named and named <= set(SERIES), named - set(SERIES)
            assert named == set(SERIES)  # and it shows them all
            for expr in exprs:
                # increase() needs two samples of a series: a new decision series is shown at 0 first, so until
                # the next scrape (1 s) its increase is empty.
                await eventually_async(
                    lambda expr=expr: query(concrete(expr)),
                    what=f"the dashboard's query {expr!r} to find data",
                    timeout=30,
                    interval=1,
                )
            for v in variables:
                m = re.fullmatch(r"label_values\((.+), *([a-z_]+)\)", v)
                assert m, v
                async with s.get(f"{api}/series", params={"match[]": concrete(m.group(1))}) as r:
                    found = (await r.json())["data"]
                assert found and all(m.group(2) in x for x in found), f"variable query {v!r}: {found[:3]}"
        # The run's router traced about 5% of the requests, each span naming the bake-off and the commit.
        spans = collector.spans
        assert spans and all(sp["attributes"]["bakeoff.name"] == "quotes" for sp in spans)
        commits = {sp["attributes"]["bakeoff.variant"]: sp["attributes"].get("service.version") for sp in spans}
        assert commits.get("indexed") == "example-indexed", commits
    finally:
        await collector.stop()
        prom.terminate()
        prom.wait(timeout=10)
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(30)
            except subprocess.TimeoutExpired:
                run.kill()
        out.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "run.out").read_text(errors="replace")[-3000:]


def test_a_decision_series_is_scraped_at_zero_once_then_at_its_count():
    from prometheus_client import CollectorRegistry, generate_latest

    from bakeoff.controller.decision_metrics import DecisionMetrics

    registry = CollectorRegistry()
    metrics = DecisionMetrics(registry)

    def scraped() -> dict[tuple[str, str], float]:
        out = {}
        for line in generate_latest(registry).decode().splitlines():
            m = re.fullmatch(r'bakeoff_decisions_total\{action="(\w+)",bakeoff="shop",variant="(\w*)"\} (\S+)', line)
            if m:
                out[(m.group(1), m.group(2))] = float(m.group(3))
        return out

    assert scraped() == {}
    metrics.decided("shop", [{"type": "admitted", "variant": "fast"}, {"type": "admitted", "variant": "slow"}])
    assert scraped() == {("admitted", "fast"): 0, ("admitted", "slow"): 0}
    metrics.decided("shop", [{"type": "rolled_back", "variant": "slow"}, {"type": "stopped", "variant": None}])
    assert scraped() == {
        ("admitted", "fast"): 1,
        ("admitted", "slow"): 1,
        ("rolled_back", "slow"): 0,
        ("stopped", ""): 0,
    }
    metrics.decided("shop", [{"type": "admitted", "variant": "fast"}])
    assert scraped() == {
        ("admitted", "fast"): 2,
        ("admitted", "slow"): 1,
        ("rolled_back", "slow"): 1,
        ("stopped", ""): 1,
    }


def test_bad_metrics_address_is_refused_naming_the_option():
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "run", str(QUOTES), "--headless", "--metrics", "nonsense"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "--metrics must be HOST:PORT" in r.stderr
