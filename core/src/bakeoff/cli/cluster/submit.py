"""``bakeoff submit``: enter a build into a Bakeoff by creating a Variant, and wait for the controller's answer."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from bakeoff.cli.cluster.common import CommandError, UsageError, api_exception, custom_api, get_bakeoff, run_command
from bakeoff.common import kube
from bakeoff.contracts.resources import FINISHED_BAKEOFF_PHASES as FINISHED
from bakeoff.contracts.resources import GROUP, VERSION
from bakeoff.contracts.resources import LABEL_BAKEOFF as BAKEOFF_LABEL

# metadata.name of a custom object: a DNS-1123 subdomain; we keep to 63 characters
# (the routes' variant-name limit), so no "_" although spec.bakeoff allows it.
OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
BAKEOFF_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,251}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bakeoff", "-b", required=True, metavar="B", help="the Bakeoff to enter (same namespace)")
    p.add_argument(
        "--image",
        required=True,
        action="append",
        help="the build's container image, e.g. registry.example/shop:3f2a9c1; repeat it to submit several builds"
        " at once (one Variant each)",
    )
    p.add_argument(
        "--name",
        metavar="V",
        action="append",
        help="the Variant's name (default: B-<short commit>, else B-<image tag>); with several --image, one per image"
        " in the same order",
    )
    p.add_argument(
        "--commit",
        metavar="SHA",
        action="append",
        help="the commit the image was built from; with several --image, one per image in the same order",
    )
    p.add_argument("--repo", metavar="URL", help="the repository of the commit")
    p.add_argument("--author", metavar="WHO", help="who (or what) wrote the change")
    p.add_argument("--generator", metavar="WHAT", help="e.g. the model that wrote the change")
    p.add_argument("--message", metavar="TEXT", help="the change's description (commit message)")
    p.add_argument("--replicas", type=int, metavar="N", help="pods while it serves (1-1000; default 1)")
    p.add_argument(
        "--dry-run", action="store_true", help="validate on the API server (server-side dry run) and create nothing"
    )
    p.add_argument(
        "--json", action="store_true", help="print the Variant as JSON instead of its name (a JSON list for several)"
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the Variant is created, without waiting for the controller to accept or refuse it",
    )
    p.add_argument(
        "--timeout",
        default="2m",
        metavar="DURATION",
        help="how long to wait for the controller's answer (default 2m; e.g. 30s, 5m)",
    )
    kube.add_arguments(p)


def make_name(text: str, limit: int = 63) -> str:
    """``text`` as an object name: lower case, [a-z0-9-.], at most ``limit``, alphanumeric at both ends."""
    s = re.sub(r"[^a-z0-9.-]+", "-", text.lower())
    s = re.sub(r"-{2,}", "-", s)
    s = s[:limit]
    return re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", s)


def image_tag(image: str) -> str | None:
    """The tag of ``registry:5000/org/shop:v1.2`` (v1.2), or 12 hex digits of a digest; None without either."""
    if "@" in image:
        digest = image.split("@", 1)[1]
        return digest.split(":", 1)[-1][:12] or None
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def default_variant_name(bakeoff: str, image: str, commit: str | None) -> str:
    suffix = commit[:7] if commit else image_tag(image)
    suffix = make_name(suffix or "")
    if not suffix:
        raise UsageError("cannot derive a variant name from the image (no tag) or --commit; give --name")
    prefix = make_name(bakeoff, 62 - min(len(suffix), 40))
    name = make_name(f"{prefix}-{suffix}" if prefix else suffix)
    if not OBJECT_NAME_RE.match(name):  # pragma: no cover - make_name guarantees it
        raise UsageError(f"cannot derive a valid variant name ({name!r}); give --name")
    return name


def _one(value: Any) -> Any:
    """A repeatable option's value for one build: the list's only element (or the value itself)."""
    if isinstance(value, list):
        if len(value) > 1:
            raise UsageError("build_variant takes one build; use build_variants for several")  # pragma: no cover
        return value[0] if value else None
    return value


def build_variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One Variant per ``--image`` (its ``--commit`` and ``--name`` paired by position), all checked
    before anything is sent; UsageError for a bad command line."""
    images = args.image if isinstance(args.image, list) else [args.image]
    commits = args.commit if isinstance(args.commit, list) else ([args.commit] if args.commit else [])
    names = args.name if isinstance(args.name, list) else ([args.name] if args.name else [])
    n = len(images)
    for opt, values in (("--commit", commits), ("--name", names)):
        if values and len(values) != n:
            raise UsageError(
                f"{len(values)} {opt} for {n} --image: give one {opt} per --image, in the same order, or none"
            )
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, image in enumerate(images):
        one = argparse.Namespace(**{**vars(args), "image": image})
        one.commit = commits[i] if commits else None
        one.name = names[i] if names else None
        v = build_variant(one)
        name = v["metadata"]["name"]
        if name in seen:
            raise UsageError(
                f"--image #{seen[name] + 1} and #{i + 1} ({image}) would both be Variant {name}: "
                "give each build its own --commit or --name"
            )
        seen[name] = i
        out.append(v)
    return out


def build_variant(args: argparse.Namespace) -> dict[str, Any]:
    """The Variant object for ``bakeoff submit``; UsageError for a bad command line."""
    args = argparse.Namespace(
        **{**vars(args), **{k: _one(getattr(args, k, None)) for k in ("image", "name", "commit")}}
    )
    bakeoff = args.bakeoff or ""
    if not BAKEOFF_NAME_RE.match(bakeoff):
        raise UsageError(f"--bakeoff {bakeoff!r} is not a valid Bakeoff name")
    image = (args.image or "").strip()
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"--image {args.image!r} is not a container image reference")
    if args.replicas is not None and not 1 <= args.replicas <= 1000:
        raise UsageError(f"--replicas must be between 1 and 1000, got {args.replicas}")
    if args.name is not None:
        if not OBJECT_NAME_RE.match(args.name):
            raise UsageError(
                f"--name {args.name!r} is not a valid name: lower case letters, digits, '-' and '.', "
                "at most 63, starting and ending with a letter or digit"
            )
        name = args.name
    else:
        name = default_variant_name(bakeoff, image, args.commit)
    change = {
        k: v
        for k, v in (
            ("commit", args.commit),
            ("repository", args.repo),
            ("author", args.author),
            ("generator", args.generator),
            ("message", args.message),
        )
        if v
    }
    spec: dict[str, Any] = {"bakeoff": bakeoff, "image": image}
    if change:
        spec["change"] = change
    if args.replicas is not None:
        spec["replicas"] = args.replicas
    meta: dict[str, Any] = {"name": name}
    if LABEL_VALUE_RE.match(bakeoff):
        meta["labels"] = {BAKEOFF_LABEL: bakeoff}
    return {"apiVersion": kube.API_VERSION, "kind": "Variant", "metadata": meta, "spec": spec}


def submit_variant(cluster: kube.Cluster, variant: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Create ``variant`` after checking its Bakeoff exists and is not over; the created object."""
    ApiException = api_exception()
    b_name = variant["spec"]["bakeoff"]
    b = get_bakeoff(cluster, b_name)
    phase = (b.get("status") or {}).get("phase")
    if phase in FINISHED:
        winner = (b.get("status") or {}).get("winner")
        over = f"phase {phase}" + (f", winner {winner}" if winner else "")
        raise CommandError(
            f"bakeoff {b_name} is over ({over}); it takes no more variants — "
            "start a new Bakeoff to compare against the new mainline"
        )
    name = variant["metadata"]["name"]
    kw = {"dry_run": "All"} if dry_run else {}
    try:
        return custom_api(cluster).create_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "variants", variant, **kw
        )
    except ApiException as e:
        if e.status == 409:
            from bakeoff.controller.kube.admit import earlier_round

            try:
                existing = custom_api(cluster).get_namespaced_custom_object(
                    GROUP, VERSION, cluster.namespace, "variants", name
                )
            except ApiException:
                existing = None
            if existing is not None and (existing.get("spec") or {}).get("bakeoff") == b_name:
                why = earlier_round(existing, b["metadata"]["uid"])
                if why is not None:
                    raise CommandError(
                        f"{why.format(bakeoff=b_name)} (--name another name; or delete Variant {name} "
                        f"in namespace {cluster.namespace} first)"
                    ) from None
            raise CommandError(
                f"variant {name} already exists in namespace {cluster.namespace}; choose another name with --name"
            ) from None
        if e.status == 422:
            raise CommandError(f"invalid Variant: {kube.api_error_message(e)}") from None
        raise


def accepted_condition(v: dict[str, Any]) -> dict[str, Any] | None:
    """The Variant's Accepted condition once the controller set it for the current spec."""
    gen = v["metadata"].get("generation")
    for c in (v.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Accepted" and c.get("status") in ("True", "False"):
            if c.get("observedGeneration") in (None, gen):
                return dict(c)
    return None


def wait_accepted(cluster: kube.Cluster, name: str, timeout: float, poll: float = 0.5) -> dict[str, Any]:
    """Wait for the controller's answer on Variant ``name``: accepted (the Variant), or CommandError.

    A refused Variant is deleted (it never entered, nothing of it runs): it would otherwise enter
    unannounced once a slot frees, long after this command said no.
    """
    ApiException = api_exception()
    custom = custom_api(cluster)
    deadline = time.monotonic() + timeout
    while True:
        v = custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "variants", name)
        c = accepted_condition(v)
        if c is not None and c["status"] == "True":
            return dict(v)
        if c is not None:
            try:
                custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "variants", name)
                gone = "; the Variant was deleted"
            except ApiException as e:
                gone = f"; deleting the Variant failed: {kube.api_error_message(e)}"
            raise CommandError(f"variant {name} refused ({c.get('reason')}): {c.get('message')}{gone}")
        if time.monotonic() >= deadline:
            raise CommandError(
                f"variant {name} was created but the controller gave no answer within {timeout:g}s "
                f"(is it running and watching namespace {cluster.namespace}?); the Variant stays: "
                f"see bakeoff status {v['spec']['bakeoff']} -n {cluster.namespace}"
            )
        time.sleep(poll)


def wait_all_accepted(cluster: kube.Cluster, names: list[str], timeout: float) -> dict[str, dict[str, Any] | str]:
    """Wait for the controller's answer on each of ``names`` (one deadline for all): per name the
    accepted Variant, or the reason it was not (refused, or no answer in time)."""
    deadline = time.monotonic() + timeout
    out: dict[str, dict[str, Any] | str] = {}
    for name in names:
        try:
            out[name] = wait_accepted(cluster, name, max(0.0, deadline - time.monotonic()))
        except CommandError as e:
            out[name] = str(e)
    return out


def submit(args: argparse.Namespace) -> int:
    def go() -> int:
        from bakeoff.common.durations import DurationError, parse_duration

        try:
            timeout = parse_duration(args.timeout, "--timeout")
        except DurationError as e:
            raise UsageError(str(e)) from None
        variants = build_variants(args)
        if len(variants) > 1:
            return submit_many(args, variants, timeout)
        cluster = kube.connect_from_args(args)
        try:
            created = submit_variant(cluster, variants[0], args.dry_run)
            if not args.dry_run and not args.no_wait:
                created = wait_accepted(cluster, created["metadata"]["name"], timeout)
        finally:
            cluster.close()
        if args.json:
            print(json.dumps(created, indent=2, sort_keys=True))
        elif args.dry_run:
            print(f"{created['metadata']['name']} (dry run: valid, nothing created)")
        else:
            print(created["metadata"]["name"])
        return 0

    return run_command(go)


def submit_many(args: argparse.Namespace, variants: list[dict[str, Any]], timeout: float) -> int:
    """Several builds in one command: every Variant is created (one failing does not stop the
    others), then the controller's answers are awaited together.  stdout: one line per accepted
    (or, with --no-wait, created) Variant; stderr: one line per build that did not make it; exit 1
    if any did not."""
    from bakeoff.cli.errors import EXIT_FAILED

    ApiException = api_exception()
    cluster = kube.connect_from_args(args)
    created: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    try:
        get_bakeoff(cluster, variants[0]["spec"]["bakeoff"])  # a missing Bakeoff: one error, nothing created
        for v in variants:
            name = v["metadata"]["name"]
            try:
                created[name] = submit_variant(cluster, v, args.dry_run)
            except CommandError as e:
                failed[name] = str(e)
            except ApiException as e:
                failed[name] = f"variant {name}: {kube.api_error_message(e)}"
        if created and not args.dry_run and not args.no_wait:
            for name, answer in wait_all_accepted(cluster, list(created), timeout).items():
                if isinstance(answer, str):
                    failed[name] = answer
                    created.pop(name)
                else:
                    created[name] = answer
    finally:
        cluster.close()
    if args.json:
        print(json.dumps(list(created.values()), indent=2, sort_keys=True))
    else:
        for name in created:
            print(f"{name} (dry run: valid, nothing created)" if args.dry_run else name)
    for why in failed.values():
        print(f"bakeoff: error: {why}", file=sys.stderr)
    if failed:
        print(
            f"bakeoff: error: {len(failed)} of {len(variants)} builds not entered: {', '.join(failed)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0
