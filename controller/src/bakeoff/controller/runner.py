"""The reconcile loop: observe, judge, decide (pure), record, act — until a decision.

Every tick (a quarter second) the runner gathers observations from the
platform (healthy and failed workloads), asks the judge for a verdict every
``spec.judge.interval`` (default 1 s) from the router's snapshot, runs the
pure :func:`controller.reconcile.reconcile`, appends the resulting events to
the journal (fsync'ed) *before* carrying out the actions, and then lets the
platform act.  A restarted run replays the journal, so a promotion or stop
recorded there is final and never happens twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from bakeoff.common.logs import bind_variant
from bakeoff.controller import gate as gates
from bakeoff.controller.decision_metrics import DecisionMetrics
from bakeoff.controller.journal import Journal
from bakeoff.controller.notify import Dispatcher, Webhook, local_reader, notification, resolve
from bakeoff.controller.platforms import Platform
from bakeoff.controller.reconcile import (
    AWAITING_APPROVAL,
    FINAL,
    PENDING,
    ControllerState,
    JudgeDecision,
    Observations,
    Policy,
    attribute,
    reconcile,
    replay,
)
from bakeoff.controller.resources import Resources, Workload
from bakeoff.judge.config import RESOURCE_KINDS
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.sources.resources import ResourceMeter, requests_of
from bakeoff.judge.verdict import Verdict
from bakeoff.load import Load, Target

log = structlog.get_logger("bakeoff.controller")

TICK = 0.25
# After this many responses, a business metric of the judge that no variant has reported while the
# service reports others is most likely misspelt (a warning, once).
METRIC_CHECK_RESPONSES = 200
# A mainline whose median latency sits here is most likely stalled by Nagle's algorithm meeting the
# client's delayed ACK (about 40 ms on Linux): a service that writes head and body separately.
NAGLE_P50_RANGE = (0.036, 0.050)
NAGLE_CHECK_RESPONSES = 200
# A run stops when at least this many requests reached the variants and, on every variant that
# had BAD_TRAFFIC_MIN_PER_VARIANT of them, at least BAD_TRAFFIC_SHARE failed (4xx, 5xx, no answer):
# then the load does not fit the service (wrong paths, a missing header), and no verdict means much.
BAD_TRAFFIC_MIN_REQUESTS = 200
BAD_TRAFFIC_MIN_PER_VARIANT = 50
BAD_TRAFFIC_SHARE = 0.5
FAILED_OUTCOMES = ("4xx", "5xx", "connect_error", "timeout")
# At the end of a run, queued notifications get this long to be delivered (then they are abandoned, logged).
NOTIFY_GRACE = 5.0


def bad_traffic(snapshot: dict[str, Any] | None) -> str | None:
    """Why the traffic is unusable (mostly failures on every variant), or None.

    Only when *all* variants fail mostly: a single bad candidate is the
    judge's business (its error-rate guardrail rolls it back).
    """
    variants = (snapshot or {}).get("variants") or {}
    total = sum(int(v.get("requests", 0)) for v in variants.values())
    if total < BAD_TRAFFIC_MIN_REQUESTS:
        return None
    judged = {n: v for n, v in variants.items() if int(v.get("requests", 0)) >= BAD_TRAFFIC_MIN_PER_VARIANT}
    if not judged:
        return None
    parts = []
    for name, v in judged.items():
        n = int(v["requests"])
        o = v.get("outcomes") or {}
        failed = sum(int(o.get(k, 0)) for k in FAILED_OUTCOMES)
        if failed / n < BAD_TRAFFIC_SHARE:
            return None
        worst = max(FAILED_OUTCOMES, key=lambda k: int(o.get(k, 0)))
        parts.append(f"{name} {failed / n:.0%} ({worst} {int(o.get(worst, 0)) / n:.0%})")
    return (
        "most requests failed on every variant: " + ", ".join(parts) + "; the load does not fit this service "
        "(check spec.load's paths, methods and headers, or the locustfile); no variant was judged"
    )


class RunError(RuntimeError):
    pass


def local_webhooks(res: Resources, base_dir: Path) -> list[Webhook]:
    """``spec.notify`` with URLs and keys read (variables, files); NotifyError (a ValueError) names
    the file and the field when one cannot be used."""
    read = local_reader(base_dir, res.origin)
    return [resolve(s, read, res.origin) for s in res.bakeoff.notify]


class MainlineFailed(RunError):
    """The mainline never became ready: nothing can be compared with it (``bakeoff run`` exits 1)."""


def _requester(f: Path, data: dict[str, Any]) -> str:
    """Who asked (``bakeoff approve|abort`` records the OS user; else the file's owner)."""
    user = data.get("user")
    if isinstance(user, str) and user:
        return user
    try:
        import pwd

        return pwd.getpwuid(f.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return "unknown"


def read_request(f: Path) -> tuple[dict[str, Any], str] | None:
    """An ``approve`` or ``abort`` file: (its JSON object, or {} for plain text; its text), None if unreadable.

    ``bakeoff approve|abort`` write one JSON object (variant, user, reason, at); a person may
    also write plain text (``echo cached > approve``).
    """
    try:
        text = f.read_text().strip()
    except OSError:
        return None
    data: Any = {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
    if not isinstance(data, dict):
        data = {}
    if data:
        data["user"] = _requester(f, data)
        return data, ""
    return {"user": _requester(f, {})}, text


def policy_of(res: Resources) -> Policy:
    b = res.bakeoff
    return Policy(
        mainline=b.mainline_name,
        steps=b.routing.steps,
        step_interval=b.routing.step_interval,
        max_candidate_share=b.routing.max_candidate_share,
        promotion=b.promotion,
        min_samples=b.judge.min_samples,
        no_data_timeout=b.routing.no_data_timeout,
        allocation=b.routing.allocation,
        mainline_floor=b.routing.mainline_floor,
        max_step=b.routing.max_step,
        tie_break=b.tie_break,
    )


def unequal_share_warning(res: Resources) -> str | None:
    """A warning when latency guardrails will compare variants at very different shares.

    Each variant is its own process and a process's latency depends on its own
    request rate (queueing when busy, wake-ups and cold caches when mostly idle),
    so identical builds at, say, 10% and 90% do not have the same latency
    (docs/run.md, "Latency and unequal shares").
    """
    b = res.bakeoff
    k = len(res.variants)
    if not k or not any(m.kind == "latency" for m in b.judge.guardrails):
        return None
    cand = min(b.routing.steps[-1], b.routing.max_candidate_share / k)
    main = max(1.0 - k * cand, 0.0)
    if cand <= 0 or not 0.5 <= main / cand <= 2.0:
        return (
            f"latency guardrails compare the mainline at {main:.0%} with each candidate at {cand:.0%} of the "
            "traffic: a process's latency depends on its own load, so give every variant about the same share "
            f"(e.g. steps: [{1 / (k + 1):.2f}], maxCandidateShare: {k / (k + 1):.2f}); see docs/run.md"
        )
    return None


def compact_verdict(v: Verdict) -> dict[str, Any]:
    """One look, small enough to keep every look: for the report's charts."""
    out: dict[str, Any] = {"at": v.at, "look": v.look, "action": v.decision.action, "variants": {}}
    for name, vv in v.variants.items():
        ms = {}
        for mname, mv in vv.metrics.items():
            ms[mname] = {
                "state": mv.state,
                "estimate": _num(mv.estimate),
                "ci": [_num(mv.ci[0]), _num(mv.ci[1])],
                "control": _num(mv.control),
                "candidate": _num(mv.candidate),
                "scale": mv.scale,
                "role": mv.role,
                "p": _num(min(mv.p_worse, mv.p_better, mv.p_non_inferior)),
            }
        out["variants"][name] = {"requests": vv.requests, "status": vv.status, "metrics": ms}
    return out


def _num(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and x == x and abs(x) != float("inf") else None


class Runner:
    def __init__(
        self,
        resources: Resources,
        platform: Platform,
        journal: Journal,
        *,
        base_dir: Path,
        view: Any = None,
        exit_on_decision: bool = False,
        load: Load | None = None,
        clock: Callable[[], float] = time.time,
        decision_metrics: DecisionMetrics | None = None,
    ) -> None:
        self.res = resources
        self.decision_metrics = decision_metrics  # `bakeoff run --metrics`: the decisions as Prometheus series
        self.b = resources.bakeoff
        self.platform = platform
        self.journal = journal
        self.base_dir = base_dir
        self.view = view
        self.exit_on_decision = exit_on_decision
        self.load = load  # driven through the router once its first routes are in place
        self.clock = clock
        self.policy = policy_of(resources)
        self.judge_config = self.b.judge
        self.verdict: Verdict | None = None
        self.last_snapshot: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = journal.read_verdicts()
        self.events: list[dict[str, Any]] = []
        self.load_task: asyncio.Task | None = None
        self.resumed = False
        self.state = ControllerState.new(self.b.name, self.b.mainline_name, [v.name for v in resources.variants])
        self.judge_state = JudgeState.new(self.judge_config)
        self.started_at: float | None = None  # the first run_started of this state directory
        self.halt: tuple[str, str] | None = None  # (why, cause) once the run must stop without a winner
        self.decided_before = False  # the journal already held a final decision when this run began
        self.load_description: str | None = None
        self.approved: frozenset[str] = frozenset()  # winners a person approved (journaled once)
        self.mainline_up = False  # the current mainline has been ready at least once in this run
        self.metrics_checked = False
        self.nagle_checked = False
        self.webhooks = local_webhooks(resources, base_dir)
        self.notifier: Dispatcher | None = None  # started with the first notification
        # Resource cost (cpu_per_request, memory): each variant's process tree, sampled at every
        # look when the platform knows its processes (bakeoff.judge.sources.process_tree).
        self.resource_meter: ResourceMeter | None = None
        self.resource_source: Any = None
        pids = getattr(platform, "pids", None)
        if callable(pids):
            from bakeoff.judge.sources.process_tree import ProcessTreeSource

            self.resource_source = ProcessTreeSource(pids)
            self.resource_meter = ResourceMeter(source_id=f"process-trees:{os.getpid()}@{self.b.name}")
        self.judges_resources = any(m.kind in RESOURCE_KINDS for m in self.judge_config.metrics)

    # -- set-up -------------------------------------------------------------
    def restore(self) -> None:
        records = [r for r in self.journal.read() if r.get("bakeoff") in (None, self.b.name)]
        starts = [r["at"] for r in records if r.get("type") == "run_started" and isinstance(r.get("at"), (int, float))]
        self.started_at = min(starts) if starts else self.clock()
        self.events = [r for r in records if r.get("type") != "run_started"]
        self.approved = frozenset(
            str(r["variant"]) for r in self.events if r.get("type") == "approved" and r.get("variant")
        )
        if self.events:
            self.resumed = True
        self.state = replay(self.state, self.events)
        self.decided_before = self.state.phase in FINAL
        d = self.state.decision
        if d and d.get("winner") and d["winner"] not in self.state.variants:
            raise RunError(
                f"journal {self.journal.path}: {d['winner']!r} was promoted, but the file has no "
                f"Variant of that name; restore it or use another --state-dir"
            )
        saved = self.journal.load_judge()
        if saved is not None and self.state.phase not in FINAL:
            try:
                self.judge_state = JudgeState.from_json(saved, self.judge_config)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("judge state not usable; judging afresh", bakeoff=self.b.name, error=str(e))

    def workload_of(self, name: str) -> Workload:
        if name == self.b.mainline_name:
            return self.b.mainline
        v = self.res.variant(name)
        if v is None:
            raise RunError(f"no workload named {name!r}")
        return v.workload

    def commit_of(self, name: str | None) -> str | None:
        v = self.res.variant(name) if name else None
        return v.commit if v else None

    def _gates(self) -> dict[str, str | None]:
        out = {}
        for v in self.res.variants:
            if self.state.variants[v.name].phase == PENDING:
                out[v.name] = gates.evaluate(v.gate, self.base_dir)
        return out

    # -- the loop -------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        self.restore()
        self.journal.append(
            {"type": "run_started", "bakeoff": self.b.name, "resumed": self.resumed, "phase": self.state.phase}
        )
        if self.resumed:
            self._note(
                {
                    "type": "resumed",
                    "variant": None,
                    "reason": f"journal has {len(self.events)} records; phase {self.state.phase}",
                },
                journal=False,
            )
        warning = unequal_share_warning(self.res)
        if warning and not self.resumed:
            self._note({"type": "warning", "variant": None, "reason": warning}, journal=False)
        gate_results = self._gates()
        await self.platform.open()
        self._write_status()
        load_stop = asyncio.Event()
        last_look = 0.0
        decided_reported = False
        try:
            while not stop.is_set():
                now = self.clock()
                if self.state.phase not in FINAL and now - last_look >= self.b.look_interval:
                    last_look = now
                    self._look(now)
                self._check_abort()
                obs = Observations(
                    now=now,
                    ready=self.platform.ready(),
                    failed=self.platform.failures(),
                    gates=gate_results,
                    verdict=self._judge_decision(),
                    approved=self._approvals(),
                    halt=self.halt[0] if self.halt else None,
                    halt_cause=self.halt[1] if self.halt else "aborted",
                )
                plan = reconcile(self.policy, self.state, obs)
                for e in plan.events:
                    self._note(e)
                    if e.get("retired_by") == "allocation" and e.get("variant"):
                        # out of the contest: the judge must not pick it as the winner any more
                        self.judge_state.out.setdefault(e["variant"], e.get("reason") or "retired")
                if self.decision_metrics is not None:
                    self.decision_metrics.decided(self.b.name, plan.events)
                self._check_mainline(plan.state, obs)
                changed = bool(plan.events) or plan.state.weights != self.state.weights
                self.state = plan.state
                for a in plan.actions:
                    if a.kind == "start" and a.variant is not None:
                        self.platform.start(
                            a.variant,
                            self.workload_of(a.variant),
                            {"bakeoff": self.b.name, "commit": self.commit_of(a.variant)},
                        )
                    elif a.kind == "route":
                        self.platform.set_weights(a.weights or {})
                    elif a.kind == "retire" and a.variant is not None:
                        self.platform.retire(a.variant, a.reason)
                if self.load is not None and self.load_task is None and self.state.weights:
                    self.load_task = self._start_load(self.load, load_stop)
                if changed:
                    self._write_status()
                if self.view is not None:
                    self.view.update(self)
                if self.decision_metrics is not None:
                    self._observe_metrics()
                if self.state.phase in FINAL and not decided_reported:
                    decided_reported = True
                    self._write_status()
                    if not self.decided_before:
                        self.write_report()
                # a decided run exits once the split is in place, or at once when the mainline is gone
                # (nothing will ever serve the split)
                if (
                    self.state.phase in FINAL
                    and self.exit_on_decision
                    and (self.state.weights or self.state.mainline in obs.failed)
                ):
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK)
        finally:
            load_stop.set()
            if self.load_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.load_task, 5)
            if not self.decided_before:  # a finished run's report stays as it was written
                with contextlib.suppress(Exception):
                    self.write_report()
            await self.platform.close()
            self._write_status(stopped=True)
            if self.notifier is not None:
                await asyncio.to_thread(self.notifier.close, NOTIFY_GRACE)
        return 0

    def _observe_metrics(self) -> None:
        st = self.state
        phases = {self.b.mainline_name: "mainline", **{n: v.phase for n, v in st.variants.items()}}
        self.decision_metrics.observe(self.b.name, st.phase, st.weights, phases, self.verdict)  # type: ignore[union-attr]

    def _look(self, now: float) -> None:
        try:
            snap = self.platform.snapshot()
        except Exception as e:  # noqa: BLE001 - a failed look is skipped, never fatal
            log.warning("snapshot failed", bakeoff=self.b.name, error=str(e))
            return
        self.last_snapshot = snap
        if not self.metrics_checked:
            self._check_metric_names(snap)
        if not self.nagle_checked:
            self._check_nagle(snap)
        if self.halt is None:
            why = bad_traffic(snap)
            if why is not None:
                self.halt = (why, "traffic")
                return
        parts: Any = snap
        if self.resource_meter is not None:
            try:
                self.resource_meter.observe(self.resource_source.sample_now(), requests_of(snap))
            except Exception as e:  # noqa: BLE001 - a failed sample is skipped, never fatal
                log.warning("resource sample failed", bakeoff=self.b.name, error=str(e))
            if self.judges_resources:
                # the meter is a source of its own for the judge (its own baseline)
                parts = [snap, self.resource_meter.snapshot(now)]
        self.judge_state, self.verdict = step(self.judge_state, parts, now)
        self.journal.save_judge(self.judge_state.to_json())
        if self.verdict.notes and not any(v.requests for v in self.verdict.variants.values()):
            return
        compact = compact_verdict(self.verdict)
        self.history.append(compact)
        self.journal.append_verdict(compact)

    def resource_summary(self) -> dict[str, dict[str, Any]]:
        """Per variant: mean CPU milliseconds per request and resident memory (MiB, mean and last),
        over the batches measured so far (the report's "Resource cost")."""
        m = self.resource_meter
        if m is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(m.cpu) | set(m.memory) | set(m.last)):
            cpu, mem, last = m.cpu.get(name), m.memory.get(name), m.last.get(name)
            out[name] = {
                "cpu_ms_per_request": cpu.sum / cpu.count * 1000 if cpu and cpu.count else None,
                "memory_mib": mem.sum / mem.count / 2**20 if mem and mem.count else None,
                "memory_mib_last": last.memory_bytes / 2**20 if last else None,
                "batches": cpu.count if cpu else 0,
            }
        return out

    def _check_metric_names(self, snap: dict[str, Any] | None) -> None:
        """Warn (once) about an objective or guardrail the service has not reported in the first
        METRIC_CHECK_RESPONSES responses while it reports other metrics: most likely a typo."""
        import difflib

        variants = (snap or {}).get("variants") or {}
        if sum(int(v.get("requests", 0)) for v in variants.values()) < METRIC_CHECK_RESPONSES:
            return
        self.metrics_checked = True
        # the router records header names lowercased (HTTP header names are case-insensitive)
        seen = sorted({str(k) for v in variants.values() for k in (v.get("metrics") or {})})
        if not seen:
            return
        for spec in self.judge_config.metrics:
            if spec.kind not in ("proportion", "mean") or spec.name in seen:
                continue
            where = "objective" if spec.role == "objective" else "guardrail"
            close = difflib.get_close_matches(spec.name.lower(), seen, n=1, cutoff=0.6)
            self._note(
                {
                    "type": "warning",
                    "variant": None,
                    "reason": f"{self.res.origin}: the {where} metric {spec.name!r} was not reported in the first "
                    f"{METRIC_CHECK_RESPONSES} responses, while the service reports {', '.join(seen)}"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                    + f" (a service reports it as a Bakeoff-Metric-{spec.name} response header)",
                },
                journal=False,
            )

    def _check_nagle(self, snap: dict[str, Any] | None) -> None:
        """Warn (once) when the mainline's p50 sits near 40 ms: the signature of a service that sends
        the response head and body in separate writes, each small write waiting for the client's
        delayed ACK (Nagle's algorithm, RFC 896, against delayed ACKs, RFC 1122 4.2.3.2)."""
        from bakeoff.contracts.histogram import decode_counts, quantile_from_counts

        v = ((snap or {}).get("variants") or {}).get(self.state.mainline) or {}
        if int(v.get("requests", 0)) < NAGLE_CHECK_RESPONSES or not v.get("latency"):
            return
        self.nagle_checked = True
        p50 = quantile_from_counts(decode_counts(v["latency"]), 0.5)
        if p50 is not None and NAGLE_P50_RANGE[0] <= p50 <= NAGLE_P50_RANGE[1]:
            self._note(
                {
                    "type": "warning",
                    "variant": self.state.mainline,
                    "reason": f"the mainline's p50 latency is {p50 * 1000:.0f} ms, near the 40 ms of a delayed-ACK "
                    "stall: a service that writes the response head and body in separate calls (e.g. Python's "
                    "http.server) waits for the client's delayed ACK, which hides real differences; set "
                    "TCP_NODELAY or write each response in one call (docs/run.md, 'Latency near 40 ms')",
                },
                journal=False,
            )

    def _starting(self) -> list[str]:
        """Candidates not yet admitted that may still be: their workload is starting (within startTimeout)."""
        failed = self.platform.failures()
        return [n for n, v in self.state.variants.items() if v.phase == PENDING and n not in failed]

    def _judge_decision(self) -> JudgeDecision | None:
        if self.verdict is None:
            return None
        d = JudgeDecision.from_verdict(self.verdict)
        js = self.judge_state
        seen_all_out = not [v for v in js.seen_candidates if v not in js.rolled_back and v not in js.out]
        if d.action == "stop" and seen_all_out and self._starting():
            # The judge only knows the candidates it has seen traffic for; one still starting
            # (within its startTimeout) can still win, so "no candidate left" is premature.
            # Forget the judge's final stop: it decides again once that candidate serves.
            js.final = None
            return JudgeDecision("rollback" if d.rollback else "continue", d.rollback, None, "", d.reasons)
        return d

    def _check_mainline(self, state: ControllerState, obs: Observations) -> None:
        """A mainline that fails before it was ever ready ends the run (exit 1): there is nothing to
        compare the candidates with, and nothing to give the traffic to."""
        name = state.mainline
        if name in obs.ready:
            self.mainline_up = True
        if self.mainline_up or name not in obs.failed:
            return
        wl = self.workload_of(name)
        what = f"command: {' '.join(wl.command)}" if wl.command else f"url: {wl.url}"
        log_path = self.journal.dir / "logs" / f"{name}.log"
        where = f"; log: {log_path}" if wl.command else ""
        raise MainlineFailed(f"mainline {name} failed to start: {obs.failed[name]}; {what}{where}")

    def _check_abort(self) -> None:
        f = self.journal.dir / "abort"
        if self.halt is not None or self.state.phase in FINAL or not f.exists():
            return
        got = read_request(f)
        if got is None:
            return
        data, text = got
        why = str(data.get("reason") or text or "aborted by a person")
        user = data["user"]
        self._note({"type": "aborted", "variant": None, "reason": why, "user": user})
        why = why if why.startswith("aborted") else f"aborted: {why}"
        self.halt = (f"{why} (by {user})", "aborted")
        with contextlib.suppress(OSError):
            f.unlink()

    def _approvals(self) -> frozenset[str]:
        if self.policy.promotion != "manual" or self.state.phase != AWAITING_APPROVAL:
            return self.approved
        f = self.journal.dir / "approve"
        if not f.exists():
            return self.approved
        got = read_request(f)
        if got is None:
            return self.approved
        data, text = got
        waiting = sorted(n for n, v in self.state.variants.items() if v.phase == "Winner")
        asked = [str(data["variant"])] if data.get("variant") else text.split()
        names = [n for n in asked if n in waiting] if asked else waiting
        with contextlib.suppress(OSError):
            f.unlink()
        if asked and not names:
            self._note(
                {
                    "type": "warning",
                    "variant": None,
                    "reason": f"approval of {', '.join(asked)} ignored: not waiting for approval "
                    f"(waiting: {', '.join(waiting) or 'none'})",
                },
                journal=False,
            )
            return self.approved
        for n in names:
            reason = str(data.get("reason") or "")
            self._note(
                {
                    "type": "approved",
                    "variant": n,
                    "reason": f"approved by {data['user']}" + (f": {reason}" if reason else ""),
                    "user": data["user"],
                    "note": reason,
                }
            )
        self.approved = self.approved | frozenset(names)
        return self.approved

    def _note(self, e: dict[str, Any], journal: bool = True) -> None:
        attribute([e], self.commit_of)
        rec = {"bakeoff": self.b.name, "at": self.clock(), **e, "commit": self.commit_of(e.get("variant"))}
        if journal:
            rec = self.journal.append(rec)
            self._notify(rec)
        self.events.append(rec)
        kw = {k: v for k, v in rec.items() if k not in ("type", "variant", "bakeoff", "commit", "reason")}
        bind_variant(log, self.b.name, rec.get("variant") or "-", rec.get("commit")).info(
            rec["type"], reason=rec.get("reason", ""), **kw
        )
        if self.view is not None:
            self.view.event(rec)

    def _notify(self, rec: dict[str, Any]) -> None:
        """Queue the webhooks' notification of a journaled decision; delivered off the decision path."""
        if not self.webhooks:
            return
        n = notification(rec, bakeoff=self.b.name)
        if n is None:
            return
        if self.notifier is None:
            self.notifier = Dispatcher()
        self.notifier.send(self.webhooks, n)

    def status(self, stopped: bool = False) -> dict[str, Any]:
        st = self.state.to_json()
        for n, v in st["variants"].items():
            v["commit"] = self.commit_of(n)
        return {
            "format": "bakeoff.status/v1",
            "at": self.clock(),
            "pid": os.getpid(),
            "running": not stopped,
            **st,
            "state_dir": str(self.journal.dir),
            **self.platform.describe(),
        }

    def _write_status(self, stopped: bool = False) -> None:
        try:
            self.journal.write_status(self.status(stopped))
        except OSError as e:
            log.warning("status not written", error=str(e))

    def write_report(self) -> dict[str, Path]:
        from bakeoff.controller.report import write_reports

        snap = None
        with contextlib.suppress(Exception):
            snap = self.platform.snapshot()
        return write_reports(self, snap)

    def _start_load(self, load: Load, stop: asyncio.Event) -> asyncio.Task:
        desc = self.platform.describe().get("router") or {}
        target = Target(str(desc.get("url")), desc.get("events_url"), self.b.routing.sticky_header)
        self.load_description = load.description
        log.info("load started", bakeoff=self.b.name, load=self.load_description)
        return asyncio.ensure_future(load.run(target, stop))
