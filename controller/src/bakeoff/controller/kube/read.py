"""The reader: the resources of one Bakeoff (its Variants, the mainline, the children), router endpoints, gates.

From the API server, or from the watch caches while the controller runs.
"""

from __future__ import annotations

import re
from typing import Any

from bakeoff.common.kube import GROUP, VERSION, api_error_message
from bakeoff.common.watch import WatchCache, matches
from bakeoff.controller import gate as gates
from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.context import BakeoffView, Clients

MANAGED = {"app.kubernetes.io/managed-by": "bakeoff"}


class Reader:
    def __init__(self, k: Clients) -> None:
        self.k = k
        self.caches: dict[str, WatchCache] | None = None  # set while run() watches; else every read asks
        self.all_variants: list[dict[str, Any]] = []  # every Variant of the last read_world
        self.bakeoff_keys: set[tuple[str, str]] = set()  # (namespace, name) of every Bakeoff of the last read_world

    def make_caches(self, on_change: Any) -> dict[str, WatchCache]:
        ns, k = self.k.namespace, self.k
        custom_fn = k.custom.list_namespaced_custom_object if ns else k.custom.list_cluster_custom_object

        def custom_kw(plural: str) -> dict[str, Any]:
            kw: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": plural}
            if ns:
                kw["namespace"] = ns
            return kw

        def typed(namespaced: Any, everywhere: Any) -> tuple[Any, dict[str, Any]]:
            return (namespaced, {"namespace": ns}) if ns else (everywhere, {})

        deps = typed(k.apps.list_namespaced_deployment, k.apps.list_deployment_for_all_namespaces)
        svcs = typed(k.core.list_namespaced_service, k.core.list_service_for_all_namespaces)
        slices = typed(k.discovery.list_namespaced_endpoint_slice, k.discovery.list_endpoint_slice_for_all_namespaces)
        return {
            "bakeoffs": WatchCache("bakeoffs", custom_fn, on_change, **custom_kw("bakeoffs")),
            "variants": WatchCache("variants", custom_fn, on_change, **custom_kw("variants")),
            "deployments": WatchCache("deployments", deps[0], on_change, **deps[1]),
            "services": WatchCache("services", svcs[0], on_change, **svcs[1]),
            "endpointslices": WatchCache(
                "endpointslices", slices[0], on_change, label_selector="kubernetes.io/service-name", **slices[1]
            ),
        }

    def _list_custom(self, plural: str) -> list[dict[str, Any]]:
        if self.k.namespace:
            r = self.k.custom.list_namespaced_custom_object(GROUP, VERSION, self.k.namespace, plural)
        else:
            r = self.k.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        items: list[dict[str, Any]] = r.get("items", [])
        return items

    def read_world(self) -> list[BakeoffView]:
        if self.caches is not None:
            bakeoffs, variants = self.caches["bakeoffs"].list(), self.caches["variants"].list()
        else:
            bakeoffs = self._list_custom("bakeoffs")
            variants = self._list_custom("variants")
        self.all_variants = variants
        self.bakeoff_keys = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bakeoffs}
        return [self._view(b, variants) for b in bakeoffs]

    def read_bakeoff(self, ns: str, name: str) -> BakeoffView | None:
        from kubernetes.client import ApiException

        try:
            b = self.k.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        variants = self.k.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "variants").get("items", [])
        return self._view(b, variants)

    def _view(self, b: dict[str, Any], variants: list[dict[str, Any]]) -> BakeoffView:
        from kubernetes.client import ApiException

        ns, name = b["metadata"]["namespace"], b["metadata"]["name"]
        mine = [
            v for v in variants if v["metadata"]["namespace"] == ns and (v.get("spec") or {}).get("bakeoff") == name
        ]
        mainline = None
        dep_name = ((b.get("spec") or {}).get("mainline") or {}).get("deployment")
        if self.caches is not None:
            # the judge's ConfigMap is read only when its state is needed (JudgeMemory), not every pass
            deps_c, svcs_c = self.caches["deployments"], self.caches["services"]
            sel_c = {ko.LABEL_BAKEOFF: name, **MANAGED}
            if isinstance(dep_name, str) and dep_name:
                mainline = deps_c.get(ns, dep_name)
            children = {
                d["metadata"]["name"]: d
                for d in deps_c.list()
                if d["metadata"]["namespace"] == ns and matches(d["metadata"].get("labels"), sel_c)
            }
            services = {
                s["metadata"]["name"]
                for s in svcs_c.list()
                if s["metadata"]["namespace"] == ns and matches(s["metadata"].get("labels"), sel_c)
            }
            return BakeoffView(b, mine, mainline, children, services, None, judge_loaded=False)
        if isinstance(dep_name, str) and dep_name:
            try:
                mainline = self.k.to_dict(self.k.apps.read_namespaced_deployment(dep_name, ns))
            except ApiException as e:
                if e.status != 404:
                    raise
        sel = f"{ko.LABEL_BAKEOFF}={name},app.kubernetes.io/managed-by=bakeoff"
        deps = self.k.apps.list_namespaced_deployment(ns, label_selector=sel).items
        svcs = self.k.core.list_namespaced_service(ns, label_selector=sel).items
        cm = None
        try:
            cm = self.k.to_dict(self.k.core.read_namespaced_config_map(ko.child_name(name, "judge"), ns))
        except ApiException as e:
            if e.status != 404:
                raise
        return BakeoffView(
            b, mine, mainline, {d.metadata.name: self.k.to_dict(d) for d in deps}, {s.metadata.name for s in svcs}, cm
        )

    def read_judge_configmap(self, ns: str, bakeoff: str) -> dict[str, Any] | None:
        from kubernetes.client import ApiException

        try:
            return dict(self.k.to_dict(self.k.core.read_namespaced_config_map(ko.child_name(bakeoff, "judge"), ns)))
        except ApiException as e:
            if e.status != 404:
                raise
            return None

    def router_urls(self, ns: str, bakeoff: str) -> list[str]:
        """GET /-/snapshot of every ready router endpoint of the bake-off (docs/kubernetes.md)."""
        if self.caches is not None:
            return self._cached_router_urls(ns, bakeoff)
        urls: list[str] = []
        for svc in self.k.core.list_namespaced_service(ns, label_selector=f"{ko.LABEL_ROUTER_FOR}={bakeoff}").items:
            slices = self.k.discovery.list_namespaced_endpoint_slice(
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

    def _cached_router_urls(self, ns: str, bakeoff: str) -> list[str]:
        assert self.caches is not None
        routers = {
            s["metadata"]["name"]
            for s in self.caches["services"].list()
            if s["metadata"]["namespace"] == ns
            and (s["metadata"].get("labels") or {}).get(ko.LABEL_ROUTER_FOR) == bakeoff
        }
        urls: list[str] = []
        for sl in self.caches["endpointslices"].list():
            meta = sl["metadata"]
            if meta["namespace"] != ns or (meta.get("labels") or {}).get("kubernetes.io/service-name") not in routers:
                continue
            port = next((p.get("port") for p in sl.get("ports") or [] if p.get("name") == "admin"), None)
            if port is None:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for addr in ep.get("addresses") or []:
                    host = f"[{addr}]" if ":" in addr else addr
                    urls.append(f"http://{host}:{port}/-/snapshot")
        return sorted(set(urls))

    def gate(self, ns: str, v: dict[str, Any]) -> str | None:
        """The gate's verdict on Variant ``v``: None when it passes (or has no gate), else why not."""
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
            cm = self.k.core.read_namespaced_config_map(m[1], ns)
        except ApiException as e:
            return f"gate: cannot read ConfigMap {m[1]}: {api_error_message(e)}"
        key = m[2] or "results.sarif"
        text = (cm.data or {}).get(key)
        if text is None:
            return f"gate: ConfigMap {m[1]} has no key {key!r}"
        return gates.evaluate_text(Gate(ref, g.get("maxSeverity", "warning")), text)
