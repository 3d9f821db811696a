"""Status: the Bakeoff's record (routing, decision, history, conditions), the Variants' mirror of it, the judge state.

The builders are pure (a :class:`Pass` in, a status out); :class:`StatusWriter`
writes them with the resourceVersion that was read, so a concurrent writer
makes the write fail (409) instead of being overwritten.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from bakeoff.common.kube import GROUP, VERSION, api_error_message
from bakeoff.common.watch import WatchCache
from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.context import BakeoffView, Clients, Conflict, Pass
from bakeoff.controller.reconcile import ACTIVE, DONE_PROMOTED, FINAL, PROMOTED, ROLLED_BACK, ControllerState

log = structlog.get_logger("bakeoff.controller.kube")

HISTORY_LIMIT = 200


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


def routing_for(
    bname: str,
    mname: str,
    st: ControllerState,
    port: int | None,
    handed_over: bool,
    current: dict[str, Any] | None,
    commits: Mapping[str, str | None] | None = None,
) -> dict[str, Any] | None:
    """status.routing for the split in ``st`` (its version moves only when the split changes).
    ``commits``: each Variant's spec.change.commit, carried on its entry so the routers put it on
    their spans as service.version (after a promotion the mainline runs the winner's)."""
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
    for e in entries:
        commit = (commits or {}).get(str(e["name"]))
        if commit:
            e["commit"] = commit
    return routing_entries(entries, current)


def routing_entries(entries: list[dict[str, Any]], current: dict[str, Any] | None) -> dict[str, Any]:
    cur = current or {}
    if cur.get("variants") == entries:
        return cur
    return {"version": int(cur.get("version") or 0) + 1, "variants": entries}


def decision_json(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    if not decision:
        return None
    out = {k: v for k, v in decision.items() if v is not None}
    if isinstance(out.get("at"), (int, float)):
        out["at"] = rfc3339(out["at"])
    return out


def history_entry(e: dict[str, Any]) -> dict[str, Any]:
    """A plan event as a status.history record: its scalar fields, and an ``allocated`` record's
    shares (the dashboard charts shares over time from them)."""
    out: dict[str, Any] = {k: v for k, v in e.items() if v is not None and isinstance(v, (str, int, float, bool))}
    shares = e.get("shares")
    if e.get("type") == "allocated" and isinstance(shares, dict):
        out["shares"] = {str(n): float(x) for n, x in shares.items() if isinstance(x, (int, float))}
    out["at"] = rfc3339(e["at"])
    return out


def bakeoff_conditions(p: Pass, conds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    st, mem, gen, now = p.decided, p.mem, p.gen, p.now
    if p.mainline_error:
        reason = "MainlineNotFound" if p.mainline is None else "InvalidMainline"
        conds = set_condition(conds, "Ready", False, reason, p.mainline_error, gen, now)
    elif p.mname not in p.ready and st.phase not in FINAL:
        assert p.mainline is not None
        conds = set_condition(
            conds,
            "Ready",
            False,
            "MainlineUnavailable",
            f"Deployment {p.mainline['metadata']['name']} has no available replica",
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


def one_line(phase: str, vv: Any) -> str:
    parts = [f"{m}={mv.state.replace('_', '-')}" for m, mv in vv.metrics.items() if mv.state != "unknown"]
    head = vv.reason or vv.status
    return f"{head} ({vv.requests} req" + (f"; {', '.join(parts)})" if parts else ")")


def variant_status(
    p: Pass, v: dict[str, Any], rec: dict[str, Any] | None, vconds: list[dict[str, Any]]
) -> dict[str, Any]:
    """A Variant's status: its conditions, and a mirror of its entry in the Bakeoff's record."""
    old = v.get("status") or {}
    new = dict(old)
    gen = v["metadata"].get("generation")
    n = v["metadata"]["name"]
    now = p.now
    new["conditions"] = vconds
    new["observedGeneration"] = gen
    if rec is not None:
        st = p.decided
        vs = st.variants.get(n)
        new["phase"] = rec["phase"]
        new["bakeoffUID"] = p.obj["metadata"]["uid"]  # the round it entered: never admitted to another
        new["step"] = rec.get("step", -1)
        if rec.get("stepSince"):
            new["stepSince"] = rfc3339(rec["stepSince"])
        new["reason"] = (rec.get("reason") or "")[:4000]
        new["failed"] = bool(rec.get("failed"))
        new["share"] = round(vs.share if vs else 0.0, 6)
        new["deployment"] = ko.child_name(p.name, n)
        dep = p.view.children.get(ko.child_name(p.name, n))
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
        vv = p.verdict.variants.get(n) if p.verdict is not None else None
        if vv is not None:
            new["requests"] = int(vv.requests)
            items = []
            for mname, mv in vv.metrics.items():
                item: dict[str, Any] = {"metric": mname, "state": mv.state.replace("_", "-")}
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
            new["verdict"] = one_line(rec["phase"], vv)[:1000]
        elif rec["phase"] not in ACTIVE:
            new["verdict"] = (f"{rec['phase']}: {rec.get('reason') or ''}").strip(": ")[:1000]
    return {k: val for k, val in new.items() if val is not None}


# Figures that change on every look (request counts, verdicts, evidence) are written at most this often;
# anything else (phase, step, routing, decision, conditions) is written at once.
STATUS_REFRESH = 10.0
_VOLATILE_RECORD = ("seenRequests", "progressAt")


def durable_bakeoff(st: dict[str, Any]) -> dict[str, Any]:
    """The Bakeoff status without what changes on every look."""
    out = {k: v for k, v in st.items() if k != "verdicts"}
    out["variants"] = {
        n: {k: v for k, v in (r or {}).items() if k not in _VOLATILE_RECORD}
        for n, r in (st.get("variants") or {}).items()
    }
    out["conditions"] = [
        dict(c, message="") if c.get("type") == "Judging" and c.get("reason") == "Looking" else c
        for c in st.get("conditions") or []
    ]
    return out


def _durable_variant(st: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in st.items() if k not in ("requests", "verdicts", "verdict")}


class StatusWriter:
    """Writes the status of Bakeoffs and Variants (guarded by resourceVersion) and the judge's ConfigMap."""

    def __init__(self, k: Clients, caches: Callable[[], dict[str, WatchCache] | None]) -> None:
        self.k = k
        self.caches = caches  # the reader's watch caches, kept current with this process's own writes
        self._last_refresh: dict[str, float] = {}

    def write_bakeoff(self, b: dict[str, Any], status: dict[str, Any]) -> None:
        """Bakeoff.status; raises Conflict (409) when someone wrote since ``b`` was read."""
        self.replace("bakeoffs", b, status, raise_conflict=True)

    def replace(self, plural: str, obj: dict[str, Any], status: dict[str, Any], raise_conflict: bool = False) -> None:
        from kubernetes.client import ApiException

        body = {**obj, "status": status}
        meta = obj["metadata"]
        try:
            out = self.k.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], plural, meta["name"], body
            )
            obj["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
            self._written(plural, out)
        except ApiException as e:
            if e.status == 409:
                self.k.metrics.conflicts.inc()
                if raise_conflict:
                    raise Conflict() from None
                return
            if e.status == 404 and not raise_conflict:
                return
            self.k.metrics.api_errors.labels("update_status").inc()
            raise

    def _written(self, plural: str, out: dict[str, Any]) -> None:
        """Keep a watch cache current with this process's own write (its event follows shortly)."""
        caches = self.caches()
        if caches is not None and plural in caches:
            caches[plural].put(out)

    def due(self, key: str, now: float, changed: bool) -> bool:
        """Whether a write that only refreshes figures (requests, verdicts) is due: at most every STATUS_REFRESH."""
        last = self._last_refresh
        if changed or now - last.get(key, -1e18) >= STATUS_REFRESH:
            last[key] = now
            return True
        return False

    def write_variant(
        self, p: Pass, v: dict[str, Any], rec: dict[str, Any] | None, vconds: list[dict[str, Any]]
    ) -> None:
        new = variant_status(p, v, rec, vconds)
        old = v.get("status") or {}
        if new != old and self.due(v["metadata"]["uid"], p.now, _durable_variant(new) != _durable_variant(old)):
            self.replace("variants", v, new)

    def save_judge_state(self, view: BakeoffView, state_json: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        b = view.obj
        ns, bname = b["metadata"]["namespace"], b["metadata"]["name"]
        name = ko.child_name(bname, "judge")
        data = {"state.json": json.dumps(state_json, separators=(",", ":"))}
        try:
            if view.judge_configmap is None and not view.judge_loaded:
                try:  # not read this pass (watch mode): most likely it exists
                    body = {"metadata": {"ownerReferences": [ko.owner_reference(b)]}, "data": data}
                    out = self.k.core.patch_namespaced_config_map(name, ns, body)
                    view.judge_configmap, view.judge_loaded = self.k.to_dict(out), True
                    return
                except ApiException as e:
                    if e.status != 404:
                        raise
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
                out = self.k.core.create_namespaced_config_map(ns, body)
            else:
                # owned by this Bakeoff (by uid): a ConfigMap an earlier round of the same name left is taken over
                body = {"metadata": {"ownerReferences": [ko.owner_reference(b)]}, "data": data}
                out = self.k.core.patch_namespaced_config_map(name, ns, body)
            view.judge_configmap = self.k.to_dict(out)
        except ApiException as e:
            self.k.metrics.api_errors.labels("judge_state").inc()
            log.warning("judge state not saved", bakeoff=bname, error=api_error_message(e))
