"""The resource schema: ``Bakeoff`` and ``Variant`` documents (``bakeoff.dev/v1alpha1``).

One YAML file holds one ``Bakeoff`` and any number of ``Variant`` documents.
``bakeoff run`` (local) reads it here; the Kubernetes controller reads the
same fields from custom resources.  Every field is checked before anything
starts, and an error names the file, the document (index, kind, name) and the
field, e.g.::

    shop.yaml: document 2 (Variant "cached"): spec.command must be a non-empty list of strings

See docs/resources.md for the whole schema.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bakeoff.common.durations import DurationError, parse_duration
from bakeoff.common.yamlfile import read_yaml_documents
from bakeoff.contracts import schema
from bakeoff.contracts.resources import API_VERSION, DEFAULT_STICKY_HEADER, HEADER_RE, NAME_RE, Route
from bakeoff.contracts.schema import DEFAULT_STEPS, HTTP_METHODS, PROMOTION_MODES, SARIF_LEVELS
from bakeoff.contracts.snapshot import MAX_ROUTES, OTHER_ROUTE
from bakeoff.judge.config import JudgeConfig, JudgeConfigError, config_from_dict


class ResourceError(ValueError):
    """A resource file is invalid; the message names the document and the field."""


@dataclass(frozen=True)
class Workload:
    """How to run one variant: locally a command (with ``{port}``) or an existing URL;
    in a cluster the mainline's Deployment or a candidate's image."""

    command: tuple[str, ...] | None = None
    url: str | None = None
    image: str | None = None  # cluster: a candidate's container image
    deployment: str | None = None  # cluster: the mainline Deployment
    port: int | None = None  # cluster: the port the pods listen on (None: from the pod template)
    container: str | None = None  # cluster: the container a candidate's image replaces (None: the first)
    replicas: int = 1  # cluster: a candidate's pods while it serves
    health_path: str = schema.default(schema.Workload, "health_path")
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    start_timeout: float = 30.0
    protocol: str = schema.default(schema.Workload, "protocol")  # how the router speaks to it: http1 | h2c


@dataclass(frozen=True)
class Gate:
    sarif: str
    max_severity: str = schema.default(schema.Gate, "max_severity")


@dataclass(frozen=True)
class VariantResource:
    name: str
    bakeoff: str
    workload: Workload
    change: dict[str, str] = field(default_factory=dict)
    gate: Gate | None = None
    index: int = 0  # document index in the file (for messages)

    @property
    def commit(self) -> str | None:
        return self.change.get("commit")


@dataclass(frozen=True)
class Routing:
    sticky_header: str | None = DEFAULT_STICKY_HEADER
    sticky_cookie: str | None = None
    max_candidate_share: float = schema.default(schema.Routing, "max_candidate_share")
    steps: tuple[float, ...] = DEFAULT_STEPS
    step_interval: float = parse_duration(schema.default(schema.Routing, "step_interval"), "stepInterval")
    allocation: str = schema.default(schema.Routing, "allocation")
    routes: tuple[Route, ...] = ()  # per-route statistics (docs/resources.md); empty: none
    no_data_timeout: float = 300.0  # no new judged request of a candidate for this long: rolled back
    mainline_floor: float = schema.default(schema.Routing, "mainline_floor")  # adaptive: the mainline's least share
    max_step: float = schema.default(schema.Routing, "max_step")  # adaptive: a share's largest move per interval


@dataclass(frozen=True)
class LoadRequest:
    """One kind of request the built-in load generator sends (``spec.load.requests[i]``)."""

    path: str
    method: str = schema.default(schema.LoadRequest, "method")
    weight: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True)
class LoadSpec:
    """Load a local run drives through its router (``spec.load``): what a user of the service sends.

    Exactly one of ``requests`` (the built-in generator), ``locustfile`` (a
    locust file of the user's, run headless) or ``shoppers`` (the simulated
    shoppers of examples/shop) says what the load is.
    """

    users: int = schema.default(schema.Load, "users")
    think: float = parse_duration(
        schema.default(schema.Load, "think"), "think"
    )  # mean seconds between one user's requests
    requests: tuple[LoadRequest, ...] = ()
    locustfile: str | None = None
    shoppers: bool = False


@dataclass(frozen=True)
class BakeoffResource:
    name: str
    mainline_name: str
    mainline: Workload
    routing: Routing
    judge: JudgeConfig
    judge_raw: dict[str, Any]
    promotion: str = schema.default(schema.Promotion, "mode")  # auto | manual | whenNoRegression
    tie_break: str | None = None  # spec.promotion.tieBreak: picks among several promotable candidates
    listen: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:8081"
    look_interval: float = parse_duration(schema.default(schema.Judge, "interval"), "interval")
    source: str | None = None  # cluster: where the judge's figures come from (spec.judge.source)
    # cluster: where cpu_per_request and memory come from (spec.judge.resources: prometheus, cpuQuery,
    # memoryQuery; bakeoff.judge.sources.cadvisor); locally each variant's process tree is sampled
    resources: dict[str, str] | None = None
    load: LoadSpec | None = None  # local: the load bakeoff run drives (spec.load)
    notify: tuple[NotifySpec, ...] = ()  # webhooks on decisions (spec.notify)


@dataclass(frozen=True)
class ValueRef:
    """Where a webhook's URL or key comes from: exactly one of a Secret's key, a variable, a file."""

    secret: tuple[str, str] | None = None  # (Secret name, key): cluster
    env: str | None = None  # local
    file: str | None = None  # local, relative to the resource file's directory


@dataclass(frozen=True)
class NotifySpec:
    """``spec.notify[i]`` as written; the URL and key are resolved when a notification is sent."""

    where: str  # "spec.notify[0]", for messages
    url: str | None = None
    url_from: ValueRef | None = None
    key_from: ValueRef | None = None
    format: str = "json"
    events: tuple[str, ...] = schema.NOTIFY_EVENTS
    timeout: float = 5.0
    retries: int = 5


@dataclass(frozen=True)
class Resources:
    origin: str
    bakeoff: BakeoffResource
    variants: tuple[VariantResource, ...]

    def variant(self, name: str) -> VariantResource | None:
        return next((v for v in self.variants if v.name == name), None)


class _Doc:
    """Error messages for one document."""

    def __init__(self, origin: str, index: int, kind: Any, name: Any) -> None:
        label = f"document {index}"
        if isinstance(kind, str) and kind:
            label += f" ({kind}"
            label += f" {name!r})" if isinstance(name, str) and name else ")"
        self.prefix = f"{origin}: {label}"

    def error(self, fieldname: str, message: str) -> ResourceError:
        return ResourceError(f"{self.prefix}: {fieldname} {message}" if fieldname else f"{self.prefix}: {message}")


def _mapping(doc: _Doc, value: Any, where: str, known: Collection[str], required: bool = False) -> dict:
    if value is None:
        if required:
            raise doc.error(where, "is required")
        return {}
    if not isinstance(value, dict):
        raise doc.error(where, "must be a mapping")
    for key in value:
        if key not in known:
            raise doc.error(f"{where}.{key}", f"is not a known field (known: {', '.join(sorted(known))})")
    return value


def _cluster_fields(doc: _Doc, spec: dict, p: str, kw: dict[str, Any]) -> None:
    for key, attr in (("image", "image"), ("deployment", "deployment"), ("container", "container")):
        if spec.get(key) is not None:
            if not isinstance(spec[key], str) or not spec[key]:
                raise doc.error(f"{p}{key}", f"must be a non-empty string, got {spec[key]!r}")
            kw[attr] = spec[key]
    for key, model in (("port", schema.Mainline), ("replicas", schema.VariantSpec)):
        if spec.get(key) is not None:
            lo, hi = schema.bounds(model, key)
            v = spec[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise doc.error(f"{p}{key}", f"must be a whole number from {lo} to {hi}, got {v!r}")
            kw[key] = v


def _workload(doc: _Doc, spec: dict, where: str, platform: str = "local") -> Workload:
    p = f"{where}." if where else "spec."
    kw: dict[str, Any] = {}
    _cluster_fields(doc, spec, p, kw)
    has_cmd, has_url = "command" in spec and spec["command"] is not None, "url" in spec and spec["url"] is not None
    if platform == "kubernetes":
        need = "deployment" if where == "spec.mainline" else "image"
        if need not in kw:
            raise doc.error(
                f"{p}{need}",
                "is required on Kubernetes"
                + (
                    " (the name of the mainline Deployment in the same namespace)"
                    if need == "deployment"
                    else " (the candidate's container image)"
                ),
            )
        has_cmd = has_url = False  # local-only fields are stored and ignored in a cluster
    elif has_cmd == has_url:
        if not has_cmd and ("image" in kw or "deployment" in kw):
            key = "image" if "image" in kw else "deployment"
            raise doc.error(f"{p}{key}", f"is for the Kubernetes platform; a local run needs {p}command or {p}url")
        raise doc.error(where or "spec", "needs exactly one of command (a list) or url")
    if has_cmd:
        cmd = spec["command"]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, (str, int, float)) for c in cmd):
            raise doc.error(f"{p}command", "must be a non-empty list of strings")
        kw["command"] = tuple(str(c) for c in cmd)
    elif has_url:
        url = spec["url"]
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+(:\d+)?/?$", url):
            raise doc.error(f"{p}url", f"must be http://host:port, got {url!r}")
        if url.startswith("https://"):
            raise doc.error(f"{p}url", "must be plain http (the router speaks HTTP/1.1 to upstreams)")
        kw["url"] = url.rstrip("/")
    hp = spec.get("healthPath", Workload.health_path)
    if not isinstance(hp, str) or not hp.startswith("/"):
        raise doc.error(f"{p}healthPath", f"must be a path starting with '/', got {hp!r}")
    kw["health_path"] = hp
    env = spec.get("env")
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise doc.error(f"{p}env", "must be a mapping of names to strings")
        kw["env"] = tuple((k, str(v)) for k, v in env.items())
    if spec.get("workingDir") is not None:
        if not isinstance(spec["workingDir"], str):
            raise doc.error(f"{p}workingDir", "must be a directory path")
        kw["working_dir"] = spec["workingDir"]
    if spec.get("startTimeout") is not None:
        kw["start_timeout"] = _duration(doc, spec["startTimeout"], f"{p}startTimeout")
    if spec.get("protocol") is not None:
        if spec["protocol"] not in ("http1", "h2c"):
            raise doc.error(f"{p}protocol", f"must be http1 or h2c, got {spec['protocol']!r}")
        kw["protocol"] = spec["protocol"]
    return Workload(**kw)


def _duration(doc: _Doc, value: Any, field: str) -> float:
    """A duration field (the common grammar, bakeoff.common.durations), or an error naming the document and field."""
    try:
        return parse_duration(value, field)
    except DurationError as e:
        raise doc.error(field, str(e).removeprefix(f"{field} ")) from None


# The fields each part of a document may have: the models of bakeoff.contracts.schema (the CRDs' source).
_MAINLINE_KEYS = schema.Mainline.keys()
_VARIANT_KEYS = schema.VariantSpec.keys()


def _share(doc: _Doc, value: Any, where: str, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise doc.error(where, f"must be a number between 0 and 1, got {value!r}")
    if not (0 <= value <= 1) or (value == 0 and not zero_ok):
        raise doc.error(
            where,
            f"must be a number {'from' if zero_ok else 'above'} 0 {'to' if zero_ok else 'up to'} 1, got {value!r}",
        )
    return float(value)


def _bakeoff(doc: _Doc, d: dict, origin: str, platform: str = "local") -> BakeoffResource:
    spec = _mapping(doc, d.get("spec"), "spec", schema.BakeoffSpec.keys(), required=True)
    name = d["metadata"]["name"]
    main = _mapping(doc, spec.get("mainline"), "spec.mainline", _MAINLINE_KEYS, required=True)
    mname = main.get("name", schema.default(schema.Mainline, "name"))
    if not isinstance(mname, str) or not NAME_RE.match(mname):
        raise doc.error("spec.mainline.name", f"must be lower-case letters, digits, '-', '_' or '.'; got {mname!r}")
    mainline = _workload(doc, main, "spec.mainline", platform)

    r = _mapping(
        doc,
        spec.get("routing"),
        "spec.routing",
        schema.Routing.keys(),
    )
    rk: dict[str, Any] = {}
    if "stickiness" in r:
        st = r["stickiness"]
        if st is None:
            rk["sticky_header"] = None
        else:
            if not isinstance(st, dict) or len(st) != 1 or not ({"header", "cookie"} & st.keys()):
                raise doc.error("spec.routing.stickiness", "must be {header: NAME} or {cookie: NAME}")
            ((kind, hname),) = st.items()
            if not isinstance(hname, str) or not HEADER_RE.match(hname):
                raise doc.error(f"spec.routing.stickiness.{kind}", f"must be a header or cookie name, got {hname!r}")
            rk["sticky_header"] = hname if kind == "header" else None
            rk["sticky_cookie"] = hname if kind == "cookie" else None
    if "maxCandidateShare" in r:
        rk["max_candidate_share"] = _share(doc, r["maxCandidateShare"], "spec.routing.maxCandidateShare")
    if "steps" in r:
        steps = r["steps"]
        if not isinstance(steps, list) or not steps:
            raise doc.error("spec.routing.steps", "must be a non-empty list of shares, e.g. [0.05, 0.1, 0.2]")
        vals = tuple(_share(doc, s, f"spec.routing.steps[{i}]") for i, s in enumerate(steps))
        for i in range(1, len(vals)):
            if vals[i] <= vals[i - 1]:
                raise doc.error(f"spec.routing.steps[{i}]", f"must be larger than the step before ({vals[i - 1]:g})")
        rk["steps"] = vals
    if "stepInterval" in r:
        rk["step_interval"] = _duration(doc, r["stepInterval"], "spec.routing.stepInterval")
    if "noDataTimeout" in r:
        rk["no_data_timeout"] = _duration(doc, r["noDataTimeout"], "spec.routing.noDataTimeout")
    if "allocation" in r:
        if r["allocation"] == "bandit":
            raise doc.error(
                "spec.routing.allocation",
                "'bandit' is now called 'adaptive': use allocation: adaptive (shares move toward the candidates "
                "that can still win; docs/judge.md), or 'fixed', the ramp of spec.routing.steps",
            )
        if r["allocation"] not in ("fixed", "adaptive"):
            raise doc.error("spec.routing.allocation", f"must be 'fixed' or 'adaptive', got {r['allocation']!r}")
        rk["allocation"] = r["allocation"]
    for key, attr, zero_ok in (("mainlineFloor", "mainline_floor", True), ("maxStep", "max_step", False)):
        if key in r:
            share = _share(doc, r[key], f"spec.routing.{key}", zero_ok=zero_ok)
            if key == "mainlineFloor" and share >= 1:
                raise doc.error(
                    "spec.routing.mainlineFloor", f"must be below 1 (candidates need traffic), got {share!r}"
                )
            if r.get("allocation") != "adaptive":
                raise doc.error(f"spec.routing.{key}", "applies only to allocation: adaptive")
            rk[attr] = share
    if r.get("routes") is not None:
        rk["routes"] = _routes(doc, r["routes"])
    routing = Routing(**rk)

    raw_judge = spec.get("judge")
    if not isinstance(raw_judge, dict):
        raise doc.error("spec.judge", "is required: the judge config of docs/judge.md (a mapping)")
    jraw = dict(raw_judge)
    if "control" in jraw and jraw["control"] != mname:
        raise doc.error(
            "spec.judge.control", f"must be the mainline's name {mname!r} (or omitted), got {jraw['control']!r}"
        )
    jraw["control"] = mname
    look_interval = BakeoffResource.look_interval
    if "interval" in jraw:
        look_interval = _duration(doc, jraw["interval"], "spec.judge.interval")
    jraw.pop("interval", None)
    source = jraw.pop("source", None)  # local runs always read the in-process router
    if source is not None and not isinstance(source, str):
        raise doc.error("spec.judge.source", f"must be a string, got {source!r}")
    resources = jraw.pop("resources", None)
    if resources is not None:
        resources = _resource_queries(doc, resources)
    try:
        judge = config_from_dict(jraw, origin=f"{doc.prefix}: spec.judge")
    except JudgeConfigError as e:
        msg, head = str(e), f"{doc.prefix}: spec.judge: "
        if msg.startswith(head + ": "):  # a message about the judge config as a whole
            msg = head + msg[len(head) + 2 :]
        elif msg.startswith(head):  # a message about one field: name it as spec.judge.FIELD
            msg = f"{doc.prefix}: spec.judge." + msg[len(head) :]
        raise ResourceError(msg) from None
    raw_promo = spec.get("promotion")
    promo = (
        {"mode": raw_promo}
        if isinstance(raw_promo, str)
        else _mapping(doc, raw_promo, "spec.promotion", schema.Promotion.keys())
    )
    mode = promo.get("mode", BakeoffResource.promotion)
    if mode not in PROMOTION_MODES:
        raise doc.error("spec.promotion.mode", f"must be one of {', '.join(PROMOTION_MODES)}, got {mode!r}")
    tie_break = promo.get("tieBreak")
    if tie_break is not None:
        judged = [m.name for m in judge.metrics]
        if tie_break not in judged:
            raise doc.error(
                "spec.promotion.tieBreak",
                f"must name a metric the judge measures ({', '.join(judged)}), got {tie_break!r}",
            )
    if judge.objective is None and mode != "whenNoRegression":
        raise doc.error(
            "spec.judge.objective",
            "is required: a bake-off promotes on its objective (or set spec.promotion.mode: whenNoRegression)",
        )
    load = _load(doc, spec["load"]) if spec.get("load") is not None else None

    rt = _mapping(doc, spec.get("router"), "spec.router", schema.Router.keys())
    addrs = {}
    for key, default in (("listen", "127.0.0.1:8080"), ("admin", "127.0.0.1:8081")):
        val = given = rt.get(key, default)
        if isinstance(val, int):
            val = f"127.0.0.1:{val}"
        if (
            not isinstance(val, str)
            or not re.match(schema.HOST_PORT_PATTERN, val)
            or int(val.rsplit(":", 1)[1]) > 65535
        ):
            raise doc.error(f"spec.router.{key}", f"{schema.HOST_PORT_EXPECTED}, got {given!r}")
        addrs[key] = val
    return BakeoffResource(
        name=name,
        mainline_name=mname,
        mainline=mainline,
        routing=routing,
        judge=judge,
        judge_raw=jraw,
        promotion=mode,
        tie_break=tie_break,
        listen=addrs["listen"],
        admin=addrs["admin"],
        look_interval=look_interval,
        source=source,
        load=load,
        resources=resources,
        notify=_notify(doc, spec.get("notify"), platform),
    )


def _value_ref(doc: _Doc, value: Any, where: str, platform: str) -> ValueRef:
    ref = _mapping(doc, value, where, schema.ValueFrom.keys(), required=True)
    given = [k for k in ("secretKeyRef", "env", "file") if ref.get(k) is not None]
    if len(given) != 1:
        raise doc.error(
            where, f"needs exactly one of secretKeyRef (cluster), env or file (local), got {given or 'none'}"
        )
    kind = given[0]
    if kind == "secretKeyRef":
        if platform != "kubernetes":
            raise doc.error(f"{where}.secretKeyRef", "works only in a cluster; locally use env or file")
        sk = _mapping(doc, ref[kind], f"{where}.secretKeyRef", schema.SecretKeyRef.keys(), required=True)
        for k in ("name", "key"):
            if not isinstance(sk.get(k), str) or not sk[k]:
                raise doc.error(f"{where}.secretKeyRef.{k}", "must be a non-empty string")
        return ValueRef(secret=(sk["name"], sk["key"]))
    if platform == "kubernetes":
        raise doc.error(f"{where}.{kind}", "is local mode only; in a cluster use secretKeyRef (a Secret's key)")
    val = ref[kind]
    if not isinstance(val, str) or not val:
        raise doc.error(f"{where}.{kind}", f"must be a non-empty string, got {val!r}")
    if kind == "env" and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", val):
        raise doc.error(f"{where}.env", f"must be an environment variable's name, got {val!r}")
    return ValueRef(env=val) if kind == "env" else ValueRef(file=val)


def _notify(doc: _Doc, value: Any, platform: str) -> tuple[NotifySpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise doc.error("spec.notify", "must be a list of webhooks, e.g. [{url: https://hooks.example/x}]")
    if len(value) > 16:
        raise doc.error("spec.notify", f"has {len(value)} webhooks; at most 16")
    out = []
    for i, raw in enumerate(value):
        w = f"spec.notify[{i}]"
        d = _mapping(doc, raw, w, schema.Webhook.keys(), required=True)
        if (d.get("url") is None) == (d.get("urlFrom") is None):
            raise doc.error(w, "needs exactly one of url or urlFrom")
        url = None
        if d.get("url") is not None:
            from bakeoff.controller.notify import NotifyError, check_url

            if not isinstance(d["url"], str):
                raise doc.error(f"{w}.url", f"must be an http:// or https:// URL, got {d['url']!r}")
            try:
                url = check_url(d["url"], "")
            except NotifyError:
                raise doc.error(f"{w}.url", f"must be an http:// or https:// URL, got {d['url']!r}") from None
        url_from = _value_ref(doc, d["urlFrom"], f"{w}.urlFrom", platform) if d.get("urlFrom") is not None else None
        key_from = _value_ref(doc, d["keyFrom"], f"{w}.keyFrom", platform) if d.get("keyFrom") is not None else None
        fmt = d.get("format", "json")
        if fmt not in ("json", "slack"):
            raise doc.error(f"{w}.format", f"must be json or slack, got {fmt!r}")
        events = d.get("events")
        if events is None:
            events = list(schema.NOTIFY_EVENTS)
        if not isinstance(events, list) or not events or any(e not in schema.NOTIFY_EVENTS for e in events):
            raise doc.error(
                f"{w}.events", f"must be a non-empty list of {', '.join(schema.NOTIFY_EVENTS)}, got {events!r}"
            )
        timeout = d.get("timeoutSeconds", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
            raise doc.error(
                f"{w}.timeoutSeconds", f"must be a number of seconds above 0 and at most 600, got {timeout!r}"
            )
        retries = d.get("retries", 5)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
            raise doc.error(f"{w}.retries", f"must be a whole number from 0 to 20, got {retries!r}")
        out.append(NotifySpec(w, url, url_from, key_from, fmt, tuple(events), timeout, retries))
    return tuple(out)


def _resource_queries(doc: _Doc, value: Any) -> dict[str, str]:
    from bakeoff.judge.sources.cadvisor import check_query

    where = "spec.judge.resources"
    if not isinstance(value, dict):
        raise doc.error(where, f"must be a mapping (prometheus, cpuQuery, memoryQuery), got {value!r}")
    allowed = ("prometheus", "cpuQuery", "memoryQuery")
    for key, v in value.items():
        if key not in allowed:
            raise doc.error(f"{where}.{key}", f"is not a field (allowed: {', '.join(allowed)})")
        if not isinstance(v, str) or not v.strip():
            raise doc.error(f"{where}.{key}", f"must be a non-empty string, got {v!r}")
        if key == "prometheus" and not v.startswith(("prometheus+http://", "prometheus+https://")):
            raise doc.error(f"{where}.{key}", f"must be a prometheus+http(s):// URL, got {v!r}")
        if key != "prometheus":
            try:
                check_query(v, "query")
            except ValueError as e:
                raise doc.error(f"{where}.{key}", str(e).removeprefix("query: ")) from None
    return dict(value)


def _routes(doc: _Doc, value: Any) -> tuple[Route, ...]:
    where = "spec.routing.routes"
    if not isinstance(value, list):
        raise doc.error(where, 'must be a list of {name, match}, e.g. [{name: checkout, match: "/checkout*"}]')
    if len(value) > MAX_ROUTES:
        raise doc.error(where, f"has {len(value)} routes; at most {MAX_ROUTES}")
    out: list[Route] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        m = _mapping(doc, item, w, schema.RouteModel.keys(), required=True)
        name, match = m.get("name"), m.get("match")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise doc.error(f"{w}.name", f"must be lower-case letters, digits, '-', '_' or '.'; got {name!r}")
        if name == OTHER_ROUTE:
            raise doc.error(f"{w}.name", f"{OTHER_ROUTE!r} is reserved (it counts requests that match no route)")
        if name in seen:
            raise doc.error(f"{w}.name", f"{name!r} is already used by another route")
        seen.add(name)
        if not isinstance(match, str) or not match.startswith("/") or any(c.isspace() for c in match):
            raise doc.error(f"{w}.match", f"must be a path glob starting with '/', e.g. \"/checkout*\"; got {match!r}")
        out.append(Route(name, match))
    return tuple(out)


def _load(doc: _Doc, value: Any) -> LoadSpec:
    ld = _mapping(doc, value, "spec.load", schema.Load.keys())
    kw: dict[str, Any] = {}
    if "users" in ld:
        u = ld["users"]
        lo, hi = schema.bounds(schema.Load, "users")
        if isinstance(u, bool) or not isinstance(u, int) or not lo <= u <= hi:
            raise doc.error("spec.load.users", f"must be a whole number from {lo} to {hi}, got {u!r}")
        kw["users"] = u
    if "think" in ld:
        kw["think"] = _duration(doc, ld["think"], "spec.load.think")
    kinds = [k for k in ("requests", "locustfile", "shoppers") if ld.get(k) not in (None, False)]
    if len(kinds) != 1:
        raise doc.error(
            "spec.load",
            "needs exactly one of requests (a list of {path, method, weight, body, json, headers}), "
            f"locustfile (a path) or shoppers: true; got {', '.join(kinds) or 'none'}",
        )
    if "locustfile" in kinds:
        if not isinstance(ld["locustfile"], str) or not ld["locustfile"]:
            raise doc.error("spec.load.locustfile", f"must be the path of a locust file, got {ld['locustfile']!r}")
        kw["locustfile"] = ld["locustfile"]
    elif "shoppers" in kinds:
        if ld["shoppers"] is not True:
            raise doc.error("spec.load.shoppers", f"must be true or omitted, got {ld['shoppers']!r}")
        kw["shoppers"] = True
    else:
        kw["requests"] = _load_requests(doc, ld["requests"])
    return LoadSpec(**kw)


def _load_requests(doc: _Doc, value: Any) -> tuple[LoadRequest, ...]:
    import json

    if not isinstance(value, list) or not value:
        raise doc.error("spec.load.requests", "must be a non-empty list, e.g. [{path: /quotes, weight: 3}]")
    out = []
    for i, item in enumerate(value):
        w = f"spec.load.requests[{i}]"
        m = _mapping(doc, item, w, schema.LoadRequest.keys(), required=True)
        path = m.get("path")
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise doc.error(f"{w}.path", f"must be a path starting with '/' (a query string may follow), got {path!r}")
        method = m.get("method", LoadRequest.method)
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            raise doc.error(f"{w}.method", f"must be one of {', '.join(HTTP_METHODS)} (in any case), got {method!r}")
        weight = m.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (0 < weight < math.inf):
            raise doc.error(f"{w}.weight", f"must be a positive number, got {weight!r}")
        headers: list[tuple[str, str]] = []
        if m.get("headers") is not None:
            hs = m["headers"]
            if not isinstance(hs, dict):
                raise doc.error(f"{w}.headers", "must be a mapping of header names to values")
            for k, v in hs.items():
                if not isinstance(k, str) or not HEADER_RE.match(k) or not isinstance(v, (str, int, float)):
                    raise doc.error(f"{w}.headers.{k}", f"must be a header name with a string value, got {v!r}")
                headers.append((k, str(v)))
        if "body" in m and "json" in m:
            raise doc.error(w, "has both body and json; give one")
        body: bytes | None = None
        if m.get("json") is not None:
            body = json.dumps(m["json"]).encode()
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/json"))
        elif m.get("body") is not None:
            if not isinstance(m["body"], str):
                raise doc.error(f"{w}.body", "must be a string (use json: for a JSON document)")
            body = m["body"].encode()
        out.append(
            LoadRequest(path=path, method=method.upper(), weight=float(weight), headers=tuple(headers), body=body)
        )
    return tuple(out)


def _variant(doc: _Doc, d: dict, index: int, platform: str = "local") -> VariantResource:
    spec = _mapping(doc, d.get("spec"), "spec", _VARIANT_KEYS, required=True)
    bname = spec.get("bakeoff")
    if not isinstance(bname, str) or not bname:
        raise doc.error("spec.bakeoff", "is required: the name of the Bakeoff this variant enters")
    workload = _workload(doc, spec, "spec", platform)
    change: dict[str, str] = {}
    if spec.get("change") is not None:
        ch = _mapping(doc, spec["change"], "spec.change", schema.Change.keys())
        for k, v in ch.items():
            if v is None:
                continue
            if not isinstance(v, (str, int)):
                raise doc.error(f"spec.change.{k}", f"must be a string, got {v!r}")
            change[k] = str(v)
    gate = None
    if spec.get("gate") is not None:
        g = _mapping(doc, spec["gate"], "spec.gate", schema.Gate.keys())
        if not isinstance(g.get("sarif"), str) or not g["sarif"]:
            raise doc.error("spec.gate.sarif", "must be the path of a SARIF file")
        sev = g.get("maxSeverity", Gate.max_severity)
        if sev not in SARIF_LEVELS:
            raise doc.error("spec.gate.maxSeverity", f"must be one of {', '.join(SARIF_LEVELS)}, got {sev!r}")
        gate = Gate(g["sarif"], sev)
    return VariantResource(
        name=d["metadata"]["name"], bakeoff=bname, workload=workload, change=change, gate=gate, index=index
    )


def _document(d: Any, i: int, origin: str) -> tuple[_Doc, str, str]:
    """What every document must have (a mapping, apiVersion, kind, metadata.name): its messages, kind and name."""
    kind = d.get("kind") if isinstance(d, dict) else None
    meta = d.get("metadata") if isinstance(d, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    doc = _Doc(origin, i, kind, name)
    if not isinstance(d, dict):
        raise doc.error("", "must be a mapping with apiVersion, kind, metadata and spec")
    for key in d:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            raise doc.error(key, "is not a known field (known: apiVersion, kind, metadata, spec, status)")
    if d.get("apiVersion") != API_VERSION:
        raise doc.error("apiVersion", f"must be {API_VERSION!r}, got {d.get('apiVersion')!r}")
    if kind not in ("Bakeoff", "Variant"):
        raise doc.error("kind", f"must be Bakeoff or Variant, got {kind!r}")
    if not isinstance(meta, dict):
        raise doc.error("metadata", "is required, with a name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise doc.error(
            "metadata.name", f"must be lower-case letters, digits, '-', '_' or '.', at most 63 long; got {name!r}"
        )
    return doc, kind, name


def _check_variant(origin: str, v: VariantResource, b: BakeoffResource) -> None:
    """A Variant against its Bakeoff: it names it, and does not take the mainline's name."""
    doc = _Doc(origin, v.index, "Variant", v.name)
    if v.bakeoff != b.name:
        raise doc.error("spec.bakeoff", f"names {v.bakeoff!r}, but the file's Bakeoff is {b.name!r}")
    if v.name == b.mainline_name:
        raise doc.error("metadata.name", f"{v.name!r} is the mainline's name; pick another")


def parse_variant(d: Any, bakeoff: BakeoffResource, origin: str, platform: str = "local") -> VariantResource:
    """One Variant of a Bakeoff parsed before, with the checks and messages parse_documents gives it
    as the document after its Bakeoff (document 1), without validating the Bakeoff again.

    The Kubernetes controller parses a Bakeoff's spec once per pass and each of its Variants with this.
    """
    d = copy.deepcopy(d)
    doc, kind, _name = _document(d, 1, origin)
    if kind != "Variant":
        raise doc.error("kind", f"must be Variant, got {kind!r}")
    v = _variant(doc, d, 1, platform)
    _check_variant(origin, v, bakeoff)
    return v


def parse_documents(docs: list[Any], origin: str, platform: str = "local", need_variants: bool = True) -> Resources:
    """Validate the documents of one file; raise ResourceError naming document and field.

    ``platform`` is ``local`` (``bakeoff run``: commands and URLs) or
    ``kubernetes`` (the controller: a mainline Deployment, candidate images).
    """
    bakeoffs: list[BakeoffResource] = []
    variants: list[VariantResource] = []
    names: dict[str, int] = {}
    for i, d in enumerate(docs):
        if d is None:
            continue
        doc, kind, name = _document(d, i, origin)
        if kind == "Bakeoff":
            bakeoffs.append(_bakeoff(doc, d, origin, platform))
        else:
            if name in names:
                raise doc.error("metadata.name", f"{name!r} is already used by document {names[name]}")
            names[name] = i
            variants.append(_variant(doc, d, i, platform))
    if not bakeoffs:
        raise ResourceError(f"{origin}: no Bakeoff document (kind: Bakeoff) in the file")
    if len(bakeoffs) > 1:
        raise ResourceError(f"{origin}: {len(bakeoffs)} Bakeoff documents; a file runs one bake-off")
    b = bakeoffs[0]
    for v in variants:
        _check_variant(origin, v, b)
    if not variants and need_variants:
        raise ResourceError(f"{origin}: no Variant documents: a bake-off needs at least one candidate")
    # Bonferroni over every candidate in the file, fixed from the start.
    k = max(len(variants), b.judge.candidates or 0)
    b = replace(b, judge=replace(b.judge, candidates=k))
    return Resources(origin=origin, bakeoff=b, variants=tuple(variants))


def load_resources(path: str | Path) -> Resources:
    docs = read_yaml_documents(path, ResourceError)
    return parse_documents(docs, Path(path).name)
