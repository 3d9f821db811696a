"""What one controller pass works on: the Bakeoff as read, and the pass context the units share.

The controller is composed of small units (operator.py builds them): the API
clients (:class:`Clients`), a reader (read.py), a status writer (status.py),
an Event recorder (events.py) and a converger (converge.py), around the loop
and the decision (operator.py). Within one Bakeoff's pass they share one
:class:`Pass` instead of long parameter lists; the Bakeoff's spec is parsed
once per read (:meth:`BakeoffView.spec`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bakeoff.controller.kube.metrics import ControllerMetrics
from bakeoff.controller.reconcile import ControllerState
from bakeoff.controller.resources import BakeoffResource, ResourceError, Resources, VariantResource, parse_documents
from bakeoff.judge.core import JudgeState
from bakeoff.judge.verdict import Verdict


class Conflict(Exception):
    """A write lost a race (409); the pass is redone on a fresh read."""


class NotLeading(Exception):
    """The Lease was lost mid-pass: stop acting at once (the new leader redoes the pass)."""


@dataclass(frozen=True)
class Lease:
    """Leader election (leader.py): the Lease object and its timing, in seconds."""

    name: str = "bakeoff-controller"
    namespace: str = "default"
    duration: float = 15.0
    renew_deadline: float = 10.0  # shorter than duration: a leader that cannot renew by then steps down


@dataclass(frozen=True)
class Settings:
    """How a KubeController runs (``bakeoff controller``'s flags; the tests' choices)."""

    namespace: str | None = None  # the namespace whose Bakeoffs it runs; None: every namespace
    identity: str | None = None  # in the Lease and the Events; None: a generated one
    interval: float = 0.5  # seconds between passes while a Bakeoff is active
    lease: Lease | None = Lease()  # None: no leader election (this replica always acts)
    snapshot_timeout: float = 5.0  # per router snapshot of a look
    deletion_drain: float = 5.0  # how long a deleted Variant's traffic drains before its Deployment goes
    watch: bool = True  # list+watch caches while run() runs (False: every pass lists)
    resync_period: float = 300.0  # a full pass at least this often even when nothing changed


@dataclass
class Clients:
    """The API clients and settings every unit of the controller uses (made by KubeController)."""

    api: Any
    custom: Any
    apps: Any
    core: Any
    discovery: Any
    namespace: str | None
    identity: str
    metrics: ControllerMetrics
    clock: Callable[[], float]

    @classmethod
    def connect(
        cls,
        api: Any,
        *,
        namespace: str | None,
        identity: str,
        metrics: ControllerMetrics,
        clock: Callable[[], float],
    ) -> Clients:
        from kubernetes import client

        return cls(
            api,
            client.CustomObjectsApi(api),
            client.AppsV1Api(api),
            client.CoreV1Api(api),
            client.DiscoveryV1Api(api),
            namespace,
            identity,
            metrics,
            clock,
        )

    def to_dict(self, obj: Any) -> Any:
        return self.api.sanitize_for_serialization(obj)


@dataclass
class JudgeMemory:
    """What a leader keeps between passes for one Bakeoff (rebuilt after a restart)."""

    state: JudgeState
    config_key: str
    last_look: float = 0.0
    verdict: Verdict | None = None
    loaded: bool = False
    note: str = ""  # why the last look decided nothing (no routers, source error)
    saved_at: float = -1e18  # when the state was last saved to its ConfigMap
    resource_meter: Any = None  # bakeoff.judge.sources.resources.ResourceMeter once cost is judged


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
    judge_loaded: bool = True  # False: judge_configmap was not read (read it when the judge state is needed)
    _spec: Resources | str | None = field(default=None, repr=False)  # parsed spec, or why it is invalid

    def commits(self) -> dict[str, str | None]:
        """Each Variant's spec.change.commit by name (None when it gives none)."""
        return {v["metadata"]["name"]: ((v.get("spec") or {}).get("change") or {}).get("commit") for v in self.variants}

    def spec(self) -> Resources:
        """The Bakeoff's spec, validated once per read (the look and the reconcile share it).

        Raises ResourceError (naming the document and field) when the spec is invalid.
        """
        if self._spec is None:
            try:
                self._spec = parse_documents(
                    [copy.deepcopy(self.obj)], "cluster", platform="kubernetes", need_variants=False
                )
            except ResourceError as e:
                self._spec = str(e)
        if isinstance(self._spec, str):
            raise ResourceError(self._spec)
        return self._spec


@dataclass
class Pass:
    """One Bakeoff in one pass: what was read, the record being built and what was decided."""

    view: BakeoffView
    now: float
    res: Resources
    status: dict[str, Any]  # a copy of the status as read, updated as the pass goes
    record: dict[str, dict[str, Any]] = field(default_factory=dict)  # status.variants being built
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)  # Variants that parse, by name
    parsed: dict[str, VariantResource] = field(default_factory=dict)  # their specs as parsed (once per pass)
    variant_conds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    mainline: dict[str, Any] | None = None
    port: int | None = None
    mainline_error: str | None = None
    ready: set[str] = field(default_factory=set)
    state: ControllerState | None = None  # the decision state after reconcile
    verdict: Verdict | None = None
    mem: JudgeMemory | None = None
    handed_over: bool = False

    @property
    def obj(self) -> dict[str, Any]:
        return self.view.obj

    @property
    def bres(self) -> BakeoffResource:
        return self.res.bakeoff

    @property
    def ns(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def mname(self) -> str:
        return self.res.bakeoff.mainline_name

    @property
    def gen(self) -> int | None:
        g = self.obj["metadata"].get("generation")
        return int(g) if g is not None else None

    @property
    def decided(self) -> ControllerState:
        assert self.state is not None, "reconcile ran before the state is used"
        return self.state
