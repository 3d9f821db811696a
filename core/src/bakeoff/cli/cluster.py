"""``bakeoff submit``, ``bakeoff status`` and ``bakeoff revert``: the commands a
developer or a pipeline runs against a cluster (docs/cli-cluster.md).

- ``submit`` enters a build into a Bakeoff by creating a Variant;
- ``status`` shows the Bakeoffs of a namespace, or one Bakeoff with its
  Variants, their shares and the judge's verdicts (from resource status);
- ``revert`` puts the mainline Deployment's pod template from before a
  promotion back (the ``bakeoff.dev/previous-template`` annotation).

Exit status: 0 done, 1 the cluster said no or could not be reached, 2 a bad
command line or kubeconfig (nothing was sent).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bakeoff.common import kube
from bakeoff.contracts.resources import ANN_PREVIOUS_TEMPLATE as PREVIOUS_TEMPLATE
from bakeoff.contracts.resources import ANN_PROMOTION as PROMOTION
from bakeoff.contracts.resources import ANN_REVERTED as REVERTED
from bakeoff.contracts.resources import FINISHED_BAKEOFF_PHASES as FINISHED
from bakeoff.contracts.resources import GROUP, VERSION
from bakeoff.contracts.resources import LABEL_BAKEOFF as BAKEOFF_LABEL

REVERT_ATTEMPTS = 5

# metadata.name of a custom object: a DNS-1123 subdomain; we keep to 63 characters
# (the routes' variant-name limit), so no "_" although spec.bakeoff allows it.
OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
BAKEOFF_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,251}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class UsageError(ValueError):
    """A bad command line: exit 2, nothing sent."""


class CommandError(RuntimeError):
    """The cluster refused or failed: exit 1."""


# --------------------------------------------------------------------------- arguments


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bakeoff", "-b", required=True, metavar="B", help="the Bakeoff to enter (same namespace)")
    p.add_argument("--image", required=True, help="the build's container image, e.g. registry.example/shop:3f2a9c1")
    p.add_argument("--name", metavar="V", help="the Variant's name (default: B-<short commit>, else B-<image tag>)")
    p.add_argument("--commit", metavar="SHA", help="the commit the image was built from")
    p.add_argument("--repo", metavar="URL", help="the repository of the commit")
    p.add_argument("--author", metavar="WHO", help="who (or what) wrote the change")
    p.add_argument("--generator", metavar="WHAT", help="e.g. the model that wrote the change")
    p.add_argument("--message", metavar="TEXT", help="the change's description (commit message)")
    p.add_argument("--replicas", type=int, metavar="N", help="pods while it serves (1-1000; default 1)")
    p.add_argument(
        "--dry-run", action="store_true", help="validate on the API server (server-side dry run) and create nothing"
    )
    p.add_argument("--json", action="store_true", help="print the Variant as JSON instead of its name")
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


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bakeoff", nargs="?", metavar="B", help="one Bakeoff with its variants (default: list them all)")
    p.add_argument(
        "--json", action="store_true", help='JSON: {"bakeoff": ..., "variants": [...]} (or {"bakeoffs": [...]})'
    )
    p.add_argument("--watch", "-w", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)")
    kube.add_arguments(p)


def add_revert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bakeoff", metavar="B", help="the Bakeoff whose mainline Deployment to revert")
    p.add_argument("--dry-run", action="store_true", help="print the image change only; change nothing")
    kube.add_arguments(p)


# --------------------------------------------------------------------------- helpers


def _api_exception():
    from kubernetes.client import ApiException

    return ApiException


def _run(fn: Callable[[], int]) -> int:
    """Turn the failures every command shares into one line on stderr and an exit status."""
    import urllib3

    ApiException = _api_exception()
    try:
        return fn()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except kube.KubeConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ApiException as e:
        print(f"error: {kube.api_error_message(e)}", file=sys.stderr)
        return 1
    except urllib3.exceptions.MaxRetryError as e:
        print(f"error: cannot reach the API server: {e.reason or e}", file=sys.stderr)
        return 1
    except (urllib3.exceptions.HTTPError, OSError) as e:
        print(f"error: cannot reach the API server: {e}", file=sys.stderr)
        return 1


def _custom(cluster: kube.Cluster):
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api)


def get_bakeoff(cluster: kube.Cluster, name: str) -> dict[str, Any]:
    ApiException = _api_exception()
    try:
        return _custom(cluster).get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "bakeoffs", name)
    except ApiException as e:
        if e.status == 404:
            raise CommandError(
                f"bakeoff {name} not found in namespace {cluster.namespace}; "
                f"kubectl get bakeoffs -n {cluster.namespace}"
            ) from None
        raise


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def _age(ts: str | None, now: datetime | None = None) -> str:
    if not ts:
        return "-"
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    s = max(0, int(((now or datetime.now(UTC)) - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 2 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if s < 10 * 3600 else f"{s // 3600}h"
    return f"{s // 86400}d"


def _num(x: Any, spec: str = ".4g", signed: bool = False) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-"
    return format(x, ("+" if signed else "") + spec)


def _share(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


# --------------------------------------------------------------------------- submit


def build_variant(args: argparse.Namespace) -> dict[str, Any]:
    """The Variant object for ``bakeoff submit``; UsageError for a bad command line."""
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
    ApiException = _api_exception()
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
        return _custom(cluster).create_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "variants", variant, **kw
        )
    except ApiException as e:
        if e.status == 409:
            from bakeoff.controller.kube.operator import earlier_round

            try:
                existing = _custom(cluster).get_namespaced_custom_object(
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
    ApiException = _api_exception()
    custom = _custom(cluster)
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


def submit(args: argparse.Namespace) -> int:
    def go() -> int:
        from bakeoff.common.durations import DurationError, parse_duration

        try:
            timeout = parse_duration(args.timeout, "--timeout")
        except DurationError as e:
            raise UsageError(str(e)) from None
        variant = build_variant(args)
        cluster = kube.connect_from_args(args)
        try:
            created = submit_variant(cluster, variant, args.dry_run)
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

    return _run(go)


# --------------------------------------------------------------------------- status


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str | None = None


@dataclass
class Report:
    """What ``status`` shows: text lines and tables, in order; rendered plain or with rich."""

    parts: list[Any] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.parts.append(text)

    def table(self, headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
        self.parts.append(Table(headers, rows, title))


def list_variants(cluster: kube.Cluster, bakeoff: str | None = None) -> list[dict[str, Any]]:
    items = _custom(cluster).list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "variants")["items"]
    if bakeoff is not None:
        items = [v for v in items if (v.get("spec") or {}).get("bakeoff") == bakeoff]
    return sorted(items, key=lambda v: (v["metadata"].get("creationTimestamp") or "", v["metadata"]["name"]))


def list_bakeoffs(cluster: kube.Cluster) -> list[dict[str, Any]]:
    items = _custom(cluster).list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "bakeoffs")["items"]
    return sorted(items, key=lambda b: b["metadata"]["name"])


def _mainline_name(b: dict[str, Any]) -> str:
    st = b.get("status") or {}
    return st.get("mainline") or ((b.get("spec") or {}).get("mainline") or {}).get("name") or "mainline"


def list_report(namespace: str, bakeoffs: list[dict[str, Any]], variants: list[dict[str, Any]]) -> Report:
    r = Report()
    if not bakeoffs:
        r.line(f"no bakeoffs in namespace {namespace}")
        return r
    count: dict[str, int] = {}
    for v in variants:
        of = str((v.get("spec") or {}).get("bakeoff"))
        count[of] = count.get(of, 0) + 1
    rows = []
    for b in bakeoffs:
        st = b.get("status") or {}
        name = b["metadata"]["name"]
        rows.append(
            [
                name,
                st.get("phase") or "-",
                _mainline_name(b),
                st.get("winner") or "-",
                str(count.get(name, 0)),
                _age(b["metadata"].get("creationTimestamp")),
            ]
        )
    r.table(["NAME", "PHASE", "MAINLINE", "WINNER", "CANDIDATES", "AGE"], rows, title=f"bakeoffs in {namespace}")
    return r


def _requests_of(v: dict[str, Any], b: dict[str, Any]) -> Any:
    st = v.get("status") or {}
    if isinstance(st.get("requests"), int):
        return st["requests"]
    verdicts = (b.get("status") or {}).get("verdicts")
    if isinstance(verdicts, dict):
        vv = (verdicts.get("variants") or {}).get(v["metadata"]["name"])
        if isinstance(vv, dict) and isinstance(vv.get("requests"), int):
            return vv["requests"]
    return None


def _conditions(kind: str, name: str, obj: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in (obj.get("status") or {}).get("conditions") or []:
        if not isinstance(c, dict):
            continue
        if c.get("status") == "False" or c.get("message"):
            rows.append(
                [
                    f"{kind}/{name}",
                    str(c.get("type", "?")),
                    str(c.get("status", "?")),
                    str(c.get("reason") or "-"),
                    str(c.get("message") or ""),
                ]
            )
    return rows


def bakeoff_report(namespace: str, b: dict[str, Any], variants: list[dict[str, Any]]) -> Report:
    r = Report()
    spec, st = b.get("spec") or {}, b.get("status") or {}
    name = b["metadata"]["name"]
    mainline = _mainline_name(b)
    where = (spec.get("mainline") or {}).get("deployment")
    r.line(f"bakeoff {name} (namespace {namespace})")
    r.line(f"  phase:     {st.get('phase') or '- (not reconciled yet)'}")
    r.line(f"  mainline:  {mainline}" + (f" (deployment {where})" if where else ""))
    objective = (spec.get("judge") or {}).get("objective") or {}
    if objective.get("metric"):
        r.line(
            f"  objective: {objective['metric']}"
            + (f" ({objective['direction']} is better)" if objective.get("direction") else "")
        )
    d: dict[str, Any] = st["decision"] if isinstance(st.get("decision"), dict) else {}
    winner = st.get("winner") or d.get("winner")
    if winner:
        r.line(f"  winner:    {winner}")
    if d:
        what = d.get("action") or "?"
        if d.get("winner"):
            what += f" {d['winner']}"
        if d.get("rollback"):
            what += f" (roll back {', '.join(map(str, d['rollback']))})"
        r.line(f"  decision:  {what}" + (f" — {d['reason']}" if d.get("reason") else ""))
    routing: dict[str, Any] = st["routing"] if isinstance(st.get("routing"), dict) else {}
    shares: dict[str, Any] = {}
    if routing.get("variants"):
        shares = {str(x.get("name")): x.get("weight") for x in routing["variants"] if isinstance(x, dict)}
        r.line(
            f"  routing (version {routing.get('version', '-')}): "
            + ", ".join(
                f"{x.get('name')} {_share(x.get('weight'))} -> {x.get('service')}:{x.get('port')}"
                for x in routing["variants"]
                if isinstance(x, dict)
            )
        )
    elif isinstance(st.get("shares"), dict) and st["shares"]:
        shares = dict(st["shares"])
        r.line("  shares:    " + ", ".join(f"{k} {_share(v)}" for k, v in st["shares"].items()))
    else:
        r.line("  routing:   - (none yet)")
    if isinstance(st.get("shares"), dict):
        for k, v in st["shares"].items():
            shares.setdefault(k, v)

    if not variants:
        r.line()
        r.line(f"no variants; enter one with: bakeoff submit --bakeoff {name} --image IMAGE -n {namespace}")
    else:
        rows = []
        for v in variants:
            vn = v["metadata"]["name"]
            vst = v.get("status") or {}
            share = vst.get("share") if isinstance(vst.get("share"), (int, float)) else shares.get(vn)
            req = _requests_of(v, b)
            commit = ((v.get("spec") or {}).get("change") or {}).get("commit") or "-"
            rows.append(
                [
                    vn,
                    vst.get("phase") or "-",
                    _share(share),
                    "-" if req is None else str(req),
                    str(commit)[:12],
                    vst.get("verdict") or "-",
                ]
            )
        r.line()
        r.table(["VARIANT", "PHASE", "SHARE", "REQUESTS", "COMMIT", "VERDICT"], rows, title="variants")
        mrows = []
        for v in variants:
            for m in (v.get("status") or {}).get("verdicts") or []:
                if not isinstance(m, dict):
                    continue
                ci = m.get("ci")
                ci_s = (
                    f"[{_num(ci[0], '.4g', True)}, {_num(ci[1], '.4g', True)}]"
                    if isinstance(ci, list) and len(ci) == 2
                    else "-"
                )
                mrows.append(
                    [
                        v["metadata"]["name"],
                        str(m.get("metric", "?")),
                        str(m.get("state", "?")),
                        _num(m.get("estimate"), ".4g", True),
                        ci_s,
                        _num(m.get("control")),
                        _num(m.get("candidate")),
                    ]
                )
        if mrows:
            r.line()
            r.table(["VARIANT", "METRIC", "STATE", "ESTIMATE", "CI", "CONTROL", "CANDIDATE"], mrows, title="verdicts")
    crows = _conditions("bakeoff", name, b)
    for v in variants:
        crows += _conditions("variant", v["metadata"]["name"], v)
    if crows:
        r.line()
        r.table(["OBJECT", "CONDITION", "STATUS", "REASON", "MESSAGE"], crows, title="conditions")
    return r


def render_plain(report: Report) -> str:
    out: list[str] = []
    for p in report.parts:
        if isinstance(p, Table):
            widths = [len(h) for h in p.headers]
            for row in p.rows:
                for i, cell in enumerate(row):
                    widths[i] = max(widths[i], len(cell))
            for row in [p.headers] + p.rows:
                out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        else:
            out.append(p)
    return "\n".join(out) + "\n"


def render_rich(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table as RichTable

    for p in report.parts:
        if isinstance(p, Table):
            t = RichTable(title=p.title, title_justify="left", expand=False)
            for h in p.headers:
                t.add_column(h, overflow="fold", no_wrap=h not in ("MESSAGE", "VERDICT"))
            for row in p.rows:
                t.add_row(*[escape(c) for c in row])
            console.print(t)
        else:
            console.print(escape(p), highlight=False)


def collect(cluster: kube.Cluster, bakeoff: str | None) -> tuple[dict[str, Any], Report]:
    """The status document (for --json) and the report (for people) as they are now."""
    if bakeoff is None:
        bs = list_bakeoffs(cluster)
        vs = list_variants(cluster)
        return {"bakeoffs": bs}, list_report(cluster.namespace, bs, vs)
    b = get_bakeoff(cluster, bakeoff)
    vs = list_variants(cluster, bakeoff)
    return {"bakeoff": b, "variants": vs}, bakeoff_report(cluster.namespace, b, vs)


def status(args: argparse.Namespace) -> int:
    def go() -> int:
        if args.interval <= 0:
            raise UsageError("--interval must be above 0")
        cluster = kube.connect_from_args(args)
        console = None
        if not args.json and sys.stdout.isatty():
            from rich.console import Console

            console = Console()
        try:
            while True:
                doc, report = collect(cluster, args.bakeoff)
                if args.json:
                    print(json.dumps(doc, sort_keys=True) if args.watch else json.dumps(doc, indent=2, sort_keys=True))
                elif console is not None:
                    if args.watch:
                        console.clear()
                        console.print(f"every {args.interval:g}s — {now_rfc3339()} — Ctrl-C to stop", style="dim")
                    render_rich(report, console)
                else:
                    if args.watch:
                        print(f"--- {now_rfc3339()}")
                    sys.stdout.write(render_plain(report))
                sys.stdout.flush()
                if not args.watch:
                    return 0
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0
        finally:
            cluster.close()

    return _run(go)


# --------------------------------------------------------------------------- revert


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

    ApiException = _api_exception()
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

    return _run(go)
