"""Looks: when a look is due, fetch the routers' snapshot and let the judge step.

The judge's state is kept per Bakeoff (:class:`JudgeMemory`) between passes and saved in a ConfigMap
(status.py), so a new leader resumes from it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import structlog

from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.context import BakeoffView, JudgeMemory
from bakeoff.controller.kube.metrics import ControllerMetrics
from bakeoff.controller.kube.read import Reader
from bakeoff.controller.reconcile import FINAL
from bakeoff.controller.resources import ResourceError, Resources
from bakeoff.judge.config import RESOURCE_KINDS
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.verdict import Verdict

log = structlog.get_logger("bakeoff.controller.kube")


class Looks:
    """The judge's side of a pass, with what a leader remembers of each Bakeoff's judging (by uid)."""

    def __init__(self, reader: Reader, metrics: ControllerMetrics, snapshot_timeout: float) -> None:
        self.reader = reader
        self.metrics = metrics
        self.snapshot_timeout = snapshot_timeout
        self.memory: dict[str, JudgeMemory] = {}

    async def maybe_look(self, view: BakeoffView, now: float) -> tuple[Verdict, dict[str, Any]] | None:
        b = view.obj
        status = b.get("status") or {}
        if status.get("phase") in FINAL or not (status.get("variants") or {}) or b["metadata"].get("deletionTimestamp"):
            return None
        try:
            res = view.spec()
        except ResourceError:
            return None
        if b["metadata"]["uid"] not in self.memory and not view.judge_loaded:
            view.judge_configmap = await asyncio.to_thread(
                self.reader.read_judge_configmap, b["metadata"]["namespace"], b["metadata"]["name"]
            )
            view.judge_loaded = True
        mem = self.remember(view, res, status)
        if now - mem.last_look < res.bakeoff.look_interval:
            return None
        mem.last_look = now
        try:
            snap = await self.fetch_snapshot(b, res.bakeoff.source)
        except Exception as e:  # noqa: BLE001 - a failed look is skipped, never fatal
            mem.note = str(e)
            self.metrics.looks.labels("no_data").inc()
            return None
        if any(m.kind in RESOURCE_KINDS for m in res.bakeoff.judge.metrics):
            try:
                snap = await self.with_resources(b, res, mem, snap, now)
            except Exception as e:  # noqa: BLE001 - the look goes on without resource cost
                mem.note = str(e)
                log.warning("resource cost not sampled", bakeoff=b["metadata"]["name"], error=str(e))
            else:
                mem.note = ""
        else:
            mem.note = ""
        mem.state, verdict = step(mem.state, snap, now)
        mem.verdict = verdict
        self.metrics.looks.labels(verdict.decision.action).inc()
        return verdict, mem.state.to_json()

    def remember(self, view: BakeoffView, res: Resources, status: dict[str, Any]) -> JudgeMemory:
        b = view.obj
        key = b["metadata"]["uid"]
        k = int(status.get("candidates") or max(1, len(status.get("variants") or {})))
        # The routers outlive a round: only this round's entrants are judged, and its first look is
        # a baseline (the counters so far are earlier rounds' requests).
        entrants = tuple(sorted(status.get("variants") or {}))
        config = replace(res.bakeoff.judge, candidates=k, entrants=entrants, baseline_first_look=True)
        ckey = json.dumps(res.bakeoff.judge_raw, sort_keys=True, default=str) + f"|{k}"
        mem = self.memory.get(key)
        if mem is None or mem.config_key != ckey:
            mem = JudgeMemory(JudgeState.new(config), ckey)
            cm = view.judge_configmap or {}
            owners = {o.get("uid") for o in (cm.get("metadata") or {}).get("ownerReferences") or []}
            saved = (cm.get("data") or {}).get("state.json")
            if saved and key not in owners:
                # an earlier Bakeoff of the same name left it (not yet garbage-collected): not this round's
                log.info("judge state of an earlier round ignored", bakeoff=b["metadata"]["name"])
                saved = None
            if saved:
                try:
                    mem.state = JudgeState.from_json(json.loads(saved), config)
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("judge state not usable; judging afresh", bakeoff=b["metadata"]["name"], error=str(e))
            self.memory[key] = mem
        mem.state.config = config  # entrants grow during the round
        return mem

    async def with_resources(
        self, b: dict[str, Any], res: Resources, mem: JudgeMemory, snap: list[dict[str, Any]], now: float
    ) -> list[dict[str, Any]]:
        """The routers' snapshots and, beside them, the batches of resource cost so far: cAdvisor's
        series of each variant's pods through Prometheus (bakeoff.judge.sources.cadvisor)."""
        from bakeoff.controller.kube.sources_policy import SourceRefused, allowed_locations
        from bakeoff.judge.sources import PROMETHEUS_SCHEMES
        from bakeoff.judge.sources.cadvisor import CadvisorSource
        from bakeoff.judge.sources.resources import MEMORY_BATCH, ResourceMeter, requests_of

        meta = b["metadata"]
        ns, bname = meta["namespace"], meta["name"]
        rq = res.bakeoff.resources or {}
        source = res.bakeoff.source or ""
        location = rq.get("prometheus") or (source if source.startswith(PROMETHEUS_SCHEMES) else None)
        if location is None:
            raise RuntimeError(
                f"Bakeoff {ns}/{bname}: spec.judge.resources.prometheus is needed to judge cpu_per_request or "
                f"memory (a Prometheus that scrapes cAdvisor) when spec.judge.source is not a Prometheus"
            )
        where = f"Bakeoff {ns}/{bname}"
        try:
            (location,) = allowed_locations(location, where, namespace=ns)[:1]
        except SourceRefused as e:
            field = "spec.judge.resources.prometheus" if rq.get("prometheus") else "spec.judge.source"
            raise SourceRefused(str(e).replace("spec.judge.source", field, 1)) from None
        mainline_deployment = res.bakeoff.mainline.deployment or res.bakeoff.mainline_name
        targets = {}
        for v in requests_of(snap):
            dep = mainline_deployment if v == res.bakeoff.mainline_name else ko.child_name(bname, v)
            # a Deployment's pods are named <deployment>-<replica set hash>-<suffix>
            targets[v] = {"namespace": ns, "bakeoff": bname, "pods": _promql_regex(dep) + "-[a-z0-9]+-[a-z0-9]+"}
        src = CadvisorSource(
            location,
            targets,
            cpu_query=rq.get("cpuQuery"),
            memory_query=rq.get("memoryQuery"),
            timeout=self.snapshot_timeout,
        )
        try:
            samples = await src.sample(list(targets))
        finally:
            await src.close()
        if mem.resource_meter is None:
            # cAdvisor's counters reach Prometheus once per scrape, not at the look: a CPU batch spans
            # as many looks as a memory batch so that it covers several scrapes
            mem.resource_meter = ResourceMeter(MEMORY_BATCH, MEMORY_BATCH, source_id=f"cadvisor:{meta['uid']}")
        mem.resource_meter.observe(samples, requests_of(snap))
        return [*snap, mem.resource_meter.snapshot(now)]

    async def fetch_snapshot(self, b: dict[str, Any], source: str | None) -> list[dict[str, Any]]:
        from bakeoff.judge.sources import make_source

        if source:
            from bakeoff.controller.kube.sources_policy import allowed_locations

            meta = b["metadata"]
            locations = allowed_locations(
                source, f"Bakeoff {meta['namespace']}/{meta['name']}", namespace=meta["namespace"]
            )
        else:
            locations = await asyncio.to_thread(
                self.reader.router_urls, b["metadata"]["namespace"], b["metadata"]["name"]
            )
            if not locations:
                raise RuntimeError(
                    f"no router endpoints: no ready endpoint on a port named 'admin' of a Service "
                    f"labelled {ko.LABEL_ROUTER_FOR}={b['metadata']['name']}"
                )
        src = make_source(locations, timeout=self.snapshot_timeout)
        try:
            # Router replicas unmerged: the judge keeps one baseline per router, so a replica
            # that restarts or drops out of a look is re-based alone, not the whole sum.
            return await src.fetch_each()
        finally:
            await src.close()


def _promql_regex(name: str) -> str:
    """``name`` matched literally in a regular expression inside a PromQL string: a metacharacter
    gets a backslash, itself escaped for the string (RE2 accepts no escaped '-', which re.escape adds)."""
    return "".join("\\\\" + c if c in ".^$*+?()[]{}|\\" else c for c in name)
