"""Router configuration: the YAML file of ``bakeoff router --config``.

Every field is checked before anything starts; an error names the file and
the field.  The ``variants`` list has the same shape as the body of
``PUT /-/routes``, so one validator serves both.

```yaml
listen: 127.0.0.1:8080          # traffic port
admin: 127.0.0.1:8081           # control plane: routes, snapshot, metrics, health
token: s3cret                   # bearer token for PUT /-/routes; or tokenFile, or $BAKEOFF_ROUTER_TOKEN
eventsToken: ev3nts             # bearer token for POST /-/events only; or eventsTokenFile, or
                                # $BAKEOFF_EVENTS_TOKEN, or --events-token (the admin token works too)
workers: 1                      # processes sharing the traffic port (SO_REUSEPORT)
stickiness: {header: X-User-Id} # or {cookie: uid}; omitted: no stickiness
override: {enabled: false, header: X-Bakeoff-Variant}
exposeVariant: true             # add X-Bakeoff-Variant to responses
timeouts: {connect: 2, read: 30, drain: 10, idle: 75, head: 15}  # head: 408 if a head takes longer
limits: {maxHeaderBytes: 16384, maxIdlePerUpstream: 128}
onClientAbort: cancel           # a client gone before its response: cancel the upstream request
                                # (close its connection, as nginx does), or finish (let it complete,
                                # response discarded; nginx's proxy_ignore_client_abort on)
variants:
  - {name: mainline, upstreams: [127.0.0.1:9001], weight: 80}
  - {name: v2, upstreams: [127.0.0.1:9002], weight: 20, protocol: h2c}  # http1 (default) | h2c (docs/http2.md)
tls: {certFile: cert.pem, keyFile: key.pem}  # optional: TLS on the traffic port, ALPN h2 or http/1.1
http2:                          # limits per HTTP/2 client connection (HTTP/1.1 on the same port is unaffected)
  maxConcurrentStreams: 128     # advertised; a client opening more gets REFUSED_STREAM / PROTOCOL_ERROR
  maxHeaderListBytes: 16384     # decoded header block (HPACK bombs): GOAWAY ENHANCE_YOUR_CALM
  maxResetsPerSecond: 200       # client RST_STREAMs (rapid reset, CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM
routes:                         # optional: statistics per route too (at most 64; first match wins;
  - {name: checkout, match: "/checkout*"}   # * is any characters, / included; the rest: route "other")
  - {name: api, match: "/api/*"}
tracing:                        # optional: OpenTelemetry (docs/observability.md); without it traceparent passes untouched
  endpoint: http://127.0.0.1:4318/v1/traces   # OTLP/HTTP protobuf; or $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
                                # $OTEL_EXPORTER_OTLP_ENDPOINT; none: propagation only (no spans)
  sampleRatio: 0.01             # of requests that start a trace here (a sampled parent is always followed)
  serviceName: bakeoff-router
  bakeoff: shop                 # bakeoff.name on every span
  headers: {signoz-ingestion-key: KEY}        # or $OTEL_EXPORTER_OTLP_HEADERS
  queueSize: 2048               # spans waiting for export; beyond it they are dropped and counted
  batchSize: 512
  exportInterval: 1s
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bakeoff.common.durations import DurationError, parse_duration
from bakeoff.common.yamlfile import read_yaml_documents
from bakeoff.contracts.resources import HEADER_RE, NAME_RE
from bakeoff.contracts.resources import Route as RouteSpec
from bakeoff.contracts.snapshot import MAX_ROUTES, OTHER_ROUTE
from bakeoff.router.tracing import TracingConfig, endpoint_from_env, headers_from_env

# What happens to the upstream request of a client that leaves before its
# response is complete: "cancel" closes the upstream connection, "finish"
# lets the upstream complete it and discards the response.  Either way the
# request counts as aborted.
CLIENT_ABORT_MODES = ("cancel", "finish")
# How the router speaks to a variant's upstreams: HTTP/1.1, or HTTP/2 over cleartext (gRPC).
PROTOCOLS = ("http1", "h2c")


class ConfigError(ValueError):
    """A configuration or routes document is invalid; the message names the field."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    upstreams: tuple[tuple[str, int], ...]
    weight: float
    protocol: str = "http1"  # see PROTOCOLS
    version: str | None = None  # the variant's commit: service.version on its spans


@dataclass(frozen=True)
class RouterConfig:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin: tuple[str, int] = ("127.0.0.1", 8081)
    token: str | None = None
    events_token: str | None = None
    workers: int = 1
    sticky_header: str | None = None
    sticky_cookie: str | None = None
    override_enabled: bool = False
    override_header: str = "X-Bakeoff-Variant"
    expose_variant: bool = True
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    drain_timeout: float = 10.0
    idle_timeout: float = 75.0
    head_timeout: float = 15.0
    max_header_bytes: int = 16384
    max_idle_per_upstream: int = 128
    on_client_abort: str = "cancel"  # or "finish"; see CLIENT_ABORT_MODES
    tls_cert: str | None = None
    tls_key: str | None = None
    h2_max_concurrent_streams: int = 128
    h2_max_header_list_bytes: int = 16384
    h2_max_resets_per_second: int = 200
    variants: tuple[VariantSpec, ...] = field(default_factory=tuple)
    routes: tuple[RouteSpec, ...] = field(default_factory=tuple)
    tracing: TracingConfig | None = None  # None: no tracing block (traceparent passes through untouched)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> RouterConfig:
        docs = read_yaml_documents(Path(path), ConfigError)
        if len(docs) > 1:
            raise ConfigError(f"{path}: expected one document, found {len(docs)}")
        return cls.from_dict(docs[0] if docs else None, origin=str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "router config") -> RouterConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a mapping at the top level")
        known = {
            "listen", "admin", "token", "tokenFile", "eventsToken", "eventsTokenFile", "workers", "stickiness", "override",
            "exposeVariant", "timeouts", "limits", "variants", "routes", "onClientAbort", "tls", "http2", "tracing",
        }  # fmt: skip
        _no_unknown(data, known, origin, "")
        kw: dict[str, Any] = {}
        if "listen" in data:
            kw["listen"] = parse_address(data["listen"], f"{origin}: listen")
        if "admin" in data:
            kw["admin"] = parse_address(data["admin"], f"{origin}: admin")
        kw["token"] = _secret(data, "token", "BAKEOFF_ROUTER_TOKEN", origin)
        kw["events_token"] = _secret(data, "eventsToken", "BAKEOFF_EVENTS_TOKEN", origin)
        if "workers" in data:
            kw["workers"] = _int(data["workers"], f"{origin}: workers", 1, 64)
        st = data.get("stickiness")
        if st is not None:
            if not isinstance(st, dict) or len(st) != 1 or not ({"header", "cookie"} & st.keys()):
                raise ConfigError(f"{origin}: stickiness must be {{header: NAME}} or {{cookie: NAME}}")
            ((kind, name),) = st.items()
            if not isinstance(name, str) or not HEADER_RE.match(name):
                raise ConfigError(f"{origin}: stickiness.{kind} must be a header or cookie name, got {name!r}")
            kw["sticky_header" if kind == "header" else "sticky_cookie"] = name
        ov = data.get("override")
        if ov is not None:
            if not isinstance(ov, dict):
                raise ConfigError(f"{origin}: override must be a mapping with enabled and header")
            _no_unknown(ov, {"enabled", "header"}, origin, "override.")
            if "enabled" in ov:
                kw["override_enabled"] = _bool(ov["enabled"], f"{origin}: override.enabled")
            if "header" in ov:
                if not isinstance(ov["header"], str) or not HEADER_RE.match(ov["header"]):
                    raise ConfigError(f"{origin}: override.header must be a header name")
                kw["override_header"] = ov["header"]
        if "exposeVariant" in data:
            kw["expose_variant"] = _bool(data["exposeVariant"], f"{origin}: exposeVariant")
        to = data.get("timeouts") or {}
        if not isinstance(to, dict):
            raise ConfigError(f"{origin}: timeouts must be a mapping")
        _no_unknown(to, {"connect", "read", "drain", "idle", "head"}, origin, "timeouts.")
        for key in ("connect", "read", "drain", "idle", "head"):
            if key in to:
                kw[f"{key}_timeout"] = _seconds(to[key], f"{origin}: timeouts.{key}")
        lim = data.get("limits") or {}
        if not isinstance(lim, dict):
            raise ConfigError(f"{origin}: limits must be a mapping")
        _no_unknown(lim, {"maxHeaderBytes", "maxIdlePerUpstream"}, origin, "limits.")
        if "maxHeaderBytes" in lim:
            kw["max_header_bytes"] = _int(lim["maxHeaderBytes"], f"{origin}: limits.maxHeaderBytes", 1024, 1 << 20)
        if "maxIdlePerUpstream" in lim:
            kw["max_idle_per_upstream"] = _int(
                lim["maxIdlePerUpstream"], f"{origin}: limits.maxIdlePerUpstream", 0, 100000
            )
        if "onClientAbort" in data:
            mode = data["onClientAbort"]
            if mode not in CLIENT_ABORT_MODES:
                raise ConfigError(
                    f"{origin}: onClientAbort must be one of {', '.join(CLIENT_ABORT_MODES)}, got {mode!r}"
                )
            kw["on_client_abort"] = mode
        tls = data.get("tls")
        if tls is not None:
            if not isinstance(tls, dict):
                raise ConfigError(f"{origin}: tls must be a mapping with certFile and keyFile")
            _no_unknown(tls, {"certFile", "keyFile"}, origin, "tls.")
            for key, attr in (("certFile", "tls_cert"), ("keyFile", "tls_key")):
                path = tls.get(key)
                if not isinstance(path, str) or not path:
                    raise ConfigError(f"{origin}: tls.{key} must be the path of a PEM file")
                if not os.path.isfile(path):
                    raise ConfigError(f"{origin}: tls.{key}: no such file {path!r}")
                kw[attr] = path
        h2 = data.get("http2") or {}
        if not isinstance(h2, dict):
            raise ConfigError(f"{origin}: http2 must be a mapping")
        h2_keys = {
            "maxConcurrentStreams": ("h2_max_concurrent_streams", 1, 10000),
            "maxHeaderListBytes": ("h2_max_header_list_bytes", 1024, 1 << 20),
            "maxResetsPerSecond": ("h2_max_resets_per_second", 1, 1000000),
        }
        _no_unknown(h2, set(h2_keys), origin, "http2.")
        for key, (attr, lo, hi) in h2_keys.items():
            if key in h2:
                kw[attr] = _int(h2[key], f"{origin}: http2.{key}", lo, hi)
        kw["variants"] = parse_variants(data.get("variants", []), origin)
        kw["routes"] = parse_routes(data.get("routes") or [], origin)
        if data.get("tracing") is not None:
            kw["tracing"] = parse_tracing(data["tracing"], origin)
        return cls(**kw)


def parse_tracing(data: Any, origin: str) -> TracingConfig:
    """The ``tracing`` block; the endpoint and headers default to the OpenTelemetry environment variables."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: tracing must be a mapping (endpoint, sampleRatio, ...)")
    known = {"endpoint", "sampleRatio", "serviceName", "bakeoff", "headers", "queueSize", "batchSize", "exportInterval"}
    _no_unknown(data, known, origin, "tracing.")
    kw: dict[str, Any] = {}
    endpoint = data.get("endpoint", endpoint_from_env())
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"{origin}: tracing.endpoint must be an http:// or https:// URL "
                f"(an OTLP/HTTP traces endpoint such as http://127.0.0.1:4318/v1/traces), got {endpoint!r}"
            )
        kw["endpoint"] = endpoint
    if "sampleRatio" in data:
        ratio = data["sampleRatio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"{origin}: tracing.sampleRatio must be a number from 0 to 1, got {ratio!r}")
        kw["sample_ratio"] = float(ratio)
    for key, attr in (("serviceName", "service_name"), ("bakeoff", "bakeoff")):
        if key in data:
            if not isinstance(data[key], str) or not data[key] or len(data[key]) > 253:
                raise ConfigError(f"{origin}: tracing.{key} must be a non-empty string, got {data[key]!r}")
            kw[attr] = data[key]
    headers = data.get("headers")
    if headers is None:
        kw["headers"] = headers_from_env()
    else:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and HEADER_RE.match(k) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError(f"{origin}: tracing.headers must map header names to strings")
        kw["headers"] = tuple(headers.items())
    if "queueSize" in data:
        kw["queue_size"] = _int(data["queueSize"], f"{origin}: tracing.queueSize", 1, 1 << 20)
    if "batchSize" in data:
        kw["batch_size"] = _int(data["batchSize"], f"{origin}: tracing.batchSize", 1, 1 << 16)
    if "exportInterval" in data:
        kw["export_interval"] = _seconds(data["exportInterval"], f"{origin}: tracing.exportInterval")
        if kw["export_interval"] <= 0:
            raise ConfigError(f"{origin}: tracing.exportInterval must be above 0")
    return TracingConfig(**kw)


def parse_variants(data: Any, origin: str) -> tuple[VariantSpec, ...]:
    """Validate a list of variants (config file or PUT /-/routes body)."""
    if not isinstance(data, list):
        raise ConfigError(f"{origin}: variants must be a list")
    seen: set[str] = set()
    out = []
    for i, v in enumerate(data):
        where = f"{origin}: variants[{i}]"
        if not isinstance(v, dict):
            raise ConfigError(f"{where} must be a mapping with name, upstreams and weight")
        _no_unknown(v, {"name", "upstreams", "weight", "protocol", "version"}, origin, f"variants[{i}].")
        name = v.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(
                f"{where}.name must be lower-case letters, digits, '-', '_' or '.', at most 63 long; got {name!r}"
            )
        if name in seen:
            raise ConfigError(f"{where}.name {name!r} appears twice")
        seen.add(name)
        ups = v.get("upstreams")
        if isinstance(ups, str):
            ups = [ups]
        if not isinstance(ups, list) or not ups:
            raise ConfigError(f"{where}.upstreams must be a non-empty list of host:port")
        addrs = tuple(parse_address(u, f"{where}.upstreams[{j}]") for j, u in enumerate(ups))
        weight = v.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1e9:
            raise ConfigError(f"{where}.weight must be a number >= 0, got {weight!r}")
        protocol = v.get("protocol", "http1")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}.protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        version = v.get("version")
        if version is not None and (not isinstance(version, str) or not version or len(version) > 1024):
            raise ConfigError(f"{where}.version must be a non-empty string (the variant's commit), got {version!r}")
        out.append(VariantSpec(name, addrs, float(weight), protocol=protocol, version=version))
    if out and not any(v.weight > 0 for v in out):
        raise ConfigError(f"{origin}: variants: at least one weight must be above 0")
    return tuple(out)


def parse_routes(data: Any, origin: str, field_name: str = "routes") -> tuple[RouteSpec, ...]:
    """Validate the per-route statistics list (router config, or a Bakeoff's spec.routing.routes)."""
    if not isinstance(data, list):
        raise ConfigError(f"{origin}: {field_name} must be a list of {{name, match}}")
    if len(data) > MAX_ROUTES:
        raise ConfigError(f"{origin}: {field_name} has {len(data)} entries, at most {MAX_ROUTES}")
    seen: set[str] = set()
    out = []
    for i, r in enumerate(data):
        where = f"{origin}: {field_name}[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where} must be a mapping with name and match")
        _no_unknown(r, {"name", "match"}, origin, f"{field_name}[{i}].")
        name, match = r.get("name"), r.get("match")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{where}.name must be lower-case letters, digits, '-', '_' or '.'; got {name!r}")
        if name == OTHER_ROUTE:
            raise ConfigError(f"{where}.name {OTHER_ROUTE!r} is reserved for requests no pattern matches")
        if name in seen:
            raise ConfigError(f"{where}.name {name!r} appears twice")
        seen.add(name)
        if not isinstance(match, str) or not match or any(c in match for c in " \t\r\n?#"):
            raise ConfigError(f"{where}.match must be a path glob such as /checkout*, got {match!r}")
        out.append(RouteSpec(name, match))
    return tuple(out)


def parse_address(value: Any, where: str) -> tuple[str, int]:
    if isinstance(value, int):
        value = f"127.0.0.1:{value}"
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be host:port, got {value!r}")
    s = value.strip()
    for prefix in ("http://",):
        if s.startswith(prefix):
            s = s[len(prefix) :].rstrip("/")
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{where} must be host:port, got {value!r}")
    host = host.strip("[]")
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"{where}: port must be a number, got {port!r}") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"{where}: port {p} is out of range")
    return host, p


def _secret(data: dict[str, Any], key: str, env: str, origin: str) -> str | None:
    """A token given as ``key``, read from ``keyFile`` (which wins), or taken from ``$env``."""
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{origin}: {key} must be a non-empty string")
    if f"{key}File" in data:
        try:
            value = Path(str(data[f"{key}File"])).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{origin}: {key}File: cannot read {data[f'{key}File']}: {e.strerror}") from None
    return value or os.environ.get(env) or None


def _no_unknown(data: dict, known: set[str], origin: str, prefix: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(f"{origin}: unknown field {prefix}{key} (known: {', '.join(sorted(known))})")


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _seconds(value: Any, where: str) -> float:
    try:
        return parse_duration(value, where, maximum=86400)
    except DurationError as e:
        raise ConfigError(str(e)) from None
