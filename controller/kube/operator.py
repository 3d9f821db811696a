"""The Kubernetes controller: the loop of ``bakeoff run``, on Bakeoff and Variant resources.

Every pass (``interval``, half a second by default), for every Bakeoff:

1. read the Bakeoff, its Variants, the mainline Deployment and the
   Deployments the controller made;
2. rebuild the decision state from ``Bakeoff.status`` (``variants``, ``phase``,
   ``decision``: the status is the journal, so a restarted or newly elected
   controller continues where the last one stopped);
3. when a look is due, fetch the routers' snapshot and let the judge step
   (its state is kept in a ConfigMap);
4. run the pure :func:`controller.reconcile.reconcile`;
5. **record first**: write ``Bakeoff.status`` (phase, decision, history, the
   new routing that every router replica watches) with the resourceVersion it
   read, so a concurrent writer makes the write fail (409) instead of being
   overwritten, and the pass is done again on a fresh read;
6. then act, declaratively and idempotently: Deployments and Services per
   variant with the replicas its phase calls for, the promotion patch of the
   mainline Deployment (guarded by the winner's uid in an annotation, so it
   happens once), the hand-over of traffic to the updated mainline, cleanup
   of deleted Variants; Events for every transition; the Variants' status as a
   mirror of the Bakeoff's record.

Only the holder of the leader Lease acts (controller/kube/leader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from bakeoff.common.kube import GROUP, VERSION, api_error_message
from bakeoff.controller import gate as gates
from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.metrics import ControllerMetrics
from bakeoff.controller.reconcile import (
    ACTIVE,
    DONE_PROMOTED,
    FINAL,
    PENDING,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    SERVING,
    WINNER,
    ControllerState,
    JudgeDecision,
    Observations,
    reconcile,
)
from bakeoff.controller.resources import ResourceError, parse_documents
from bakeoff.controller.runner import compact_verdict, policy_of
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.verdict import Verdict

log = structlog.get_logger("bakeoff.controller.kube")

HISTORY_LIMIT = 200
EVENT_REASONS = {
    "admitted": ("Admitted", "Normal"),
    "ramped": ("Ramped", "Normal"),
    "rolled_back": ("RolledBack", "Warning"),
    "failed": ("Failed", "Warning"),
    "gated": ("Gated", "Warning"),
    "winner": ("Winner", "Normal"),
    "lost": ("Lost", "Normal"),
    "promoted": ("Promoted", "Normal"),
    "stopped": ("Stopped", "Normal"),
    "mainline_failed": ("MainlineFailed", "Warning"),
    "mainline_patched": ("MainlinePatched", "Normal"),
    "handed_over": ("MainlineServing", "Normal"),
    "rejected": ("Rejected", "Warning"),
}


class Conflict(Exception):
    """A write lost a race (409); the pass is redone on a fresh read."""


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: Any) -> float | None:
    if isinstance(s, (int, float)):
        return float(s)
    if not isinstance(s, str) or not s:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    return None


def cluster_message(msg: str, namespace: str) -> str:
    """resources.py names 'origin: document N (Kind 'name')'; in a cluster: 'Kind namespace/name'."""
    return re.sub(r"^[^:]*: document \d+ \((\w+) '([^']*)'\): ", lambda m: f"{m[1]} {namespace}/{m[2]}: ", msg)


def set_condition(
    conds: list[dict[str, Any]],
    ctype: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """metav1.Condition semantics: lastTransitionTime moves only when status changes."""
    st = "Unknown" if status is None else ("True" if status else "False")
    out = [c for c in conds if c.get("type") != ctype]
    old = next((c for c in conds if c.get("type") == ctype), None)
    c = {
        "type": ctype,
        "status": st,
        "reason": reason,
        "message": message[:32000],
        "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == st else rfc3339(now),
    }
    if generation is not None:
        c["observedGeneration"] = generation
    out.append(c)
    return sorted(out, key=lambda c: c["type"])


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and x == x and abs(x) != float("inf") else None


@dataclass
class JudgeMemory:
    """What a leader keeps between passes for one Bakeoff (rebuilt after a restart)."""

    state: JudgeState
    config_key: str
    last_look: float = 0.0
    verdict: Verdict | None = None
    loaded: bool = False
    note: str = ""  # why the last look decided nothing (no routers, source error)


@dataclass
class BakeoffView:
    """One Bakeoff as read in a pass."""

    obj: dict[str, Any]
    variants: list[dict[str, Any]]
    mainline: dict[str, Any] | None
    children: dict[str, dict[str, Any]]  # Deployment name -> object
    services: set[str]
    judge_configmap: dict[str, Any] | None
    gate_reports: dict[str, str | None] = field(default_factory=dict)


class KubeController:
    def __init__(
        self,
        api: Any,
        *,
        namespace: str | None = None,
        identity: str | None = None,
        lease_name: str = "bakeoff-controller",
        lease_namespace: str = "default",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        interval: float = 0.5,
        metrics: ControllerMetrics | None = None,
        leader_election: bool = True,
        clock: Callable[[], float] = time.time,
        snapshot_timeout: float = 5.0,
    ) -> None:
        from kubernetes import client

        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.namespace = namespace
        self.identity = identity or f"bakeoff-controller-{uuid.uuid4().hex[:8]}"
        self.interval = interval
        self.metrics = metrics or ControllerMetrics()
        self.clock = clock
        self.snapshot_timeout = snapshot_timeout
        self.memory: dict[str, JudgeMemory] = {}
        self.elector = None
        if leader_election:
            from bakeoff.controller.kube.leader import LeaderElector

            self.elector = LeaderElector(
                api,
                lease_namespace,
                lease_name,
                self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
            )
        self.passes = 0
        self.last_pass_ok: float | None = None

    # -- the outer loop -----------------------------------------------------
    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    async def run(self, stop: asyncio.Event) -> int:
        log.info("controller started", identity=self.identity, namespace=self.namespace or "(all)")
        try:
            while not stop.is_set():
                started = time.monotonic()
                if self.elector is not None:
                    was = self.elector.leading
                    leading = await asyncio.to_thread(self.elector.try_acquire_or_renew)
                    self.metrics.leader.set(1 if leading else 0)
                    if leading and not was:
                        self.memory.clear()  # another replica may have judged meanwhile: reload its state
                else:
                    leading = True
                if leading:
                    await self.pass_once()
                self.last_pass_ok = self.clock()
                elapsed = time.monotonic() - started
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.05, self.interval - elapsed))
        finally:
            if self.elector is not None:
                await asyncio.to_thread(self.elector.release)
                self.metrics.leader.set(0)
        return 0

    async def pass_once(self) -> None:
        try:
            views = await asyncio.to_thread(self.read_world)
        except Exception as e:  # noqa: BLE001 - the API server may be away; try again next pass
            self.metrics.api_errors.labels("list").inc()
            log.warning("cannot read resources", error=api_error_message(e))
            return
        phases: dict[str, int] = {}
        for view in views:
            b = view.obj
            started = time.monotonic()
            now = self.clock()
            try:
                snap_result = await self._maybe_look(view, now)
                for _attempt in range(3):
                    try:
                        await asyncio.to_thread(self.reconcile_bakeoff, view, now, snap_result)
                        self.metrics.reconciles.labels("ok").inc()
                        break
                    except Conflict:  # counted where the 409 came back
                        snap_result = None  # the look already updated the judge; don't step twice
                        fresh = await asyncio.to_thread(
                            self.read_bakeoff, b["metadata"]["namespace"], b["metadata"]["name"]
                        )
                        if fresh is None:
                            break
                        view = fresh
                else:
                    self.metrics.reconciles.labels("conflict").inc()
            except Exception as e:  # noqa: BLE001 - one broken Bakeoff must not stop the others
                self.metrics.reconciles.labels("error").inc()
                log.exception(
                    "reconcile failed",
                    bakeoff=f"{b['metadata']['namespace']}/{b['metadata']['name']}",
                    error=api_error_message(e),
                )
            finally:
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)
            ph = ((view.obj.get("status") or {}).get("phase")) or "New"
            phases[ph] = phases.get(ph, 0) + 1
        self.metrics.bakeoffs.clear()
        for ph, n in phases.items():
            self.metrics.bakeoffs.labels(ph).set(n)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.cleanup_orphans, views)
        self.passes += 1

    # -- reading --------------------------------------------------------------
    def _dict(self, obj: Any) -> Any:
        return self.api.sanitize_for_serialization(obj)

    def _list_custom(self, plural: str) -> list[dict[str, Any]]:
        if self.namespace:
            r = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
        else:
            r = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        return r.get("items", [])

    def read_world(self) -> list[BakeoffView]:
        bakeoffs = self._list_custom("bakeoffs")
        variants = self._list_custom("variants")
        self._all_variants = variants
        self._bakeoff_keys = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bakeoffs}
        return [self._view(b, variants) for b in bakeoffs]

    def read_bakeoff(self, ns: str, name: str) -> BakeoffView | None:
        from kubernetes.client import ApiException

        try:
            b = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        variants = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "variants").get("items", [])
        return self._view(b, variants)

    def _view(self, b: dict[str, Any], variants: list[dict[str, Any]]) -> BakeoffView:
        from kubernetes.client import ApiException

        ns, name = b["metadata"]["namespace"], b["metadata"]["name"]
        mine = [
            v for v in variants if v["metadata"]["namespace"] == ns and (v.get("spec") or {}).get("bakeoff") == name
        ]
        mainline = None
        dep_name = ((b.get("spec") or {}).get("mainline") or {}).get("deployment")
        if isinstance(dep_name, str) and dep_name:
            try:
                mainline = self._dict(self.apps.read_namespaced_deployment(dep_name, ns))
            except ApiException as e:
                if e.status != 404:
                    raise
        sel = f"{ko.LABEL_BAKEOFF}={name},app.kubernetes.io/managed-by=bakeoff"
        deps = self.apps.list_namespaced_deployment(ns, label_selector=sel).items
        svcs = self.core.list_namespaced_service(ns, label_selector=sel).items
        cm = None
        try:
            cm = self._dict(self.core.read_namespaced_config_map(ko.child_name(name, "judge"), ns))
        except ApiException as e:
            if e.status != 404:
                raise
        return BakeoffView(
            b, mine, mainline, {d.metadata.name: self._dict(d) for d in deps}, {s.metadata.name for s in svcs}, cm
        )

    # -- judging ----------------------------------------------------------------
    async def _maybe_look(self, view: BakeoffView, now: float) -> tuple[Verdict, dict[str, Any]] | None:
        b = view.obj
        status = b.get("status") or {}
        if status.get("phase") in FINAL or not (status.get("variants") or {}):
            return None
        try:
            res = parse_documents([copy.deepcopy(b)], "cluster", platform="kubernetes", need_variants=False)
        except ResourceError:
            return None
        mem = self._memory(view, res, status)
        if now - mem.last_look < res.bakeoff.look_interval:
            return None
        mem.last_look = now
        try:
            snap = await self.fetch_snapshot(b, res.bakeoff.source)
        except Exception as e:  # noqa: BLE001 - a failed look is skipped, never fatal
            mem.note = str(e)
            self.metrics.looks.labels("no_data").inc()
            return None
        mem.note = ""
        mem.state, verdict = step(mem.state, snap, now)
        mem.verdict = verdict
        self.metrics.looks.labels(verdict.decision.action).inc()
        return verdict, mem.state.to_json()

    def _memory(self, view: BakeoffView, res: Any, status: dict[str, Any]) -> JudgeMemory:
        b = view.obj
        key = b["metadata"]["uid"]
        k = int(status.get("candidates") or max(1, len(status.get("variants") or {})))
        config = res.bakeoff.judge
        from dataclasses import replace

        config = replace(config, candidates=k)
        ckey = json.dumps(res.bakeoff.judge_raw, sort_keys=True, default=str) + f"|{k}"
        mem = self.memory.get(key)
        if mem is None or mem.config_key != ckey:
            mem = JudgeMemory(JudgeState.new(config), ckey)
            saved = ((view.judge_configmap or {}).get("data") or {}).get("state.json")
            if saved:
                try:
                    mem.state = JudgeState.from_json(json.loads(saved), config)
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("judge state not usable; judging afresh", bakeoff=b["metadata"]["name"], error=str(e))
            self.memory[key] = mem
        return mem

    async def fetch_snapshot(self, b: dict[str, Any], source: str | None) -> dict[str, Any]:
        from bakeoff.judge.sources import make_source

        if source:
            from bakeoff.controller.kube.sources_policy import allowed_locations

            meta = b["metadata"]
            locations = allowed_locations(source, f"Bakeoff {meta['namespace']}/{meta['name']}")
        else:
            locations = await asyncio.to_thread(self.router_urls, b["metadata"]["namespace"], b["metadata"]["name"])
            if not locations:
                raise RuntimeError(
                    f"no router endpoints: no ready endpoint on a port named 'admin' of a Service "
                    f"labelled {ko.LABEL_ROUTER_FOR}={b['metadata']['name']}"
                )
        src = make_source(locations, timeout=self.snapshot_timeout)
        try:
            return await src.fetch()
        finally:
            await src.close()

    def router_urls(self, ns: str, bakeoff: str) -> list[str]:
        """GET /-/snapshot of every ready router endpoint of the bake-off (docs/kubernetes.md)."""
        urls: list[str] = []
        for svc in self.core.list_namespaced_service(ns, label_selector=f"{ko.LABEL_ROUTER_FOR}={bakeoff}").items:
            slices = self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={svc.metadata.name}"
            ).items
            for sl in slices:
                port = next((p.port for p in sl.ports or [] if p.name == "admin"), None)
                if port is None:
                    continue
                for ep in sl.endpoints or []:
                    ready = ep.conditions.ready if ep.conditions is not None else None
                    if ready is False:
                        continue
                    for addr in ep.addresses or []:
                        host = f"[{addr}]" if ":" in addr else addr
                        urls.append(f"http://{host}:{port}/-/snapshot")
        return sorted(set(urls))

    # -- one Bakeoff ------------------------------------------------------------
    def reconcile_bakeoff(self, view: BakeoffView, now: float, look: tuple[Verdict, dict[str, Any]] | None) -> None:
        b = view.obj
        ns, bname = b["metadata"]["namespace"], b["metadata"]["name"]
        gen = b["metadata"].get("generation")
        status = copy.deepcopy(b.get("status") or {})
        conds = list(status.get("conditions") or [])
        events: list[dict[str, Any]] = []
        if look is not None:
            self._save_judge_state(view, look[1])

        # The Bakeoff's own spec.
        try:
            res_b = parse_documents([copy.deepcopy(b)], "cluster", platform="kubernetes", need_variants=False)
        except ResourceError as e:
            msg = cluster_message(str(e), ns)
            conds = set_condition(conds, "Ready", False, "InvalidSpec", msg, gen, now)
            self._write_bakeoff_status(b, {**status, "conditions": conds, "observedGeneration": gen})
            self._finish_deletions(view, routing_names=None)
            return
        bres = res_b.bakeoff
        mname = bres.mainline_name

        # The Variants: valid ones enter (up to k), others get a condition saying why not.
        record: dict[str, dict[str, Any]] = copy.deepcopy(status.get("variants") or {})
        phase = status.get("phase") or RUNNING
        k = status.get("candidates")
        variant_conds: dict[str, list[dict[str, Any]]] = {}
        valid: dict[str, dict[str, Any]] = {}
        for v in sorted(
            view.variants, key=lambda v: (v["metadata"].get("creationTimestamp") or "", v["metadata"]["name"])
        ):
            vname = v["metadata"]["name"]
            vconds = list((v.get("status") or {}).get("conditions") or [])
            try:
                parse_documents([copy.deepcopy(b), copy.deepcopy(v)], "cluster", platform="kubernetes")
            except ResourceError as e:
                vconds = set_condition(
                    vconds,
                    "Accepted",
                    False,
                    "InvalidSpec",
                    cluster_message(str(e), ns),
                    v["metadata"].get("generation"),
                    now,
                )
                variant_conds[vname] = vconds
                continue
            if vname not in record:
                if v["metadata"].get("deletionTimestamp"):
                    continue
                if phase in FINAL or phase != RUNNING:
                    why = f"bake-off {bname} is over ({phase}); create a new Bakeoff for another round"
                    vconds = set_condition(
                        vconds, "Accepted", False, "BakeoffFinished", why, v["metadata"].get("generation"), now
                    )
                    variant_conds[vname] = vconds
                    continue
                limit = k or bres.judge.candidates
                if limit and len(record) >= limit:
                    why = (
                        f"bake-off {bname} judges {limit} candidate(s) (spec.judge.candidates, fixed when "
                        f"judging started); raise it in a new Bakeoff to enter more"
                    )
                    vconds = set_condition(
                        vconds, "Accepted", False, "TooManyCandidates", why, v["metadata"].get("generation"), now
                    )
                    variant_conds[vname] = vconds
                    continue
                record[vname] = {"phase": PENDING, "step": -1, "uid": v["metadata"]["uid"]}
                events.append({"type": "entered", "variant": vname, "reason": f"entered bake-off {bname}"})
            valid[vname] = v
            variant_conds[vname] = set_condition(
                vconds, "Accepted", True, "Entered", f"candidate in {bname}", v["metadata"].get("generation"), now
            )
        if record and not k:
            k = max(len(record), bres.judge.candidates or 0)

        # The mainline Deployment.
        mainline = view.mainline
        port = None
        mainline_error = None
        if mainline is None:
            mainline_error = (
                f"spec.mainline.deployment: Deployment {bres.mainline.deployment!r} not found in namespace {ns}"
            )
        else:
            try:
                port = ko.mainline_port(mainline, bres.mainline.port, bres.mainline.container)
                ko.selector_of(mainline)
            except ko.ObjectError as e:
                mainline_error = str(e)

        # Decision state from the record.
        state = ControllerState.new(bname, mname, list(record))
        state.phase = phase
        state.mainline = status.get("mainline") or mname
        state.decision = status.get("decision")
        for n, r in record.items():
            vs = state.variants[n]
            vs.phase, vs.step = r.get("phase", PENDING), int(r.get("step", -1))
            vs.step_since, vs.reason, vs.failed = r.get("stepSince"), r.get("reason", ""), bool(r.get("failed"))
            vs.share = float((status.get("shares") or {}).get(n, 0.0))
        state.weights = {e["name"]: float(e["weight"]) for e in (status.get("routing") or {}).get("variants") or []}
        state.started = {mname, *record}  # starting is declarative here; reconcile needn't ask
        state.retired = set()

        # Observations.
        ready: set[str] = set()
        failed: dict[str, str] = {}
        if mainline is not None and mainline_error is None:
            ok, why = ko.deployment_health(mainline)
            if ok:
                ready.add(mname)
        for n in record:
            dep = view.children.get(ko.child_name(bname, n))
            v = valid.get(n)
            if v is None or v["metadata"].get("deletionTimestamp"):
                if record[n].get("phase") in ACTIVE:
                    failed[n] = "the Variant was deleted"
                continue
            if dep is not None:
                ok, why = ko.deployment_health(dep)
                if why and (dep["spec"].get("replicas") or 0) > 0:
                    failed[n] = why
                elif ok and (dep["spec"].get("replicas") or 0) > 0:
                    ready.add(n)
        gate_results = {n: self._gate(ns, valid[n]) for n in record if n in valid and record[n].get("phase") == PENDING}
        mem = self.memory.get(b["metadata"]["uid"])
        verdict = mem.verdict if mem is not None else None
        approved = frozenset(
            n
            for n, v in valid.items()
            if ((v["metadata"].get("annotations") or {}).get(ko.ANN_APPROVED) or "").lower() == "true"
        )
        if mainline_error is None:
            plan = reconcile(
                policy_of(res_b),
                state,
                Observations(
                    now=now,
                    ready=frozenset(ready),
                    failed=failed,
                    gates=gate_results,
                    verdict=JudgeDecision.from_verdict(verdict) if verdict is not None else None,
                    approved=approved,
                ),
            )
            new, events = plan.state, events + plan.events
        else:
            new = state
        for e in events:
            e.setdefault("at", now)

        # The record, with the routing the routers apply.
        for n, vs in new.variants.items():
            record[n].update({"phase": vs.phase, "step": vs.step, "reason": vs.reason, "failed": vs.failed})
            record[n]["stepSince"] = vs.step_since
        handed_over = any(c.get("type") == "MainlineUpdated" and c.get("status") == "True" for c in conds)
        routing = self._routing(bname, mname, new, port, handed_over, status.get("routing"))
        history = list(status.get("history") or []) + [self._history_entry(e) for e in events if e["type"] != "entered"]
        new_status: dict[str, Any] = {
            **status,
            "observedGeneration": gen,
            "phase": new.phase,
            "mainline": new.mainline,
            "candidates": k,
            "variants": record,
            "shares": {n: round(w, 6) for n, w in new.weights.items()},
            "decision": self._decision(new.decision),
            "history": history[-HISTORY_LIMIT:],
        }
        if new.decision and new.decision.get("winner"):
            new_status["winner"] = new.decision["winner"]
        if routing is not None:
            new_status["routing"] = routing
        if verdict is not None:
            new_status["verdicts"] = compact_verdict(verdict)
        if k is None:
            new_status.pop("candidates", None)
        conds = self._bakeoff_conditions(conds, gen, now, mainline_error, mainline, ready, mname, new, mem)
        new_status["conditions"] = conds
        new_status = {k2: v2 for k2, v2 in new_status.items() if v2 is not None}
        if new_status != (b.get("status") or {}):
            self._write_bakeoff_status(b, new_status)  # raises Conflict: nothing below happens
            b["status"] = new_status
        for e in events:
            self.metrics.transitions.labels(e["type"]).inc()
            target = valid.get(e.get("variant")) if e.get("variant") else None
            self._event(target or b, e)

        # Act.
        if mainline_error is None and mainline is not None:
            self._converge(view, bres, res_b, new, record, valid, mainline, port, now, handed_over)
        for n, v in valid.items():
            self._write_variant_status(v, record.get(n), variant_conds.get(n, []), new, verdict, view, now)
        for v in view.variants:
            n = v["metadata"]["name"]
            if n not in valid and n in variant_conds:
                self._write_variant_status(v, None, variant_conds[n], new, None, view, now)
        self._finish_deletions(view, routing_names={e["name"] for e in (routing or {}).get("variants", [])})

    # -- pieces of a pass --------------------------------------------------------
    def _routing(
        self,
        bname: str,
        mname: str,
        st: ControllerState,
        port: int | None,
        handed_over: bool,
        current: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        if port is None:
            return current
        if st.phase == DONE_PROMOTED and handed_over and st.decision:
            entries = [{"name": st.mainline, "service": ko.child_name(bname, mname), "port": port, "weight": 1.0}]
        elif not st.weights:
            return current
        else:
            entries = [
                {"name": n, "service": ko.child_name(bname, n), "port": port, "weight": round(w, 6)}
                for n, w in sorted(st.weights.items())
            ]
        cur = current or {}
        if cur.get("variants") == entries:
            return cur
        return {"version": int(cur.get("version") or 0) + 1, "variants": entries}

    def _decision(self, decision: dict[str, Any] | None) -> dict[str, Any] | None:
        if not decision:
            return None
        out = {k: v for k, v in decision.items() if v is not None}
        if isinstance(out.get("at"), (int, float)):
            out["at"] = rfc3339(out["at"])
        return out

    def _history_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in e.items() if v is not None and isinstance(v, (str, int, float, bool))}
        out["at"] = rfc3339(e["at"])
        return out

    def _bakeoff_conditions(self, conds, gen, now, mainline_error, mainline, ready, mname, st, mem):
        if mainline_error:
            reason = "MainlineNotFound" if mainline is None else "InvalidMainline"
            conds = set_condition(conds, "Ready", False, reason, mainline_error, gen, now)
        elif mname not in ready and st.phase not in FINAL:
            conds = set_condition(
                conds,
                "Ready",
                False,
                "MainlineUnavailable",
                f"Deployment {mainline['metadata']['name']} has no available replica",
                gen,
                now,
            )
        else:
            conds = set_condition(conds, "Ready", True, "MainlineAvailable", "the mainline serves", gen, now)
        if st.phase in FINAL:
            conds = set_condition(conds, "Judging", False, "Decided", (st.decision or {}).get("reason", ""), gen, now)
        elif mem is not None and mem.note:
            conds = set_condition(conds, "Judging", False, "NoData", mem.note, gen, now)
        elif mem is not None and mem.verdict is not None:
            conds = set_condition(conds, "Judging", True, "Looking", f"look {mem.verdict.look}", gen, now)
        if st.phase == DONE_PROMOTED:
            w = (st.decision or {}).get("winner", "")
            conds = set_condition(
                conds, "Promoted", True, "Promoted", f"{w} won: {(st.decision or {}).get('reason', '')}", gen, now
            )
        rolled = sorted(n for n, v in st.variants.items() if v.phase == ROLLED_BACK)
        if rolled:
            conds = set_condition(conds, "RolledBack", True, "RolledBack", ", ".join(rolled), gen, now)
        return conds

    def _gate(self, ns: str, v: dict[str, Any]) -> str | None:
        g = (v.get("spec") or {}).get("gate")
        if not g:
            return None
        from kubernetes.client import ApiException

        from bakeoff.controller.resources import Gate

        ref = g.get("sarif", "")
        m = re.match(r"^configmap:([a-z0-9][-a-z0-9.]*)(?:/([-._a-zA-Z0-9]+))?$", ref)
        if not m:
            return (
                f"gate: in a cluster spec.gate.sarif must be configmap:NAME[/KEY] (a ConfigMap in {ns} "
                f"holding the SARIF report), got {ref!r}"
            )
        try:
            cm = self.core.read_namespaced_config_map(m[1], ns)
        except ApiException as e:
            return f"gate: cannot read ConfigMap {m[1]}: {api_error_message(e)}"
        key = m[2] or "results.sarif"
        text = (cm.data or {}).get(key)
        if text is None:
            return f"gate: ConfigMap {m[1]} has no key {key!r}"
        return gates.evaluate_text(Gate(ref, g.get("maxSeverity", "warning")), text)

    def _converge(self, view, bres, res_b, st: ControllerState, record, valid, mainline, port, now, handed_over):
        b = view.obj
        ns, bname, mname = b["metadata"]["namespace"], b["metadata"]["name"], bres.mainline_name
        # The mainline's Service.
        self._ensure_service(
            ko.child_name(bname, mname), ns, ko.selector_of(mainline), port, ko.labels_for(bname, mname), b, view
        )
        winner = (st.decision or {}).get("winner") if st.phase == DONE_PROMOTED else None
        for n, v in valid.items():
            if v["metadata"].get("deletionTimestamp"):
                continue
            self._ensure_finalizer(v)
            phase = record[n]["phase"]
            wanted = int((v.get("spec") or {}).get("replicas") or 1)
            # Pending here means its gate passed this pass (a blocked one is Gated by now).
            replicas = wanted if phase in (PENDING, SERVING, WINNER) or (phase == PROMOTED and not handed_over) else 0
            dname = ko.child_name(bname, n)
            dep = view.children.get(dname)
            if dep is None:
                if replicas == 0:
                    continue
                body = ko.candidate_deployment(
                    mainline,
                    b,
                    v,
                    mainline_name_container=bres.mainline.container,
                    replicas=replicas,
                    progress_deadline=self._deadline(v),
                )
                self._create(self.apps.create_namespaced_deployment, ns, body)
            elif (dep["spec"].get("replicas") or 0) != replicas:
                self._call("patch", self.apps.patch_namespaced_deployment, dname, ns, {"spec": {"replicas": replicas}})
            self._ensure_service(
                dname, ns, {ko.LABEL_BAKEOFF: bname, ko.LABEL_VARIANT: n}, port, ko.labels_for(bname, n), v, view
            )
        if winner and winner in valid:
            self._promote(view, bres, valid[winner], mainline, st, now, handed_over)

    def _deadline(self, v: dict[str, Any]) -> int | None:
        raw = (v.get("spec") or {}).get("startTimeout")
        if raw is None:
            return None
        from bakeoff.judge.config import parse_duration

        return max(1, int(round(parse_duration(raw, ""))))

    def _promote(self, view, bres, winner: dict[str, Any], mainline, st, now, handed_over) -> None:
        from kubernetes.client import ApiException

        b = view.obj
        ns, bname = b["metadata"]["namespace"], b["metadata"]["name"]
        done = ko.promotion_of(mainline)
        recorded = ((b.get("status") or {}).get("decision") or {}).get("mainlinePatched")
        if not recorded and (done is None or done.get("uid") != winner["metadata"]["uid"]):
            body = ko.promotion_patch(
                mainline, winner["spec"]["image"], bres.mainline.container, bname, winner, rfc3339(now)
            )
            try:
                self.apps.replace_namespaced_deployment(mainline["metadata"]["name"], ns, body)
            except ApiException as e:
                if e.status == 409:
                    raise Conflict() from None
                raise
            self.metrics.promotions.inc()
            # Recorded, so that a `bakeoff revert` (which removes the annotations) is not undone by a
            # re-patch; a crash before this write is covered by the annotation's uid.
            status = copy.deepcopy(b.get("status") or {})
            status.setdefault("decision", {})["mainlinePatched"] = rfc3339(now)
            status["previousTemplate"] = mainline["spec"]["template"]
            with contextlib.suppress(Conflict):
                self._write_bakeoff_status(b, status)
                b["status"] = status
            log.info(
                "mainline patched",
                bakeoff=bname,
                deployment=mainline["metadata"]["name"],
                image=winner["spec"]["image"],
            )
            self._event(
                b,
                {
                    "type": "mainline_patched",
                    "variant": None,
                    "reason": f"Deployment {mainline['metadata']['name']} now runs {winner['spec']['image']} "
                    f"(the template before is in annotation {ko.ANN_PREVIOUS_TEMPLATE}; bakeoff revert {bname})",
                },
            )
            return
        elif not recorded:
            status = copy.deepcopy(b.get("status") or {})
            status.setdefault("decision", {})["mainlinePatched"] = done.get("at") or rfc3339(now)
            with contextlib.suppress(Conflict):
                self._write_bakeoff_status(b, status)
                b["status"] = status
        if not handed_over and ko.rolled_out(mainline) and ko.promotion_of(mainline) is not None:
            conds = set_condition(
                list((b.get("status") or {}).get("conditions") or []),
                "MainlineUpdated",
                True,
                "RolledOut",
                f"Deployment {mainline['metadata']['name']} runs the winner; traffic goes to it",
                b["metadata"].get("generation"),
                now,
            )
            status = dict(b.get("status") or {}, conditions=conds)
            port = (status.get("routing") or {}).get("variants", [{}])[0].get("port")
            if port:
                status["routing"] = self._routing(bname, bres.mainline_name, st, port, True, status.get("routing"))
            self._write_bakeoff_status(b, status)
            b["status"] = status
            self._event(
                b,
                {
                    "type": "handed_over",
                    "variant": None,
                    "reason": f"traffic moved to Deployment {mainline['metadata']['name']} (now the winner's build)",
                },
            )

    def _ensure_service(self, name, ns, selector, port, labels, owner, view) -> None:
        if name in view.services:
            return
        self._create(self.core.create_namespaced_service, ns, ko.service(name, ns, selector, port, labels, owner))
        view.services.add(name)

    def _ensure_finalizer(self, v: dict[str, Any]) -> None:
        fins = v["metadata"].get("finalizers") or []
        if ko.FINALIZER in fins:
            return
        body = {"metadata": {"finalizers": fins + [ko.FINALIZER], "resourceVersion": v["metadata"]["resourceVersion"]}}
        try:
            out = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, v["metadata"]["namespace"], "variants", v["metadata"]["name"], body
            )
            v["metadata"] = out["metadata"]
        except Exception as e:  # noqa: BLE001 - next pass tries again
            if getattr(e, "status", None) == 409:
                self.metrics.conflicts.inc()
            else:
                log.warning("finalizer not added", variant=v["metadata"]["name"], error=api_error_message(e))

    def _finish_deletions(self, view: BakeoffView, routing_names: set[str] | None) -> None:
        """Deleted Variants: once routing has dropped them, delete their children, then the finalizer."""
        b = view.obj
        bname = b["metadata"]["name"]
        for v in view.variants:
            if not v["metadata"].get("deletionTimestamp") or ko.FINALIZER not in (
                v["metadata"].get("finalizers") or []
            ):
                continue
            n = v["metadata"]["name"]
            if routing_names is not None and n in routing_names:
                continue  # still routed: the status write that drops it comes first
            self._delete_children(v["metadata"]["namespace"], ko.child_name(bname, n))
            self._remove_finalizer(v)

    def _delete_children(self, ns: str, name: str) -> None:
        from kubernetes.client import ApiException

        for fn in (self.apps.delete_namespaced_deployment, self.core.delete_namespaced_service):
            try:
                fn(name, ns)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _remove_finalizer(self, v: dict[str, Any]) -> None:
        fins = [f for f in v["metadata"].get("finalizers") or [] if f != ko.FINALIZER]
        body = {"metadata": {"finalizers": fins or None, "resourceVersion": v["metadata"]["resourceVersion"]}}
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, v["metadata"]["namespace"], "variants", v["metadata"]["name"], body
            )
            log.info("variant cleaned up", variant=v["metadata"]["name"])
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) not in (404, 409):
                log.warning("finalizer not removed", variant=v["metadata"]["name"], error=api_error_message(e))

    def cleanup_orphans(self, views: list[BakeoffView]) -> None:
        """Variants being deleted whose Bakeoff is gone (or never existed): clean up and let go."""
        for v in getattr(self, "_all_variants", []):
            meta = v["metadata"]
            key = (meta["namespace"], (v.get("spec") or {}).get("bakeoff"))
            if key in self._bakeoff_keys:
                continue
            if meta.get("deletionTimestamp") and ko.FINALIZER in (meta.get("finalizers") or []):
                self._delete_children(meta["namespace"], ko.child_name(key[1] or "", meta["name"]))
                self._remove_finalizer(v)
            elif not meta.get("deletionTimestamp"):
                conds = list((v.get("status") or {}).get("conditions") or [])
                new = set_condition(
                    conds,
                    "Accepted",
                    False,
                    "BakeoffNotFound",
                    f"spec.bakeoff: no Bakeoff {key[1]!r} in namespace {meta['namespace']}",
                    meta.get("generation"),
                    self.clock(),
                )
                if new != conds:
                    self._replace_status("variants", v, dict(v.get("status") or {}, conditions=new))

    # -- writing ------------------------------------------------------------------
    def _write_bakeoff_status(self, b: dict[str, Any], status: dict[str, Any]) -> None:
        self._replace_status("bakeoffs", b, status, raise_conflict=True)

    def _replace_status(
        self, plural: str, obj: dict[str, Any], status: dict[str, Any], raise_conflict: bool = False
    ) -> None:
        from kubernetes.client import ApiException

        body = {**obj, "status": status}
        meta = obj["metadata"]
        try:
            out = self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], plural, meta["name"], body
            )
            obj["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
        except ApiException as e:
            if e.status == 409:
                self.metrics.conflicts.inc()
                if raise_conflict:
                    raise Conflict() from None
                return
            if e.status == 404 and not raise_conflict:
                return
            self.metrics.api_errors.labels("update_status").inc()
            raise

    def _write_variant_status(self, v, rec, vconds, st: ControllerState, verdict: Verdict | None, view, now) -> None:
        old = v.get("status") or {}
        new = dict(old)
        gen = v["metadata"].get("generation")
        n = v["metadata"]["name"]
        bname = view.obj["metadata"]["name"]
        new["conditions"] = vconds
        new["observedGeneration"] = gen
        if rec is not None:
            vs = st.variants.get(n)
            new["phase"] = rec["phase"]
            new["step"] = rec.get("step", -1)
            if rec.get("stepSince"):
                new["stepSince"] = rfc3339(rec["stepSince"])
            new["reason"] = (rec.get("reason") or "")[:4000]
            new["failed"] = bool(rec.get("failed"))
            new["share"] = round(vs.share if vs else 0.0, 6)
            new["deployment"] = ko.child_name(bname, n)
            dep = view.children.get(ko.child_name(bname, n))
            if dep is not None:
                ok, why = ko.deployment_health(dep)
                new["conditions"] = set_condition(
                    new["conditions"],
                    "Available",
                    ok,
                    "Available" if ok else ("Failed" if why else "NotAvailable"),
                    why
                    or (
                        "at least one replica available"
                        if ok
                        else f"Deployment {dep['metadata']['name']} has no available replica"
                    ),
                    gen,
                    now,
                )
                applied = (dep["metadata"].get("annotations") or {}).get(ko.ANN_VARIANT_SPEC)
                if applied and applied != ko.spec_hash(v.get("spec") or {}):
                    image = dep["spec"]["template"]["spec"]["containers"][0].get("image")
                    new["conditions"] = set_condition(
                        new["conditions"],
                        "SpecApplied",
                        False,
                        "ChangedAfterStart",
                        f"the spec changed after the candidate started; Deployment {dep['metadata']['name']} keeps "
                        f"the build it was judged on ({image}); submit a new Variant for the new build",
                        gen,
                        now,
                    )
                else:
                    new["conditions"] = set_condition(
                        new["conditions"], "SpecApplied", True, "Applied", "the running build is the spec's", gen, now
                    )
            if rec["phase"] == ROLLED_BACK:
                new["conditions"] = set_condition(
                    new["conditions"], "RolledBack", True, "RolledBack", rec.get("reason") or "", gen, now
                )
            if rec["phase"] == PROMOTED:
                new["conditions"] = set_condition(
                    new["conditions"], "Promoted", True, "Promoted", rec.get("reason") or "", gen, now
                )
            vv = verdict.variants.get(n) if verdict is not None else None
            if vv is not None:
                new["requests"] = int(vv.requests)
                items = []
                for mname, mv in vv.metrics.items():
                    item = {"metric": mname, "state": mv.state.replace("_", "-")}
                    for key, val in (
                        ("control", mv.control),
                        ("candidate", mv.candidate),
                        ("estimate", mv.estimate),
                        ("pWorse", mv.p_worse),
                        ("pBetter", mv.p_better),
                        ("pNonInferior", mv.p_non_inferior),
                        ("pValue", mv.p_value),
                    ):
                        if _num(val) is not None:
                            item[key] = _num(val)
                    if _num(mv.ci[0]) is not None and _num(mv.ci[1]) is not None:
                        item["ci"] = [_num(mv.ci[0]), _num(mv.ci[1])]
                    items.append(item)
                new["verdicts"] = items
                new["verdict"] = self._one_line(rec["phase"], vv)[:1000]
            elif rec["phase"] not in ACTIVE:
                new["verdict"] = (f"{rec['phase']}: {rec.get('reason') or ''}").strip(": ")[:1000]
        new = {k: val for k, val in new.items() if val is not None}
        if new != old:
            self._replace_status("variants", v, new)

    @staticmethod
    def _one_line(phase: str, vv: Any) -> str:
        parts = [f"{m}={mv.state.replace('_', '-')}" for m, mv in vv.metrics.items() if mv.state != "unknown"]
        head = vv.reason or vv.status
        return f"{head} ({vv.requests} req" + (f"; {', '.join(parts)})" if parts else ")")

    def _save_judge_state(self, view: BakeoffView, state_json: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        b = view.obj
        ns, bname = b["metadata"]["namespace"], b["metadata"]["name"]
        name = ko.child_name(bname, "judge")
        data = {"state.json": json.dumps(state_json, separators=(",", ":"))}
        try:
            if view.judge_configmap is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": ko.labels_for(bname, "judge"),
                        "ownerReferences": [ko.owner_reference(b)],
                    },
                    "data": data,
                }
                out = self.core.create_namespaced_config_map(ns, body)
            else:
                out = self.core.patch_namespaced_config_map(name, ns, {"data": data})
            view.judge_configmap = self._dict(out)
        except ApiException as e:
            self.metrics.api_errors.labels("judge_state").inc()
            log.warning("judge state not saved", bakeoff=bname, error=api_error_message(e))

    def _create(self, fn, ns: str, body: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        try:
            fn(ns, body)
            log.info("created", kind=body["kind"], name=body["metadata"]["name"], namespace=ns)
        except ApiException as e:
            if e.status != 409:  # already there: a previous pass (or replica) made it
                self.metrics.api_errors.labels("create").inc()
                raise

    def _call(self, verb: str, fn, *args) -> Any:
        from kubernetes.client import ApiException

        try:
            return fn(*args)
        except ApiException as e:
            if e.status == 409:
                self.metrics.conflicts.inc()
                return None
            self.metrics.api_errors.labels(verb).inc()
            raise

    def _event(self, obj: dict[str, Any], e: dict[str, Any]) -> None:
        """A core/v1 Event on the object (kubectl describe shows it)."""
        reason, etype = EVENT_REASONS.get(e["type"], ("Transition", "Normal"))
        if e["type"] == "entered":
            reason = "Entered"
        meta = obj["metadata"]
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        msg = e.get("reason") or e["type"]
        if e.get("share") is not None:
            msg += f" (share {float(e['share']):.3g})"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": msg[:1024],
            "type": etype,
            "source": {"component": "bakeoff-controller"},
            "reportingComponent": "bakeoff.dev/controller",
            "reportingInstance": self.identity,
            "action": e["type"],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except Exception as ex:  # noqa: BLE001 - an Event is best effort; the status has the record
            self.metrics.api_errors.labels("event").inc()
            log.warning("event not recorded", object=meta["name"], error=api_error_message(ex))

    # -- health -----------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        stale = self.last_pass_ok is not None and self.clock() - self.last_pass_ok > max(30.0, 20 * self.interval)
        return (not stale), {"identity": self.identity, "leading": self.leading, "passes": self.passes}
