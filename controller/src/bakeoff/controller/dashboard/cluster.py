"""The dashboard of a cluster (``bakeoff dashboard``): Bakeoffs and Variants read with the user's
own kubeconfig, approvals written as the user (so the cluster's RBAC decides)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bakeoff.common import kube
from bakeoff.contracts.resources import ANN_APPROVED, GROUP, VERSION
from bakeoff.controller.dashboard.server import SourceError

HISTORY_KEEP = 2000  # looks kept per bake-off while the dashboard runs


def _ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _history_events(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The controller's records in status.history (the same records as a local run's journal, the
    last 200), as report events: they outlive Kubernetes Events (kept an hour) and carry the shares
    each interval gave (adaptive allocation), so the page charts shares over time from the start."""
    out = []
    for h in status.get("history") or []:
        if isinstance(h, dict) and isinstance(h.get("type"), str):
            out.append({**h, "at": _ts(h.get("at"))})
    return out


def _judge_metrics(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from bakeoff.judge.config import config_from_dict

    try:
        cfg = config_from_dict(spec.get("judge") or {}, "spec.judge")
    except Exception:  # noqa: BLE001 - a spec the controller refused still shows, without tolerances
        return []
    out = [m.to_json() for m in cfg.guardrails]
    if cfg.objective is not None:
        out.append(cfg.objective.to_json())
    return out


class ClusterSource:
    blocking = True  # API calls: read in a thread

    def __init__(self, cluster: kube.Cluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.ns = cluster.namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.where = f"cluster, namespace {self.ns}"
        self.history: dict[str, list[dict[str, Any]]] = {}

    def _api(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kw)
        except ApiException as e:
            if e.status == 404:
                return None
            raise SourceError(
                f"{what}: {kube.api_error_message(e)} (as the user of your kubeconfig)", e.status or 502
            ) from None
        except (HTTPError, OSError) as e:
            raise SourceError(f"{what}: cannot reach the API server: {e}", 502) from None

    def _list(self, plural: str) -> list[dict[str, Any]]:
        got = self._api(
            f"list {plural} in namespace {self.ns}",
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.ns,
            plural,
        )
        return list((got or {}).get("items") or [])

    def rows(self) -> list[dict[str, Any]]:
        bakeoffs = self._list("bakeoffs")
        variants = self._list("variants")
        out = []
        for b in sorted(bakeoffs, key=lambda b: b["metadata"]["name"]):
            name = b["metadata"]["name"]
            st = b.get("status") or {}
            d: dict[str, Any] = st["decision"] if isinstance(st.get("decision"), dict) else {}
            created = _ts(b["metadata"].get("creationTimestamp"))
            out.append(
                {
                    "key": name,
                    "name": name,
                    "phase": st.get("phase") or "-",
                    "leader": st.get("winner") or d.get("winner") or st.get("mainline") or _mainline(b),
                    "variants": sum(1 for v in variants if (v.get("spec") or {}).get("bakeoff") == name),
                    "age_s": time.time() - created if created else None,
                }
            )
        return out

    def report(self, key: str) -> dict[str, Any] | None:
        b = self._api(
            f"get bakeoff {key}", self.custom.get_namespaced_custom_object, GROUP, VERSION, self.ns, "bakeoffs", key
        )
        if b is None:
            self.history.pop(key, None)
            return None
        vs = [v for v in self._list("variants") if (v.get("spec") or {}).get("bakeoff") == key]
        spec, st = b.get("spec") or {}, b.get("status") or {}
        main = _mainline(b)
        shares = {}
        for x in (st.get("routing") or {}).get("variants") or []:
            if isinstance(x, dict):
                shares[str(x.get("name"))] = float(x.get("weight") or 0.0)
        variants: dict[str, Any] = {
            main: {"phase": "Mainline", "share": shares.get(main, 0.0), "requests": None, "reason": "", "change": {}}
        }
        look: dict[str, Any] = {"at": time.time(), "variants": {}}
        verdict: dict[str, Any] = {"variants": {}}
        for v in vs:
            n, vst = v["metadata"]["name"], v.get("status") or {}
            variants[n] = {
                "phase": vst.get("phase") or "Pending",
                "share": vst.get("share", shares.get(n, 0.0)),
                "requests": vst.get("requests", 0),
                "reason": vst.get("reason") or "",
                "change": dict((v.get("spec") or {}).get("change") or {}),
            }
            ms = {}
            for item in vst.get("verdicts") or []:
                ci = item.get("ci") or [None, None]
                ms[str(item.get("metric"))] = {
                    "state": str(item.get("state") or "unknown").replace("-", "_"),
                    "estimate": item.get("estimate"),
                    "ci": ci,
                    "control": item.get("control"),
                    "candidate": item.get("candidate"),
                    "p_worse": item.get("pWorse"),
                    "p_better": item.get("pBetter"),
                    "p_non_inferior": item.get("pNonInferior"),
                }
            if ms:
                look["variants"][n] = {"requests": vst.get("requests", 0), "metrics": ms}
                verdict["variants"][n] = {"metrics": ms}
        metrics = _judge_metrics(spec)
        for vv in verdict["variants"].values():
            for key_, mv in vv["metrics"].items():
                m = next((x for x in metrics if x["name"] == key_.partition(" @")[0]), {})
                mv.update(
                    kind=m.get("kind"),
                    role=m.get("role"),
                    harm=m.get("harm"),
                    tolerance=m.get("tolerance"),
                    tolerance_relative=m.get("relative"),
                    scale="ratio" if m.get("kind") == "latency" else "difference",
                )
        hist = self.history.setdefault(key, [])
        if look["variants"] and (not hist or hist[-1]["variants"] != look["variants"]):
            hist.append(look)
            del hist[:-HISTORY_KEEP]
        created = _ts(b["metadata"].get("creationTimestamp"))
        return {
            "format": "bakeoff.report/v1",
            "generated_at": time.time(),
            "started_at": created,
            "duration_s": time.time() - created if created else None,
            "bakeoff": key,
            "phase": st.get("phase") or "-",
            "mainline": st.get("mainline") or main,
            "original_mainline": main,
            "decision": st.get("decision")
            if isinstance(st.get("decision"), dict)
            and st.get("phase")
            in (
                "Promoted",
                "Stopped",
            )
            else None,
            "judge": {"alpha": (spec.get("judge") or {}).get("alpha"), "metrics": metrics},
            "config": {"spec": spec},
            "variants": variants,
            "events": _history_events(st) or self._events(key),
            "verdict": verdict if verdict["variants"] else None,
            "history": list(hist),
            "latency": {},
            "status_codes": {},
            "source": f"namespace {self.ns}",
            "can_abort": False,  # the operator has no abort request (see abort())
        }

    def _events(self, key: str) -> list[dict[str, Any]]:
        got = self._api(
            "list events",
            self.core.list_namespaced_event,
            self.ns,
            field_selector=f"involvedObject.name={key}",
        )
        out = []
        for e in getattr(got, "items", None) or []:
            at = e.last_timestamp or e.event_time or e.first_timestamp
            out.append(
                {
                    "at": at.timestamp() if at else None,
                    "type": e.reason or "",
                    "variant": None,
                    "reason": e.message or "",
                }
            )
        return sorted(out, key=lambda x: x["at"] or 0)

    def approve(self, key: str, variant: str) -> str:
        if not variant:
            raise SourceError("name the variant to approve", 400)
        v = self._api(
            f"get variant {variant}",
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.ns,
            "variants",
            variant,
        )
        if v is None or (v.get("spec") or {}).get("bakeoff") != key:
            raise SourceError(f"no variant {variant} of bake-off {key} in namespace {self.ns}", 404)
        self._api(
            f"annotate variant {variant}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.ns,
            "variants",
            variant,
            {"metadata": {"annotations": {ANN_APPROVED: "true"}}},
        )
        return f"approved {variant} (annotation {ANN_APPROVED}); the controller promotes it on its next pass"

    def abort(self, key: str, reason: str) -> str:
        raise SourceError(
            "abort is not available on a cluster: the operator has no abort request yet; "
            f"kubectl delete bakeoff {key} -n {self.ns} ends the bake-off",
            501,
        )


def _mainline(b: dict[str, Any]) -> str:
    spec = b.get("spec") or {}
    return str((spec.get("mainline") or {}).get("name") or "mainline")
