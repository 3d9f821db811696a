"""``bakeoff revert``: put the mainline Deployment's pod template from before a promotion back."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bakeoff.cli.cluster.common import CommandError, api_exception, get_bakeoff, now_rfc3339, run_command
from bakeoff.common import kube
from bakeoff.contracts.resources import ANN_PREVIOUS_TEMPLATE as PREVIOUS_TEMPLATE
from bakeoff.contracts.resources import ANN_PROMOTION as PROMOTION
from bakeoff.contracts.resources import ANN_REVERTED as REVERTED

REVERT_ATTEMPTS = 5


def add_revert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bakeoff", metavar="B", help="the Bakeoff whose mainline Deployment to revert")
    p.add_argument("--dry-run", action="store_true", help="print the image change only; change nothing")
    kube.add_arguments(p)


@dataclass
class RevertResult:
    deployment: str
    variant: str | None
    image: str | None
    changes: list[tuple[str, str | None, str | None]]  # (container, image now, image after)
    attempts: int
    dry_run: bool


def _images(template: dict[str, Any]) -> dict[str, str | None]:
    spec = (template or {}).get("spec") or {}
    out: dict[str, str | None] = {}
    for key, prefix in (("initContainers", "init:"), ("containers", "")):
        for c in spec.get(key) or []:
            out[prefix + str(c.get("name"))] = c.get("image")
    return out


def image_changes(current: dict[str, Any], previous: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    now, before = _images(current), _images(previous)
    names = list(now) + [n for n in before if n not in now]
    return [(n, now.get(n), before.get(n)) for n in names if now.get(n) != before.get(n)]


def _annotation_json(dep: str, annotations: dict[str, str], key: str) -> Any:
    try:
        return json.loads(annotations[key])
    except ValueError as e:
        raise CommandError(f"deployment {dep}: annotation {key} is not valid JSON ({e})") from None


def revert_mainline(
    cluster: kube.Cluster, bakeoff: str, dry_run: bool = False, before_write: Callable[[int], None] | None = None
) -> RevertResult:
    """Put D's template from before the promotion back; retries a conflicting update up to 5 times.

    ``before_write(attempt)`` runs between reading D and replacing it (tests use it to write
    concurrently and so cause a 409)."""
    from kubernetes import client

    ApiException = api_exception()
    b = get_bakeoff(cluster, bakeoff)
    dep = ((b.get("spec") or {}).get("mainline") or {}).get("deployment")
    if not dep:
        raise CommandError(
            f"bakeoff {bakeoff} has no mainline deployment (spec.mainline.deployment); nothing to revert"
        )
    apps = client.AppsV1Api(cluster.api)
    ns = cluster.namespace
    for attempt in range(1, REVERT_ATTEMPTS + 1):
        try:
            raw: Any = apps.read_namespaced_deployment(dep, ns, _preload_content=False)  # the raw HTTP response
        except ApiException as e:
            if e.status == 404:
                raise CommandError(
                    f"deployment {dep} (the mainline of bakeoff {bakeoff}) not found in namespace {ns}"
                ) from None
            raise
        d = json.loads(raw.data)
        ann = d["metadata"].get("annotations") or {}
        if PREVIOUS_TEMPLATE not in ann:
            raise CommandError(f"deployment {dep} has no promotion to revert (no {PREVIOUS_TEMPLATE} annotation)")
        previous = _annotation_json(dep, ann, PREVIOUS_TEMPLATE)
        if not isinstance(previous, dict) or not isinstance(previous.get("spec"), dict):
            raise CommandError(f"deployment {dep}: annotation {PREVIOUS_TEMPLATE} is not a pod template")
        promotion = _annotation_json(dep, ann, PROMOTION) if PROMOTION in ann else {}
        if not isinstance(promotion, dict):
            promotion = {}
        if promotion.get("bakeoff") and promotion["bakeoff"] != bakeoff:
            raise CommandError(
                f"deployment {dep} was promoted by bakeoff {promotion['bakeoff']}, not {bakeoff}; "
                f"run bakeoff revert {promotion['bakeoff']}"
            )
        current = (d.get("spec") or {}).get("template") or {}
        result = RevertResult(
            dep, promotion.get("variant"), promotion.get("image"), image_changes(current, previous), attempt, dry_run
        )
        if dry_run:
            return result
        new = copy.deepcopy(d)
        new["spec"]["template"] = previous
        new_ann = {k: v for k, v in ann.items() if k not in (PREVIOUS_TEMPLATE, PROMOTION)}
        new_ann[REVERTED] = json.dumps({"variant": promotion.get("variant"), "at": now_rfc3339()})
        new["metadata"]["annotations"] = new_ann
        # resourceVersion stays what we read: the API server refuses (409) if anyone wrote since.
        if before_write is not None:
            before_write(attempt)
        try:
            apps.replace_namespaced_deployment(dep, ns, new)
            return result
        except ApiException as e:
            if e.status != 409:
                if e.status == 422:
                    raise CommandError(
                        f"deployment {dep}: the previous template was refused: {kube.api_error_message(e)}"
                    ) from None
                raise
    raise CommandError(
        f"deployment {dep} changed under us {REVERT_ATTEMPTS} times in a row; nothing reverted, try again"
    )


def revert(args: argparse.Namespace) -> int:
    def go() -> int:
        cluster = kube.connect_from_args(args)
        try:
            r = revert_mainline(cluster, args.bakeoff, dry_run=args.dry_run)
        finally:
            cluster.close()
        of = f"the promotion of {r.variant or 'an unknown variant'}" + (f" (image {r.image})" if r.image else "")
        if r.dry_run:
            print(f"deployment {r.deployment}: would restore the template from before {of} (dry run)")
            if not r.changes:
                print("  no image changes (the templates differ elsewhere, if at all)")
            for c, now, before in r.changes:
                print(f"  container {c}: {now or '(none)'} -> {before or '(none)'}")
            return 0
        print(f"deployment {r.deployment}: template from before {of} restored")
        for c, now, before in r.changes:
            print(f"  container {c}: {now or '(none)'} -> {before or '(none)'}")
        return 0

    return run_command(go)
