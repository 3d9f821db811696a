"""The Kubernetes controller: the loop of ``bakeoff run``, on Bakeoff and Variant resources.

It is composed of small units around the per-pass context (context.py
:class:`Pass`): the API clients (:class:`Clients`), a :class:`Reader`
(read.py), a :class:`StatusWriter` (status.py), an :class:`EventRecorder`
(events.py) and a :class:`Converger` (converge.py); this module runs the loop,
the looks and the decision.

Every pass (``interval``, half a second by default), for every Bakeoff:

1. read the Bakeoff, its Variants, the mainline Deployment and the
   Deployments the controller made (read.py); the Bakeoff's spec is parsed
   once per read and each Variant once per pass;
2. rebuild the decision state from ``Bakeoff.status`` (``variants``, ``phase``,
   ``decision``: the status is the journal, so a restarted or newly elected
   controller continues where the last one stopped);
3. when a look is due, fetch the routers' snapshot and let the judge step
   (its state is kept in a ConfigMap);
4. run the pure :func:`controller.reconcile.reconcile`;
5. **record first**: write ``Bakeoff.status`` (phase, decision, history, the
   new routing that every router replica watches) with the resourceVersion it
   read, so a concurrent writer makes the write fail (409) instead of being
   overwritten, and the pass is done again on a fresh read (status.py);
6. then act, declaratively and idempotently (converge.py); Events for every
   transition (events.py); the Variants' status as a mirror of the Bakeoff's
   record.

Only the holder of the leader Lease acts (controller/kube/leader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from bakeoff.common.kube import api_error_message
from bakeoff.common.watch import WatchCache
from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.admit import admit_variants, earlier_round, holds_slot
from bakeoff.controller.kube.context import BakeoffView, Clients, Conflict, Lease, NotLeading, Pass, Settings
from bakeoff.controller.kube.converge import Converger
from bakeoff.controller.kube.events import EventRecorder
from bakeoff.controller.kube.judging import Looks
from bakeoff.controller.kube.metrics import ControllerMetrics
from bakeoff.controller.kube.notify import Notifier
from bakeoff.controller.kube.read import Reader
from bakeoff.controller.kube.status import (
    HISTORY_LIMIT,
    STATUS_REFRESH,
    StatusWriter,
    bakeoff_conditions,
    cluster_message,
    decision_json,
    durable_bakeoff,
    history_entry,
    parse_time,
    rfc3339,
    routing_entries,
    routing_for,
    set_condition,
)
from bakeoff.controller.reconcile import (
    ACTIVE,
    DONE_PROMOTED,
    FINAL,
    PENDING,
    RUNNING,
    ControllerState,
    JudgeDecision,
    Observations,
    attribute,
    reconcile,
)
from bakeoff.controller.resources import ResourceError
from bakeoff.controller.runner import compact_verdict, policy_of
from bakeoff.judge.verdict import Verdict

__all__ = [
    "BakeoffView",
    "Conflict",
    "KubeController",
    "Lease",
    "Settings",
    "earlier_round",
    "holds_slot",
    "parse_time",
    "rfc3339",
    "set_condition",
]

log = structlog.get_logger("bakeoff.controller.kube")


class KubeController:
    """The controller: the units below, composed around one :class:`Pass` per Bakeoff and pass.

    ``settings`` (context.py :class:`Settings`) says how it runs; ``metrics`` and ``clock`` are the
    collaborators a caller may share or replace (the metrics server, a test's clock).
    """

    def __init__(
        self,
        api: Any,
        settings: Settings | None = None,
        *,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings = settings or Settings()
        self.identity = settings.identity or f"bakeoff-controller-{uuid.uuid4().hex[:8]}"
        self.metrics = metrics or ControllerMetrics()
        self.clock = clock
        self.clients = Clients.connect(
            api, namespace=settings.namespace, identity=self.identity, metrics=self.metrics, clock=clock
        )
        self.reader = Reader(self.clients)
        self.status = StatusWriter(self.clients, lambda: self.reader.caches)
        self.events = EventRecorder(self.clients)
        self.notifier = Notifier(self.clients, self.events)
        self.converger = Converger(
            self.clients, self.status, self.events, leading=lambda: self.leading, deletion_drain=settings.deletion_drain
        )
        lease = settings.lease
        timing = lease or Lease()
        self.retry_period = max(0.2, min(2.0, (timing.renew_deadline or timing.duration) / 5))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.looks = Looks(self.reader, self.metrics, settings.snapshot_timeout)
        self.memory = self.looks.memory  # what this leader remembers of each Bakeoff's judging, by uid
        self.elector = None
        if lease is not None:
            from bakeoff.controller.kube.leader import LeaderElector

            self.elector = LeaderElector(
                api,
                lease.namespace,
                lease.name,
                self.identity,
                lease_duration=lease.duration,
                renew_deadline=lease.renew_deadline,
            )
        self.passes = 0
        self.last_pass_ok: float | None = None

    # -- reading (the reader's) ------------------------------------------------
    @property
    def caches(self) -> dict[str, WatchCache] | None:
        return self.reader.caches

    def read_world(self) -> list[BakeoffView]:
        return self.reader.read_world()

    def router_urls(self, ns: str, bakeoff: str) -> list[str]:
        return self.reader.router_urls(ns, bakeoff)

    # -- the outer loop -----------------------------------------------------
    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    def _check_leading(self) -> None:
        if not self.leading:
            raise NotLeading()

    def _wake_threadsafe(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while a watch thread ran
                loop.call_soon_threadsafe(wake.set)

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        """Renew (or try to take) the Lease on its own clock, whatever a pass is doing."""
        assert self.elector is not None
        while not stop.is_set():
            was = self.elector.leading
            try:
                leading = await asyncio.to_thread(self.elector.try_acquire_or_renew)
            except Exception as e:  # noqa: BLE001 - the elector steps down itself when it cannot renew
                log.warning("lease renewal failed", error=str(e))
                leading = self.elector.leading
            self.metrics.leader.set(1 if leading else 0)
            if leading != was:
                if leading:
                    self.memory.clear()  # another replica may have judged meanwhile: reload its state
                self._wake_threadsafe()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_period)

    def _active(self, b: dict[str, Any]) -> bool:
        """Whether a Bakeoff needs passes on a clock (looks, ramp steps, timeouts), not only on changes."""
        st = b.get("status") or {}
        return bool(b["metadata"].get("deletionTimestamp")) or st.get("phase") not in FINAL

    async def run(self, stop: asyncio.Event) -> int:
        log.info("controller started", identity=self.identity, namespace=self.settings.namespace or "(all)")
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        lease_task = None
        if self.settings.watch:
            self.reader.caches = self.reader.make_caches(self._wake_threadsafe)
            for c in self.reader.caches.values():
                c.start()
        try:
            if self.caches is not None:
                for c in self.caches.values():
                    while not c.synced.is_set() and not stop.is_set():
                        await asyncio.sleep(0.05)
            if self.elector is not None:
                lease_task = asyncio.create_task(self._keep_lease(stop))
            last_full = 0.0
            while not stop.is_set():
                started = time.monotonic()
                self._wake.clear()
                if self.leading:
                    await self.pass_once()
                    last_full = started
                self.last_pass_ok = self.clock()
                # Passes on a clock only while some Bakeoff is active; otherwise on changes (the
                # watches wake the loop) and a resync every resync_period.
                active = self.caches is None or any(self._active(b) for b in self.caches["bakeoffs"].list())
                wait = (
                    self.settings.interval
                    if active
                    else max(0.05, self.settings.resync_period - (time.monotonic() - last_full))
                )
                if not self.leading:
                    wait = self.retry_period
                wait = max(0.05, wait - (time.monotonic() - started))
                stopped = asyncio.create_task(stop.wait())
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait({stopped, woken}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for t in (stopped, woken):
                    t.cancel()
                if woken.done() and not stop.is_set() and active:
                    # a burst of watch events (often our own writes) wakes once, not once per event
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(self.settings.interval, 0.05))
        finally:
            if lease_task is not None:
                lease_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lease_task
            if self.reader.caches is not None:
                for c in self.reader.caches.values():
                    c.stop()
                self.reader.caches = None
            if self.elector is not None:
                await asyncio.to_thread(self.elector.release)
                self.metrics.leader.set(0)
            await asyncio.to_thread(self.notifier.close)
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
            if not self.leading:
                log.warning("leadership lost mid-pass; stopping")
                return
            b = view.obj
            started = time.monotonic()
            now = self.clock()
            try:
                snap_result = await self.looks.maybe_look(view, now)
                for _attempt in range(3):
                    try:
                        await asyncio.to_thread(self.reconcile_bakeoff, view, now, snap_result)
                        self.metrics.reconciles.labels("ok").inc()
                        break
                    except Conflict:  # counted where the 409 came back
                        snap_result = None  # the look already updated the judge; don't step twice
                        fresh = await asyncio.to_thread(
                            self.reader.read_bakeoff, b["metadata"]["namespace"], b["metadata"]["name"]
                        )
                        if fresh is None:
                            break
                        view = fresh
                else:
                    self.metrics.reconciles.labels("conflict").inc()
            except NotLeading:
                log.warning("leadership lost mid-pass; stopping", bakeoff=b["metadata"]["name"])
                return
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
        self.metrics.decisions.forget({f"{v.obj['metadata']['namespace']}/{v.obj['metadata']['name']}" for v in views})
        for ph, n in phases.items():
            self.metrics.bakeoffs.labels(ph).set(n)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.converger.cleanup_orphans, self.reader.all_variants, self.reader.bakeoff_keys)
        self.passes += 1

    # -- one Bakeoff ------------------------------------------------------------
    def reconcile_bakeoff(self, view: BakeoffView, now: float, look: tuple[Verdict, dict[str, Any]] | None) -> None:
        b = view.obj
        ns = b["metadata"]["namespace"]
        status = copy.deepcopy(b.get("status") or {})
        if look is not None:
            mem = self.memory.get(b["metadata"]["uid"])
            # the judge state is saved at most every STATUS_REFRESH (and on a decision): a new leader
            # resumes from it, and the routers' cumulative counters fill in what it missed
            if mem is None or look[0].decision.action != "continue" or now - mem.saved_at >= STATUS_REFRESH:
                self.status.save_judge_state(view, look[1])
                if mem is not None:
                    mem.saved_at = now

        # The Bakeoff's own spec.
        try:
            res = view.spec()
        except ResourceError as e:
            if b["metadata"].get("deletionTimestamp"):
                mname = ((b.get("spec") or {}).get("mainline") or {}).get("name")
                self.converger.delete_bakeoff(view, now, mname if isinstance(mname, str) and mname else "mainline")
                return
            gen = b["metadata"].get("generation")
            conds = set_condition(
                list(status.get("conditions") or []),
                "Ready",
                False,
                "InvalidSpec",
                cluster_message(str(e), ns),
                gen,
                now,
            )
            self.status.write_bakeoff(b, {**status, "conditions": conds, "observedGeneration": gen})
            self.converger.finish_deletions(view, routing_names=None)
            return
        if b["metadata"].get("deletionTimestamp"):
            self.converger.delete_bakeoff(view, now, res.bakeoff.mainline_name)
            return
        p = Pass(view=view, now=now, res=res, status=status)
        p.record = copy.deepcopy(status.get("variants") or {})
        admit_variants(p)
        self._read_mainline(p)
        self._decide(p)
        routing = self._record(p)

        # Act.
        self._check_leading()
        self.converger.ensure_bakeoff_finalizer(b)
        if p.mainline_error is None and p.mainline is not None:
            self.converger.converge(p)
        for n, v in p.valid.items():
            self.status.write_variant(p, v, p.record.get(n), p.variant_conds.get(n, []))
        for v in view.variants:
            n = v["metadata"]["name"]
            if n not in p.valid and n in p.variant_conds:
                self.status.write_variant(p, v, None, p.variant_conds[n])
        self.converger.finish_deletions(view, routing_names={e["name"] for e in (routing or {}).get("variants", [])})

    def _read_mainline(self, p: Pass) -> None:
        p.mainline = p.view.mainline
        if p.mainline is None:
            p.mainline_error = (
                f"spec.mainline.deployment: Deployment {p.bres.mainline.deployment!r} not found in namespace {p.ns}"
            )
            return
        try:
            p.port = ko.mainline_port(p.mainline, p.bres.mainline.port, p.bres.mainline.container)
            ko.selector_of(p.mainline)
        except ko.ObjectError as e:
            p.mainline_error = str(e)

    def _decide(self, p: Pass) -> None:
        """The decision state from the record, what is observed now, and the pure reconcile."""
        status, record, mname, bname = p.status, p.record, p.mname, p.name
        state = ControllerState.new(bname, mname, list(record))
        state.phase = status.get("phase") or RUNNING
        state.mainline = status.get("mainline") or mname
        state.decision = status.get("decision")
        for n, r in record.items():
            vs = state.variants[n]
            vs.phase, vs.step = r.get("phase", PENDING), int(r.get("step", -1))
            vs.step_since, vs.reason, vs.failed = r.get("stepSince"), r.get("reason", ""), bool(r.get("failed"))
            vs.share = float((status.get("shares") or {}).get(n, 0.0))
            vs.step_requests, vs.seen_requests = int(r.get("stepRequests") or 0), int(r.get("seenRequests") or 0)
            vs.progress_at = r.get("progressAt")
        state.weights = {e["name"]: float(e["weight"]) for e in (status.get("routing") or {}).get("variants") or []}
        state.started = {mname, *record}  # starting is declarative here; reconcile needn't ask
        state.retired = set()

        failed: dict[str, str] = {}
        if p.mainline is not None and p.mainline_error is None:
            ok, _why = ko.deployment_health(p.mainline)
            if ok:
                p.ready.add(mname)
        for n in record:
            dep = p.view.children.get(ko.child_name(bname, n))
            v = p.valid.get(n)
            if v is None or v["metadata"].get("deletionTimestamp"):
                if record[n].get("phase") in ACTIVE:
                    failed[n] = "the Variant was deleted"
                continue
            if dep is not None:
                ok, why = ko.deployment_health(dep)
                if why and (dep["spec"].get("replicas") or 0) > 0:
                    failed[n] = why
                elif ok and (dep["spec"].get("replicas") or 0) > 0:
                    p.ready.add(n)
        gate_results = {
            n: self.reader.gate(p.ns, p.valid[n]) for n in record if n in p.valid and record[n].get("phase") == PENDING
        }
        p.mem = self.memory.get(p.obj["metadata"]["uid"])
        p.verdict = p.mem.verdict if p.mem is not None else None
        approved = frozenset(
            n
            for n, v in p.valid.items()
            if ((v["metadata"].get("annotations") or {}).get(ko.ANN_APPROVED) or "").lower() == "true"
        )
        if p.mainline_error is None:
            plan = reconcile(
                policy_of(p.res),
                state,
                Observations(
                    now=p.now,
                    ready=frozenset(p.ready),
                    failed=failed,
                    gates=gate_results,
                    verdict=JudgeDecision.from_verdict(p.verdict) if p.verdict is not None else None,
                    approved=approved,
                    no_data=p.mem.note if p.mem is not None else "",
                ),
            )
            p.state, p.events = plan.state, p.events + plan.events
            if p.mem is not None:
                for e in plan.events:  # retired by adaptive allocation: out of the judge's contest
                    if e.get("retired_by") == "allocation" and e.get("variant"):
                        p.mem.state.out.setdefault(e["variant"], e.get("reason") or "retired")
        else:
            p.state = state
        for e in p.events:
            e.setdefault("at", p.now)
        attribute(p.events, p.view.commits().get)

    def _record(self, p: Pass) -> dict[str, Any] | None:
        """Record first: the Bakeoff's status, with the routing the routers apply; then the Events."""
        b, st, status, record = p.obj, p.decided, p.status, p.record
        conds = list(status.get("conditions") or [])
        for n, vs in st.variants.items():
            record[n].update({"phase": vs.phase, "step": vs.step, "reason": vs.reason, "failed": vs.failed})
            record[n]["stepSince"] = vs.step_since
            record[n].update(stepRequests=vs.step_requests, seenRequests=vs.seen_requests, progressAt=vs.progress_at)
        p.handed_over = any(c.get("type") == "MainlineUpdated" and c.get("status") == "True" for c in conds)
        routing = routing_for(p.name, p.mname, st, p.port, p.handed_over, status.get("routing"), p.view.commits())
        shares = {n: round(w, 6) for n, w in st.weights.items()}
        held = self._hand_over_split(p)
        if held is not None:
            routing = routing_entries(held, status.get("routing"))
            shares = {e["name"]: e["weight"] for e in held}
        history = list(status.get("history") or []) + [history_entry(e) for e in p.events if e["type"] != "entered"]
        new_status: dict[str, Any] = {
            **status,
            "observedGeneration": p.gen,
            "phase": st.phase,
            "mainline": st.mainline,
            "variants": record,
            "shares": shares,
            "decision": decision_json(st.decision),
            "history": history[-HISTORY_LIMIT:],
        }
        if st.decision and st.decision.get("winner"):
            new_status["winner"] = st.decision["winner"]
        if routing is not None:
            new_status["routing"] = routing
        if p.verdict is not None:
            new_status["verdicts"] = compact_verdict(p.verdict)
        new_status["conditions"] = bakeoff_conditions(p, conds)
        new_status = {k2: v2 for k2, v2 in new_status.items() if v2 is not None}
        old_status = b.get("status") or {}
        changed = durable_bakeoff(new_status) != durable_bakeoff(old_status)
        if new_status != old_status and self.status.due(b["metadata"]["uid"], p.now, changed):
            self._check_leading()
            self.status.write_bakeoff(b, new_status)  # raises Conflict: nothing below happens
            b["status"] = new_status
        key = f"{p.ns}/{p.name}"
        self.metrics.decisions.decided(key, p.events)
        self.metrics.decisions.observe(
            key,
            st.phase,
            shares,
            {p.mname: "mainline", **{n: vs.phase for n, vs in st.variants.items()}},
            p.verdict,
        )
        for e in p.events:
            self.metrics.transitions.labels(e["type"]).inc()
            target = p.valid.get(e.get("variant") or "") if e.get("variant") else None
            self.events.record(target or b, e)
        self.notifier.send(p, p.events)  # queued; delivered off the pass (controller/notify.py)
        return routing

    def _hand_over_split(self, p: Pass) -> list[dict[str, Any]] | None:
        """After a promotion, until the winner's Deployment has as many available replicas as the
        mainline's, keep splitting between the mainline and the winner (as last routed) instead of
        sending all traffic to the winner's small copy. None: no need (or nothing to keep)."""
        st = p.decided
        winner = (st.decision or {}).get("winner")
        if st.phase != DONE_PROMOTED or p.handed_over or not winner or p.mainline is None:
            return None
        target = int(p.mainline["spec"].get("replicas") or 1)
        dep = p.view.children.get(ko.child_name(p.name, winner))
        if dep is not None and int((dep.get("status") or {}).get("availableReplicas") or 0) >= target:
            return None
        keep = [e for e in (p.status.get("routing") or {}).get("variants") or [] if e["name"] in (p.mname, winner)]
        total = sum(float(e["weight"]) for e in keep)
        if total <= 0:
            return None
        return [dict(e, weight=round(float(e["weight"]) / total, 6)) for e in keep]

    # -- health -----------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        stale = self.last_pass_ok is not None and self.clock() - self.last_pass_ok > max(
            30.0, 20 * self.settings.interval
        )
        caches = self.caches
        unsynced = sorted(n for n, c in (caches or {}).items() if not c.synced.is_set())
        detail: dict[str, Any] = {"identity": self.identity, "leading": self.leading, "passes": self.passes}
        if unsynced:
            detail["waiting_for_watches"] = unsynced  # e.g. RBAC refuses a list: the log says which
        return (not stale and not unsynced), detail
