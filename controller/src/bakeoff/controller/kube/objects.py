"""The Kubernetes objects the controller writes, built from the ones it reads: pure functions.

No API calls here: a candidate's Deployment is the mainline Deployment's pod
template with the candidate's image and bakeoff's labels; a Service selects
one variant's pods; a promotion is a new template for the mainline plus two
annotations recording the old one.  docs/kubernetes.md describes each.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from bakeoff.contracts.resources import (  # noqa: F401  (re-exported for the operator)
    ANN_APPROVED,
    ANN_PREVIOUS_TEMPLATE,
    ANN_PROMOTION,
    ANN_VARIANT_SPEC,
    API_VERSION,
    FINALIZER,
    LABEL_BAKEOFF,
    LABEL_ROUTER_FOR,
    LABEL_VARIANT,
)

MANAGED_BY = {"app.kubernetes.io/managed-by": "bakeoff"}
DEFAULT_PORT = 8080


class ObjectError(ValueError):
    """The mainline Deployment cannot serve as a template; the message names the field."""


def child_name(bakeoff: str, variant: str) -> str:
    """``{bakeoff}-{variant}`` as a DNS-1035 label (Service names must be one)."""
    raw = f"{bakeoff}-{variant}"
    name = re.sub(r"[^a-z0-9-]", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "v-" + name
    if len(name) > 63 or name != raw:
        # Changed or cut: a hash of the original keeps distinct names distinct (a_b vs a-b).
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = name[:54].rstrip("-") + "-" + digest
    return name


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_reference(obj: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": obj.get("apiVersion", API_VERSION),
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def labels_for(bakeoff: str, variant: str) -> dict[str, str]:
    return {**MANAGED_BY, LABEL_BAKEOFF: _label_value(bakeoff), LABEL_VARIANT: _label_value(variant)}


def _label_value(v: str) -> str:
    # Label values allow [-A-Za-z0-9_.], at most 63; resource names here already fit.
    return v[:63]


def _containers(template: dict[str, Any], where: str) -> list[dict[str, Any]]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise ObjectError(f"{where}: spec.template.spec.containers is empty")
    return containers


def _target_container(template: dict[str, Any], container: str | None, where: str) -> dict[str, Any]:
    containers = _containers(template, where)
    if container is None:
        return containers[0]
    for c in containers:
        if c.get("name") == container:
            return c
    names = ", ".join(str(c.get("name")) for c in containers)
    raise ObjectError(f"{where}: no container named {container!r} (spec.mainline.container; it has: {names})")


def mainline_port(deployment: dict[str, Any], override: int | None, container: str | None = None) -> int:
    """spec.mainline.port, else the target container's first containerPort, else 8080."""
    if override:
        return int(override)
    where = f"Deployment {deployment['metadata']['name']}"
    c = _target_container(deployment["spec"].get("template") or {}, container, where)
    for p in c.get("ports") or []:
        if p.get("containerPort"):
            return int(p["containerPort"])
    return DEFAULT_PORT


def selector_of(deployment: dict[str, Any]) -> dict[str, str]:
    sel = (deployment.get("spec") or {}).get("selector") or {}
    labels = dict(sel.get("matchLabels") or {})
    if not labels:
        raise ObjectError(
            f"Deployment {deployment['metadata']['name']}: spec.selector.matchLabels is empty; "
            "bakeoff needs label selectors to tell the mainline's pods from a candidate's"
        )
    return labels


def candidate_template(
    deployment: dict[str, Any],
    image: str,
    container: str | None,
    bakeoff: str,
    variant: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The mainline's pod template with the candidate's image and labels.

    The mainline selector's keys are dropped from the pod labels so the
    mainline's own Services (and its ReplicaSets) never pick a candidate's
    pods up; the bakeoff labels select them instead.
    """
    where = f"Deployment {deployment['metadata']['name']}"
    tpl = copy.deepcopy(deployment["spec"].get("template") or {})
    meta = tpl.setdefault("metadata", {})
    sel = selector_of(deployment)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in sel}
    labels.update(labels_for(bakeoff, variant))
    meta["labels"] = labels
    meta.pop("name", None)
    c = _target_container(tpl, container, where)
    c["image"] = image
    _set_env(c, env)
    return tpl


def _set_env(container: dict[str, Any], env: dict[str, str] | None) -> None:
    """The Variant's spec.env over the container's own variables (same name: the Variant's wins)."""
    if env:
        existing = [e for e in container.get("env") or [] if e.get("name") not in env]
        container["env"] = existing + [{"name": k, "value": str(v)} for k, v in env.items()]


def spec_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def candidate_deployment(
    mainline: dict[str, Any],
    bakeoff: dict[str, Any],
    variant: dict[str, Any],
    *,
    mainline_name_container: str | None,
    replicas: int,
    progress_deadline: int | None,
) -> dict[str, Any]:
    bname, vname = bakeoff["metadata"]["name"], variant["metadata"]["name"]
    vspec = variant.get("spec") or {}
    tpl = candidate_template(mainline, vspec["image"], mainline_name_container, bname, vname, vspec.get("env"))
    name = child_name(bname, vname)
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {LABEL_BAKEOFF: _label_value(bname), LABEL_VARIANT: _label_value(vname)}},
        "template": tpl,
    }
    if progress_deadline:
        spec["progressDeadlineSeconds"] = int(progress_deadline)
    for key in ("strategy", "minReadySeconds", "revisionHistoryLimit"):
        if key in mainline["spec"]:
            spec[key] = copy.deepcopy(mainline["spec"][key])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": variant["metadata"]["namespace"],
            "labels": labels_for(bname, vname),
            "annotations": {ANN_VARIANT_SPEC: spec_hash(vspec)},
            "ownerReferences": [owner_reference(variant)],
        },
        "spec": spec,
    }


def service(
    name: str, namespace: str, selector: dict[str, str], port: int, labels: dict[str, str], owner: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def promotion_patch(
    mainline: dict[str, Any], winner_image: str, container: str | None, bakeoff: str, variant: dict[str, Any], at: str
) -> dict[str, Any]:
    """The mainline Deployment with the winner's image, and annotations recording the template before.

    The new template is the mainline's own (its labels, so its selector and
    Services keep matching) with the winner's image: exactly the pod the
    candidate ran, under the mainline's name.
    """
    dep = copy.deepcopy(mainline)
    where = f"Deployment {dep['metadata']['name']}"
    previous = copy.deepcopy(dep["spec"]["template"])
    old = _target_container(previous, container, where).get("image")
    tpl = dep["spec"]["template"]
    c = _target_container(tpl, container, where)
    c["image"] = winner_image
    _set_env(c, (variant.get("spec") or {}).get("env"))
    ann = dep["metadata"].setdefault("annotations", {})
    ann[ANN_PREVIOUS_TEMPLATE] = json.dumps(previous, sort_keys=True, separators=(",", ":"))
    ann[ANN_PROMOTION] = json.dumps(
        {
            "bakeoff": bakeoff,
            "variant": variant["metadata"]["name"],
            "uid": variant["metadata"]["uid"],
            "image": winner_image,
            "previousImage": old,
            "at": at,
        },
        sort_keys=True,
    )
    return dep


def promotion_of(deployment: dict[str, Any]) -> dict[str, Any] | None:
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ANN_PROMOTION)
    if not raw:
        return None
    try:
        out = json.loads(raw)
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def deployment_health(dep: dict[str, Any]) -> tuple[bool, str | None]:
    """(available, failure): as the kube-controller-manager reports them in the Deployment's status.

    Available: the controller saw the current generation and at least one
    replica is available.  Failed: Progressing=False (ProgressDeadlineExceeded)
    or ReplicaFailure=True.
    """
    st = dep.get("status") or {}
    gen = (dep.get("metadata") or {}).get("generation") or 0
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    prog = conds.get("Progressing")
    if prog and prog.get("status") == "False":
        return False, f"{prog.get('reason') or 'NotProgressing'}: {prog.get('message') or ''}".strip(": ")
    rf = conds.get("ReplicaFailure")
    if rf and rf.get("status") == "True":
        return False, f"{rf.get('reason') or 'ReplicaFailure'}: {rf.get('message') or ''}".strip(": ")
    observed = st.get("observedGeneration") or 0
    available = observed >= gen and (st.get("availableReplicas") or 0) >= 1
    return available, None


def rolled_out(dep: dict[str, Any]) -> bool:
    """Every replica runs the current template (what `kubectl rollout status` waits for)."""
    st = dep.get("status") or {}
    gen = (dep.get("metadata") or {}).get("generation") or 0
    want = (dep.get("spec") or {}).get("replicas", 1)
    return (
        (st.get("observedGeneration") or 0) >= gen
        and (st.get("updatedReplicas") or 0) >= want
        and (st.get("availableReplicas") or 0) >= min(want, 1)
    )
