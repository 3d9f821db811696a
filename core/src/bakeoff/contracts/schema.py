"""The fields of the Bakeoff and Variant resources, defined once (pydantic v2 models).

Each model is the wire shape of one part of a resource (camelCase keys, as in
YAML and in the cluster).  Three things are derived from them:

- the CRDs' ``openAPIV3Schema`` (``crd_schema``; ``scripts/gen-crds.py`` writes
  charts/bakeoff/crds/*.yaml from it and a small overlay, docs/crds.md);
- the known-field lists and defaults of ``bakeoff run``'s reader
  (bakeoff.controller.resources) and of the judge's config reader
  (bakeoff.judge.config), whose hand-written checks keep their messages that
  name the file, the document and the field;
- ``tests/contracts/test_schema.py``, which fails when the chart's CRDs and
  these models disagree.

What only the API server checks (CEL rules, list-map keys, a ``nullable``) is
kept here too, in ``json_schema_extra``, so the generated file is all the API
server gets.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from bakeoff.contracts.resources import DEFAULT_STICKY_HEADER, HEADER_PATTERN, NAME_PATTERN
from bakeoff.contracts.snapshot import MAX_ROUTES, OTHER_ROUTE

SarifLevel = Literal["none", "note", "warning", "error"]  # ascending severity
# auto: promote the candidate the judge finds better on the objective; manual: the same after an
# approval; whenNoRegression: promote a candidate within tolerance on every guardrail (a canary).
PromotionMode = Literal["auto", "manual", "whenNoRegression"]
SARIF_LEVELS: tuple[str, ...] = get_args(SarifLevel)
PROMOTION_MODES: tuple[str, ...] = get_args(PromotionMode)
# spec.load.requests[].method, in any case (get or GET): the one rule of bakeoff run's reader and the CRD.
HTTP_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_METHODS_TEXT = ", ".join(HTTP_METHODS)


def _http_method(value: str) -> str:
    if value.upper() not in HTTP_METHODS:
        raise ValueError(f"must be one of {_METHODS_TEXT} (in any case), got {value!r}")
    return value.upper()


HttpMethod = Annotated[
    str,
    AfterValidator(_http_method),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 16,
            "x-kubernetes-validations": [
                {
                    "rule": "self.upperAscii() in [" + ", ".join(f"'{m}'" for m in HTTP_METHODS) + "]",
                    "message": f"must be one of {_METHODS_TEXT} (in any case)",
                    "messageExpression": f"'must be one of {_METHODS_TEXT} (in any case), got \\'' + self + '\\''",
                    "reason": "FieldValueForbidden",  # the message names the value; Invalid would repeat it
                }
            ],
        }
    ),
]
DEFAULT_STEPS = (0.05, 0.1, 0.2)

_DURATION_RULE = (
    "type(self) == int ? self > 0 : (self.matches('^(([0-9]+([.][0-9]+)?h)?([0-9]+([.][0-9]+)?m)?"
    "([0-9]+([.][0-9]+)?s)?([0-9]+([.][0-9]+)?ms)?|[0-9]+([.][0-9]+)?)$') && self.matches('[1-9]'))"
)
# A duration (the grammar of bakeoff.common.durations): "500ms", "90s", "1m30s", "2h" or seconds.
Duration = Annotated[
    str | float,
    WithJsonSchema(
        {
            "description": "A duration such as 500ms, 90s, 1m30s, 2h, or a number of seconds.",
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": _DURATION_RULE,
                    "message": "must be a duration like 500ms, 90s, 1m30s or 2h, or a positive number of seconds",
                    # the API server prints a rule's failure as `Invalid value: "<schema type>"`, which is ""
                    # for an int-or-string: reason Forbidden leaves that out, and the message names the value
                    "reason": "FieldValueForbidden",
                    "messageExpression": (
                        "'must be a duration like 500ms, 90s, 1m30s or 2h, or a positive number of seconds, got ' + "
                        "(type(self) == int ? string(self) : '\\'' + self + '\\'')"
                    ),
                }
            ],
        }
    ),
]
# host:port, or a bare port on 127.0.0.1 (the rule of bakeoff run's reader, bakeoff.controller.resources).
HOST_PORT_EXPECTED = "must be host:port such as 127.0.0.1:8080, or a port number (port 0 picks a free one)"
HOST_PORT_PATTERN = r"^([^\s:]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}$"  # and the port at most 65535
HostPort = Annotated[
    str | int,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? (self >= 0 && self <= 65535) : "
                    "(self.matches('" + HOST_PORT_PATTERN.replace("\\", "\\\\") + "') && "
                    "int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)",
                    "message": HOST_PORT_EXPECTED,
                    # as for a duration: Invalid would print `Invalid value: ""` (the schema type of an
                    # int-or-string); Forbidden leaves that out and the message names the value
                    "reason": "FieldValueForbidden",
                    "messageExpression": f"'{HOST_PORT_EXPECTED}, got ' + "
                    "(type(self) == int ? string(self) : '\\'' + self + '\\'')",
                }
            ],
        }
    ),
]
# Free-form JSON the API server keeps as it is.
AnyJSON = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]


def _cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations``: (rule, message[, fieldPath]) each."""
    out = []
    for r in rules:
        item = {"rule": r[0], "message": r[1]}
        if len(r) > 2:
            item["fieldPath"] = r[2]
        out.append(item)
    return {"x-kubernetes-validations": out}


class _Model(BaseModel):
    # defer_build: the readers use only the fields; the validators are built when the CRDs are generated.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    @classmethod
    def keys(cls) -> frozenset[str]:
        """The field names as they are written in a document."""
        return frozenset(f.alias or name for name, f in cls.model_fields.items())


# ---------------------------------------------------------------- workloads


class Workload(_Model):  # how to run a variant locally (bakeoff run): a command or the url of a running service
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        description='Local mode. The command; "{port}" in any argument becomes a free port.',
        min_length=1,
        max_length=256,
    )
    url: str | None = Field(
        None,
        description="Local mode. An already running service, http://host:port.",
        max_length=2048,
        pattern=r"^http://[^/\s]+(:[0-9]+)?/?$",
    )
    health_path: str = Field(
        "/healthz", description="Must answer 200 before any traffic.", max_length=2048, pattern="^/"
    )
    start_timeout: Duration | None = None
    env: dict[str, str] | None = Field(
        None,
        description="Local mode. Extra environment variables.",
        json_schema_extra={"maxProperties": 256},
    )
    working_dir: str | None = Field(None, description="Local mode. Relative to the file's directory.", max_length=4096)
    protocol: Literal["http1", "h2c"] = Field(
        "http1",
        description="Local mode. How the router speaks to it: http1, or h2c (cleartext HTTP/2, as gRPC servers"
        " speak; its health check is then a TCP connect). In a cluster the Service port's appProtocol decides.",
    )


class Mainline(Workload):
    model_config = ConfigDict(
        title="mainline",
        json_schema_extra={
            "description": "The control. In a cluster a Deployment (deployment); locally a command (with {port})"
            " or the url of a running service. Exactly one.",
            **_cel(
                (
                    "[has(self.deployment), has(self.command), has(self.url)].filter(x, x).size() == 1",
                    "needs exactly one of deployment, command or url",
                )
            ),
        },
    )

    name: str = Field(
        "mainline",
        description="The mainline's variant name in routes and verdicts.",
        max_length=63,
        pattern=NAME_PATTERN,
    )
    deployment: str | None = Field(
        None,
        description="Name of the mainline Deployment in the Bakeoff's namespace (cluster).",
        max_length=253,
        pattern="^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    )
    port: int | None = Field(
        None,
        description="Cluster. The port the service listens on in its pods (default: the first containerPort of"
        " the pod template's first container, else 8080).",
        ge=1,
        le=65535,
    )
    container: str | None = Field(
        None, description="Cluster. The container whose image a Variant replaces (default: the first).", max_length=63
    )


class Change(_Model):
    model_config = ConfigDict(
        json_schema_extra={"description": "Where the build came from, so every figure is attributable to a change."}
    )

    commit: str | None = Field(None, max_length=1024)
    repository: str | None = Field(None, max_length=1024)
    author: str | None = Field(None, max_length=1024)
    generator: str | None = Field(None, max_length=1024, description="e.g. the model that wrote the change")
    message: str | None = Field(None, max_length=65536)


class Gate(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Pre-traffic risk evidence; findings above maxSeverity keep the variant from traffic."
        }
    )

    sarif: str = Field(description="Path (or reference) of a SARIF report.", min_length=1, max_length=4096)
    max_severity: SarifLevel = "warning"


class VariantSpec(Workload):  # Variant.spec
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "has(self.image) || has(self.command) || has(self.url)",
                "needs one of image (cluster), command or url (local)",
            ),
            ("!(has(self.command) && has(self.url))", "command and url exclude each other"),
        )
    )

    bakeoff: str = Field(
        description="The name of the Bakeoff (same namespace) this variant enters.",
        min_length=1,
        max_length=253,
        pattern="^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
    )
    image: str | None = Field(
        None,
        description="Cluster. The container image; the mainline Deployment's pod template with this image.",
        min_length=1,
        max_length=4096,
    )
    replicas: int | None = Field(
        None, description="Cluster. Pods of the candidate's Deployment while it serves (default 1).", ge=1, le=1000
    )
    change: Change | None = None
    gate: Gate | None = None


# ---------------------------------------------------------------- routing


class Stickiness(_Model):
    header: str | None = Field(None, max_length=256, pattern=HEADER_PATTERN)
    cookie: str | None = Field(None, max_length=256, pattern=HEADER_PATTERN)


class RouteModel(_Model):  # one entry of spec.routing.routes (bakeoff.contracts.resources.Route)
    name: str = Field(
        max_length=63,
        pattern=NAME_PATTERN,
        json_schema_extra=_cel(
            (f"self != '{OTHER_ROUTE}'", f"'{OTHER_ROUTE}' is reserved for requests no route matches")
        ),
    )
    match: str = Field(min_length=1, max_length=1024)


class Routing(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "default": {},
            **_cel(
                (
                    "(!has(self.mainlineFloor) && !has(self.maxStep))"
                    " || (has(self.allocation) && self.allocation == 'adaptive')",
                    "mainlineFloor and maxStep apply only to allocation: adaptive",
                )
            ),
        }
    )

    stickiness: Stickiness | None = Field(
        default_factory=lambda: Stickiness.model_construct(header=DEFAULT_STICKY_HEADER),
        description="{header: NAME} or {cookie: NAME}; null for none.",
        json_schema_extra={
            "default": {"header": DEFAULT_STICKY_HEADER},  # as written in a document (no "cookie": null)
            "nullable": True,
            "minProperties": 1,
            "maxProperties": 1,
        },
    )
    max_candidate_share: float = Field(
        0.5,
        description="All candidates together never get more than this share, in (0, 1].",
        ge=0,
        le=1,
        json_schema_extra=_cel(("self > 0.0 && self <= 1.0", "must be above 0 and at most 1")),
    )
    steps: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        list(DEFAULT_STEPS),
        description="A candidate's share, step by step; strictly increasing, each in (0, 1].",
        min_length=1,
        max_length=32,
        json_schema_extra=_cel(
            (
                "self.isSorted() && self.all(x, self.exists_one(y, y == x))",
                "must be strictly increasing, e.g. [0.05, 0.1, 0.2]",
            )
        ),
    )
    step_interval: Duration = Field("60s", description="Minimum time on a step before the next.")
    no_data_timeout: Duration | None = Field(
        None,
        description="A candidate whose judged request count does not grow for this long (no router data, or no"
        " request reaches it) is rolled back; until then missing evidence holds the ramp.",
    )
    routes: list[RouteModel] | None = Field(
        None,
        description="Per-route statistics: each request counts under the first route whose match (a glob on the"
        " path before '?', '*' matches any characters including '/') fits it; the rest under the reserved route"
        f" '{OTHER_ROUTE}'.",
        max_length=MAX_ROUTES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    allocation: Literal["fixed", "adaptive", "bandit"] = Field(
        "fixed",
        description="fixed (the ramp of steps) or adaptive (shares move toward the candidates that can still win"
        " and away from those that cannot; docs/judge.md). bandit is the old name of adaptive and is refused.",
        json_schema_extra={
            "maxLength": 16,
            **_cel(("self != 'bandit'", "bandit is now called adaptive: use allocation: adaptive")),
        },
    )
    mainline_floor: float = Field(
        0.5,
        description="allocation: adaptive. The mainline's least share, in [0, 1): the control needs data.",
        ge=0,
        lt=1,
        # no default in the CRD: the API server would write it into every Bakeoff, and the rule above
        # ("only with allocation: adaptive") would then refuse every fixed-split Bakeoff
        json_schema_extra={"default": None},
    )
    max_step: float = Field(
        0.1,
        description="allocation: adaptive. The most a candidate's share moves per stepInterval, in (0, 1].",
        gt=0,
        le=1,
        # no default in the CRD: the API server would write it into every Bakeoff, and the rule above
        # ("only with allocation: adaptive") would then refuse every fixed-split Bakeoff
        json_schema_extra={"default": None},
    )


# ---------------------------------------------------------------- the judge

_BUILTIN = (
    "(self.metric == 'error_rate' || self.metric.startsWith('latency_p') || self.metric == 'cpu_per_request'"
    " || self.metric == 'memory')"
)
_METRIC_RULES: tuple[tuple[str, str, str], ...] = (
    (f"!{_BUILTIN} || !has(self.kind)", "kind must be omitted for built-in metrics", ".kind"),
    (
        "!has(self.per) || self.per == 'request' || (has(self.kind) && self.kind == 'mean')",
        "per: value applies only to kind: mean",
        ".per",
    ),
)


class Guardrail(_Model):  # spec.judge.guardrails[i]: a metric a candidate must not worsen beyond its tolerance
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "[has(self.maxIncrease), has(self.maxIncreaseRatio), has(self.maxDecrease), has(self.maxDecreaseRatio)]"
                ".filter(x, x).size() == 1",
                "needs exactly one of maxIncrease, maxIncreaseRatio, maxDecrease, maxDecreaseRatio",
            ),
            (
                "!self.metric.startsWith('latency_p') || !has(self.maxIncrease)",
                "latency tolerances are relative; use maxIncreaseRatio",
                ".maxIncrease",
            ),
            (
                f"!{_BUILTIN} || !(has(self.maxDecrease) || has(self.maxDecreaseRatio))",
                "error_rate, latency, cpu_per_request and memory are guarded against increases; use maxIncrease or"
                " maxIncreaseRatio",
            ),
            *_METRIC_RULES,
        )
    )

    metric: str = Field(
        description="error_rate, latency_pNN (e.g. latency_p99), cpu_per_request, memory or a business metric.",
        min_length=1,
        max_length=128,
        pattern="^[A-Za-z_][A-Za-z0-9_.:-]*$",
    )
    kind: Literal["proportion", "mean"] | None = Field(None, description="For business metrics.")
    per: Literal["request", "value"] | None = None
    effect_size: float | None = Field(None, gt=0, le=10)
    alpha_weight: float | None = Field(
        None, description="Share of the candidate's alpha (weighted Bonferroni), before normalising.", gt=0, le=1000
    )
    max_increase: float | None = Field(None, ge=0, description="Absolute tolerance.")
    max_increase_ratio: float | None = Field(None, ge=0, description="Relative tolerance (0.1 = +10%).")
    max_decrease: float | None = Field(None, ge=0)
    max_decrease_ratio: float | None = Field(None, ge=0)


class Objective(Guardrail):  # spec.judge.objective: the metric a bake-off promotes on (tolerances are refused)
    model_config = ConfigDict(
        json_schema_extra={
            "description": "The business metric the bake-off promotes on, and its direction.",
            **_cel(
                (
                    "!has(self.maxIncrease) && !has(self.maxIncreaseRatio) && !has(self.maxDecrease)"
                    " && !has(self.maxDecreaseRatio)",
                    "the objective has a direction, not a tolerance",
                ),
                (
                    f"has(self.direction) || {_BUILTIN[1:-1]}",
                    "direction (higher or lower) is required",
                    ".direction",
                ),
                *_METRIC_RULES,
            ),
        }
    )

    direction: Literal["higher", "lower"] | None = None


class ResourceQueries(_Model):  # spec.judge.resources: where a cluster's resource cost comes from
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Where cpu_per_request and memory come from in a cluster: PromQL over cAdvisor's series "
            "(docs/judge.md#resource-cost). Locally, bakeoff run samples each variant's process tree instead."
        }
    )

    prometheus: str | None = Field(
        None,
        description="prometheus+http(s)://host:9090 that scrapes cAdvisor (default: spec.judge.source when it is a "
        "Prometheus).",
        max_length=4096,
    )
    cpu_query: str | None = Field(
        None,
        description="PromQL giving the variant's cumulative CPU seconds; $namespace, $variant, $bakeoff are "
        "substituted.",
        max_length=4096,
    )
    memory_query: str | None = Field(
        None,
        description="PromQL giving the variant's resident memory (working set) in bytes; same placeholders.",
        max_length=4096,
    )


class Judge(_Model):  # spec.judge
    model_config = ConfigDict(
        json_schema_extra={
            "description": "The judge config of docs/judge.md.",
            "required": ["objective"],
            **_cel(
                (
                    "!has(self.maxSamples) || !has(self.minSamples) || self.maxSamples >= self.minSamples",
                    "maxSamples must be at least minSamples",
                    ".maxSamples",
                ),
                (
                    "!has(self.guardrails) || self.guardrails.all(g, self.guardrails.exists_one(h, h.metric == g.metric))",
                    "guardrails must not list a metric twice",
                    ".guardrails",
                ),
            ),
        }
    )

    alpha: float = Field(0.05, description="Family-wise false-alarm rate, in (0, 1).", gt=0, lt=1)
    control: str | None = Field(None, description="Always the mainline's name; may be omitted.", max_length=63)
    min_samples: int = Field(500, description="Requests per variant before any decision.", ge=1)
    max_samples: int | None = Field(None, ge=1)
    max_duration: Duration | None = None
    warmup: Duration | None = Field(
        None,
        description="A candidate's requests in its first this-long after its first judged look are not"
        " judged (cold caches, JIT, connection pools); absent: judged from the first request.",
    )
    interval: Duration = Field("1s", description="How often the judge looks.")
    candidates: int | None = Field(None, description="The Bonferroni split (default, the number of Variants).", ge=1)
    source: str | None = Field(
        None,
        description="Metric source (router snapshots or prometheus+http://...); ignored locally.",
        max_length=4096,
    )
    guardrails: list[Guardrail] | None = Field(None, max_length=16)
    objective: Objective | None = None
    resources: ResourceQueries | None = None


# ---------------------------------------------------------------- the rest of a Bakeoff


class Promotion(_Model):
    model_config = ConfigDict(json_schema_extra={"default": {}})

    mode: PromotionMode = Field(
        "auto",
        description="auto; manual (a winner waits for approval; phase AwaitingApproval); whenNoRegression"
        " (promote a candidate within tolerance on every guardrail, a canary).",
    )
    tie_break: str | None = Field(
        None,
        description="A judged metric (a guardrail or the objective, e.g. latency_p50) whose estimate picks the"
        " winner when several candidates are promotable at once (whenNoRegression); default the objective.",
        min_length=1,
        max_length=128,
        pattern="^[A-Za-z_][A-Za-z0-9_.:-]*$",
    )


class Router(_Model):
    model_config = ConfigDict(
        json_schema_extra={"description": "Local mode. The in-process router's addresses (port 0 picks a free port)."}
    )

    listen: HostPort | None = None  # bakeoff run: 127.0.0.1:8080
    admin: HostPort | None = None  # bakeoff run: 127.0.0.1:8081


class LoadRequest(_Model):
    path: str = Field(description="Starts with '/'; a query string may follow.", max_length=4096, pattern="^/")
    method: HttpMethod = "GET"
    weight: float = Field(1.0, gt=0)
    headers: dict[str, str] | None = None
    body: str | None = None
    json_: AnyJSON = Field(None, alias="json", description="A JSON body (sent with Content-Type: application/json).")


class Load(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Local mode. The load bakeoff run drives through its router: exactly one of requests"
            " (the built-in generator), locustfile or shoppers."
        }
    )

    users: int = Field(16, ge=1, le=10000)
    think: Duration = Field("50ms", description="Mean time between one user's requests.")
    requests: list[LoadRequest] | None = Field(None, min_length=1, max_length=256)
    locustfile: str | None = Field(None, min_length=1, max_length=4096)
    shoppers: bool | None = None


NOTIFY_EVENTS = ("admitted", "rolled_back", "promoted", "stopped", "awaiting_approval")
NotifyEvent = Literal["admitted", "rolled_back", "promoted", "stopped", "awaiting_approval"]


class SecretKeyRef(_Model):
    name: str = Field(
        description="A Secret in the Bakeoff's namespace.",
        min_length=1,
        max_length=253,
        pattern="^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    )
    key: str = Field(description="The key in the Secret's data.", min_length=1, max_length=253)


class ValueFrom(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Where a value comes from: secretKeyRef (cluster), or env / file (local). Exactly one.",
            **_cel(
                (
                    "[has(self.secretKeyRef), has(self.env), has(self.file)].filter(x, x).size() == 1",
                    "needs exactly one of secretKeyRef, env or file",
                )
            ),
        }
    )

    secret_key_ref: SecretKeyRef | None = Field(None, description="Cluster. A key of a Secret.")
    env: str | None = Field(
        None,
        description="Local mode. An environment variable of bakeoff run.",
        max_length=256,
        pattern="^[A-Za-z_][A-Za-z0-9_]*$",
    )
    file: str | None = Field(
        None,
        description="Local mode. A file (relative to the resource file's directory).",
        min_length=1,
        max_length=4096,
    )


class Webhook(_Model):  # spec.notify[i]
    model_config = ConfigDict(
        json_schema_extra={
            "description": "A webhook posted on the bake-off's decisions (docs/resources.md, Notifications).",
            **_cel(
                ("[has(self.url), has(self.urlFrom)].filter(x, x).size() == 1", "needs exactly one of url or urlFrom")
            ),
        }
    )

    url: str | None = Field(
        None,
        description="The webhook's http:// or https:// URL (or urlFrom).",
        max_length=4096,
        pattern="^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/]+",
    )
    url_from: ValueFrom | None = Field(None, description="The URL from a Secret (cluster), a variable or a file.")
    key_from: ValueFrom | None = Field(
        None,
        description="The HMAC-SHA256 signing key (Bakeoff-Signature header): a Secret's key (cluster), a variable"
        " or a file; none: unsigned.",
    )
    format: Literal["json", "slack"] = Field(
        "json", description='json: the signed bakeoff.notification/v1 object; slack: {"text": ...}.'
    )
    events: list[NotifyEvent] | None = Field(
        None,
        description="Which decisions notify (default all): admitted, rolled_back, promoted, stopped, awaiting_approval.",
        min_length=1,
        max_length=5,
    )
    timeout_seconds: float = Field(
        5.0, description="One attempt's limit in seconds; a hanging endpoint is abandoned after it.", gt=0, le=600
    )
    retries: int = Field(
        5, description="Retries with exponential backoff (0.5 s, doubling) before giving up.", ge=0, le=20
    )


class BakeoffSpec(_Model):  # Bakeoff.spec
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.promotion) || !has(self.promotion.tieBreak)"
                " || (has(self.judge.guardrails) && self.judge.guardrails.exists(g, g.metric == self.promotion.tieBreak))"
                " || (has(self.judge.objective) && self.judge.objective.metric == self.promotion.tieBreak)",
                "promotion.tieBreak must name a metric the judge measures (a guardrail or the objective)",
                ".promotion.tieBreak",
            )
        )
    )
    mainline: Mainline
    routing: Routing = Field(default_factory=lambda: Routing.model_construct())
    judge: Judge
    promotion: Promotion = Field(default_factory=lambda: Promotion.model_construct())
    router: Router | None = None
    load: Load | None = None
    notify: list[Webhook] | None = Field(None, max_length=16)


# ---------------------------------------------------------------- the CRDs' schema


def crd_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The Kubernetes structural schema (OpenAPI v3.0) of a model: pydantic's JSON Schema with
    references inlined, ``null`` alternatives dropped, titles removed and the draft-2020
    ``exclusiveMinimum: n`` turned into OpenAPI's ``minimum: n, exclusiveMinimum: true``."""
    js = model.model_json_schema(by_alias=True, mode="validation")
    defs = js.pop("$defs", {})
    return _k8s(js, defs)


_DROP = {"title", "additionalProperties"}


def _k8s(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_k8s(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        target.update(node)  # the field's own description, default, ...
        node = target
    if "anyOf" in node:
        alts = [a for a in node.pop("anyOf") if a.get("type") != "null"]
        if len(alts) != 1:
            raise ValueError(f"cannot express anyOf {alts} in a structural schema")
        node = {**alts[0], **node}
        if "$ref" in node:
            return _k8s(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "default" and value is None:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("properties",):
            out[key] = {k: _k8s(v, defs) for k, v in value.items()}
        elif key in ("default", "enum", "required", "x-kubernetes-list-map-keys", "x-kubernetes-validations"):
            out[key] = value
        else:
            out[key] = _k8s(value, defs)
    if "properties" in out or out.get("additionalProperties") is not None:
        out.setdefault("type", "object")
    if out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("type", None)
    first = ("type", "description", "required", "default")  # the order a reader of the YAML looks in
    return {**{k: out[k] for k in first if k in out}, **{k: v for k, v in out.items() if k not in first}}


# ---------------------------------------------------------------- what the readers take from the models


def default(model: type[BaseModel], name: str) -> Any:
    """A field's default as written in a document (a duration stays a string such as "60s")."""
    value = model.model_fields[name].default
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


def constraint(model: type[BaseModel], name: str, kind: str) -> Any:
    """One constraint of a field as the model declares it: ``le``, ``gt``, ``pattern``, ``max_length``..."""
    for m in model.model_fields[name].metadata:
        if getattr(m, kind, None) is not None:
            return getattr(m, kind)
    raise ValueError(f"{model.__name__}.{name} declares no {kind}")


def bounds(model: type[BaseModel], name: str) -> tuple[int, int]:
    """The inclusive range (ge, le) of a whole-number field."""
    lo = hi = None
    for m in model.model_fields[name].metadata:
        lo = getattr(m, "ge", lo)
        hi = getattr(m, "le", hi)
    if lo is None or hi is None:
        raise ValueError(f"{model.__name__}.{name} has no inclusive range")
    return lo, hi
