"""``bakeoff submit``, ``status`` and ``revert`` against a real API server (tests/kube/conftest.py).

Most cases run the command as a subprocess, the way a developer or a pipeline
does; the conflict cases call the functions to write between read and replace.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bakeoff.cli import cluster as cluster_cli
from bakeoff.common import kube as bkube

pytestmark = pytest.mark.usefixtures("crds")

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "bakeoff.dev", "v1alpha1"
MERGE = "application/merge-patch+json"


NS_PREFIX = "cli"


def _cmd() -> list[str]:
    exe = Path(sys.executable).parent / "bakeoff"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bakeoff"]


@pytest.fixture
def run(kube, ns):
    def run(*args: str, namespace: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        # no controller runs here: submit returns once created (tests/kube/test_submit_wait.py waits)
        wait = ["--no-wait"] if args and args[0] == "submit" else []
        argv = _cmd() + list(args) + wait + ["--kubeconfig", kube.kubeconfig, "-n", namespace or ns]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=dict(os.environ, COLUMNS="200")
        )

    return run


@pytest.fixture
def cluster(kube, ns):
    c = bkube.connect(kube.kubeconfig, namespace=ns)
    yield c
    c.close()


def make_bakeoff(custom, ns: str, name: str = "shop", status: dict | None = None) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Bakeoff",
        "metadata": {"name": name},
        "spec": {
            "mainline": {"deployment": "shop"},
            "judge": {"objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}},
        },
    }
    b = custom.create_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", body)
    if status is not None:
        b = custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "bakeoffs", name, {"status": status}, _content_type=MERGE
        )
    return b


def variants(custom, ns: str) -> list[dict]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, ns, "variants")["items"]


# --------------------------------------------------------------------------- submit


def test_submit_creates_variant_with_all_fields(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run(
        "submit",
        "--bakeoff",
        "shop",
        "--image",
        "registry.example/shop:3f2a9c1",
        "--name",
        "cached",
        "--commit",
        "3f2a9c1e",
        "--repo",
        "https://git.example/shop",
        "--author",
        "ada",
        "--generator",
        "model-x",
        "--message",
        "cache the catalogue\n\nlonger text",
        "--replicas",
        "3",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed["metadata"]["name"] == "cached"
    v = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "variants", "cached")
    assert v["spec"]["bakeoff"] == "shop"
    assert v["spec"]["image"] == "registry.example/shop:3f2a9c1"
    assert v["spec"]["replicas"] == 3
    assert v["spec"]["change"] == {
        "commit": "3f2a9c1e",
        "repository": "https://git.example/shop",
        "author": "ada",
        "generator": "model-x",
        "message": "cache the catalogue\n\nlonger text",
    }
    assert v["metadata"]["labels"]["bakeoff.dev/bakeoff"] == "shop"
    assert printed["metadata"]["uid"] == v["metadata"]["uid"]


def test_submit_default_names(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", "--image", "registry.example/shop:latest", "--commit", "3F2A9C1DEADBEEF")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "shop-3f2a9c1"
    r = run("submit", "--bakeoff", "shop", "--image", "registry.example:5000/team/shop:V1.2_rc1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "shop-v1.2-rc1"
    names = sorted(v["metadata"]["name"] for v in variants(custom, ns))
    assert names == ["shop-3f2a9c1", "shop-v1.2-rc1"]
    v = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "variants", "shop-3f2a9c1")
    assert "replicas" not in v["spec"] and v["spec"]["change"] == {"commit": "3F2A9C1DEADBEEF"}


def test_default_name_is_valid_when_long():
    name = cluster_cli.default_variant_name("a" * 70 + "_shop", "r/x:" + "T" * 80 + "-", None)
    assert len(name) <= 63 and cluster_cli.OBJECT_NAME_RE.match(name)
    assert name.startswith("a") and "tttt" in name
    assert cluster_cli.default_variant_name("shop", "r/x@sha256:" + "ab" * 32, None) == "shop-" + "ab" * 6
    with pytest.raises(cluster_cli.UsageError, match="--name"):
        cluster_cli.default_variant_name("shop", "registry:5000/shop", None)


def test_submit_without_tag_or_commit_needs_a_name(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", "--image", "registry.example:5000/shop")
    assert r.returncode == 2
    assert "--name" in r.stderr
    assert variants(custom, ns) == []


def test_submit_duplicate_name_is_refused(run, custom, ns):
    make_bakeoff(custom, ns)
    assert run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--name", "cached").returncode == 0
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:2", "--name", "cached")
    assert r.returncode == 1
    assert "variant cached already exists" in r.stderr and "--name" in r.stderr
    # the server-side dry run sees the clash too
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:2", "--name", "cached", "--dry-run")
    assert r.returncode == 1 and "already exists" in r.stderr
    v = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "variants", "cached")
    assert v["spec"]["image"] == "r/shop:1"


def test_submit_missing_bakeoff(run, custom, ns):
    r = run("submit", "--bakeoff", "nope", "--image", "r/shop:1")
    assert r.returncode == 1
    assert f"bakeoff nope not found in namespace {ns}" in r.stderr
    assert f"kubectl get bakeoffs -n {ns}" in r.stderr
    assert variants(custom, ns) == []


@pytest.mark.parametrize("phase", ["Promoted", "Stopped"])
def test_submit_to_finished_bakeoff_is_refused(run, custom, ns, phase):
    make_bakeoff(custom, ns, status={"phase": phase, "winner": "fast"} if phase == "Promoted" else {"phase": phase})
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1")
    assert r.returncode == 1
    assert f"bakeoff shop is over (phase {phase}" in r.stderr
    assert variants(custom, ns) == []


def test_submit_running_bakeoff_is_accepted(run, custom, ns):
    make_bakeoff(custom, ns, status={"phase": "Running"})
    assert run("submit", "--bakeoff", "shop", "--image", "r/shop:1").returncode == 0
    assert [v["metadata"]["name"] for v in variants(custom, ns)] == ["shop-1"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--image", ""], "--image"),
        (["--image", "  "], "--image"),
        (["--image", "r/shop:1", "--replicas", "0"], "--replicas"),
        (["--image", "r/shop:1", "--name", "Bad_Name"], "--name"),
    ],
)
def test_submit_bad_arguments_exit_2(run, custom, ns, args, needle):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert variants(custom, ns) == []


def test_submit_missing_image_is_argparse_error(run):
    r = run("submit", "--bakeoff", "shop")
    assert r.returncode == 2 and "--image" in r.stderr


def test_submit_dry_run_creates_nothing(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:abc", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "shop-abc" in r.stdout and "dry run" in r.stdout
    assert variants(custom, ns) == []


def test_submit_422_prints_the_api_servers_message(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--message", "x" * 70000)
    assert r.returncode == 1
    assert "invalid Variant" in r.stderr and "spec.change.message" in r.stderr
    assert variants(custom, ns) == []


# issue 19 item 3: several builds in one command, one Variant each


def test_submit_several_builds_creates_one_variant_each(run, custom, ns):
    make_bakeoff(custom, ns)
    images = [f"registry.example/shop:{c}" for c in ("a1b2c3d", "b2c3d4e", "c3d4e5f", "d4e5f60")]
    commits = ["a1b2c3d9", "b2c3d4e9", "c3d4e5f9", "d4e5f609"]
    args = [x for img, c in zip(images, commits, strict=True) for x in ("--image", img, "--commit", c)]
    r = run("submit", "--bakeoff", "shop", *args, "--generator", "model-x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"shop-{c[:7]}" for c in commits]
    by_name = {v["metadata"]["name"]: v for v in variants(custom, ns)}
    assert sorted(by_name) == sorted(f"shop-{c[:7]}" for c in commits)
    for img, c in zip(images, commits, strict=True):
        v = by_name[f"shop-{c[:7]}"]
        assert v["spec"]["image"] == img  # each image with its own commit, in the order given
        assert v["spec"]["change"] == {"commit": c, "generator": "model-x"}  # the shared fields on every one
    # --json: a list of the created objects
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:x1", "--image", "r/shop:x2", "--json")
    assert r.returncode == 0, r.stderr
    assert [v["metadata"]["name"] for v in json.loads(r.stdout)] == ["shop-x1", "shop-x2"]


def test_submit_several_builds_checks_the_whole_command_line_first(run, custom, ns):
    make_bakeoff(custom, ns)
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--image", "r/shop:2", "--commit", "abc1234")
    assert r.returncode == 2 and "1 --commit for 2 --image" in r.stderr, r.stderr
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--image", "r/shop:2", "--name", "a")
    assert r.returncode == 2 and "1 --name for 2 --image" in r.stderr, r.stderr
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--image", "other/shop:1")
    assert r.returncode == 2 and "would both be Variant shop-1" in r.stderr, r.stderr
    r = run("submit", "--bakeoff", "shop", "--image", "r/shop:1", "--image", "r/shop:2", "--name", "a", "--name", "B!")
    assert r.returncode == 2 and "--name 'B!'" in r.stderr, r.stderr
    assert variants(custom, ns) == []  # nothing sent for a bad command line


def test_submit_several_builds_enters_the_others_when_one_is_refused(run, custom, ns):
    make_bakeoff(custom, ns)
    assert run("submit", "--bakeoff", "shop", "--image", "r/shop:old", "--name", "taken").returncode == 0
    r = run(
        "submit", "--bakeoff", "shop",
        "--image", "r/shop:1", "--name", "first",
        "--image", "r/shop:2", "--name", "taken",
        "--image", "r/shop:3", "--name", "third",
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stdout.split() == ["first", "third"]
    assert "variant taken already exists" in r.stderr and "1 of 3 builds not entered: taken" in r.stderr, r.stderr
    names = {v["metadata"]["name"]: v["spec"]["image"] for v in variants(custom, ns)}
    assert names == {"taken": "r/shop:old", "first": "r/shop:1", "third": "r/shop:3"}
    # a missing Bakeoff: one error, nothing created
    r = run("submit", "--bakeoff", "nope", "--image", "r/shop:4", "--image", "r/shop:5")
    assert r.returncode == 1 and "bakeoff nope not found" in r.stderr
    assert len(variants(custom, ns)) == 3


def test_bad_kubeconfig_exit_2(tmp_path):
    missing = tmp_path / "nope.yaml"
    for args in (["submit", "--bakeoff", "shop", "--image", "r/shop:1"], ["status"], ["revert", "shop"]):
        r = subprocess.run(
            _cmd() + args + ["--kubeconfig", str(missing)], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]


def test_cluster_commands_report_errors_like_every_command(run, tmp_path, ns):
    """Issue 17: one CommandError class, one prefix (`bakeoff: error:`) and one exit-code table
    (bakeoff.cli.errors) for submit, status and revert as for run, demo and runs."""
    from bakeoff.cli import errors

    assert cluster_cli.CommandError is errors.CommandError
    assert issubclass(cluster_cli.UsageError, errors.CommandError)
    missing = str(tmp_path / "nope.yaml")
    cases = [
        # (argv, exit code, a piece of the message)
        (["submit", "--bakeoff", "shop", "--image", "r/shop:1", "--replicas", "0"], errors.EXIT_CONFIG, "--replicas"),
        (["status", "--kubeconfig", missing], errors.EXIT_CONFIG, "does not exist"),
        (["submit", "--bakeoff", "nope", "--image", "r/shop:1"], errors.EXIT_FAILED, "bakeoff nope not found"),
        (["status", "nope"], errors.EXIT_FAILED, "bakeoff nope not found"),
        (["revert", "nope"], errors.EXIT_FAILED, "bakeoff nope not found"),
    ]
    for argv, code, needle in cases:
        if missing in argv:
            r = subprocess.run(_cmd() + argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        else:
            r = run(*argv)
        lines = r.stderr.strip().splitlines()
        assert (r.returncode, len(lines)) == (code, 1), (argv, r.returncode, r.stderr)
        assert lines[0].startswith("bakeoff: error: ") and needle in lines[0], (argv, lines[0])


# --------------------------------------------------------------------------- status


def test_status_no_bakeoffs(run, ns):
    r = run("status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"no bakeoffs in namespace {ns}"
    r = run("status", "--json")
    assert json.loads(r.stdout) == {"bakeoffs": []}


def test_status_lists_bakeoffs(run, custom, ns):
    make_bakeoff(custom, ns, "shop", status={"phase": "Promoted", "winner": "fast", "mainline": "fast"})
    make_bakeoff(custom, ns, "search")
    for i in range(2):
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "variants",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Variant",
                "metadata": {"name": f"v{i}"},
                "spec": {"bakeoff": "shop", "image": f"r/shop:{i}"},
            },
        )
    r = run("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "MAINLINE", "WINNER", "CANDIDATES", "AGE"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows["shop"][:5] == ["shop", "Promoted", "fast", "fast", "2"]
    assert rows["search"][:5] == ["search", "-", "mainline", "-", "0"]
    doc = json.loads(run("status", "--json").stdout)
    assert sorted(b["metadata"]["name"] for b in doc["bakeoffs"]) == ["search", "shop"]


BAKEOFF_STATUS = {
    "phase": "Running",
    "mainline": "mainline",
    "routing": {
        "version": 7,
        "variants": [
            {"name": "mainline", "service": "shop-mainline", "port": 8080, "weight": 0.9},
            {"name": "cached", "service": "shop-cached", "port": 8080, "weight": 0.1},
        ],
    },
    "decision": {"action": "rollback", "rollback": ["slow"], "reason": "slow: latency_p99 worse by +31%"},
    "verdicts": {"variants": {"cached": {"requests": 4321}}},
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": "",
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        },
        {
            "type": "Judging",
            "status": "False",
            "reason": "InvalidSpec",
            "message": "spec.judge.source: unsupported scheme ftp",
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        },
    ],
}
CACHED_STATUS = {
    "phase": "Serving",
    "share": 0.1,
    "verdict": "conversion better (+1.2 pts); error_rate ok",
    "verdicts": [
        {
            "metric": "conversion",
            "state": "better",
            "estimate": 0.012,
            "ci": [0.004, 0.02],
            "control": 0.031,
            "candidate": 0.043,
        },
        {
            "metric": "latency_p99",
            "state": "non-inferior",
            "estimate": -0.05,
            "ci": [-0.12, 0.03],
            "control": 0.250,
            "candidate": 0.2375,
        },
    ],
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Available",
            "message": "",
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        }
    ],
}
SLOW_STATUS = {
    "phase": "RolledBack",
    "share": 0.0,
    "verdict": "latency_p99 worse",
    "failed": False,
    "verdicts": [{"metric": "latency_p99", "state": "worse", "estimate": 0.31, "ci": [0.2, 0.42]}],
    "conditions": [
        {
            "type": "RolledBack",
            "status": "True",
            "reason": "Worse",
            "message": "latency_p99 +31% (ci +20% .. +42%)",
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        },
        {
            "type": "Serving",
            "status": "False",
            "reason": "ScaledToZero",
            "message": "",
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        },
    ],
}


def _with_variants(custom, ns):
    make_bakeoff(custom, ns, status=BAKEOFF_STATUS)
    for name, commit, st in (("cached", "3f2a9c1e77", CACHED_STATUS), ("slow", "99aa00", SLOW_STATUS)):
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "variants",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Variant",
                "metadata": {"name": name},
                "spec": {"bakeoff": "shop", "image": f"r/shop:{name}", "change": {"commit": commit}},
            },
        )
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "variants", name, {"status": st}, _content_type=MERGE
        )
    # a variant of another bake-off must not show up
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "variants",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Variant",
            "metadata": {"name": "other"},
            "spec": {"bakeoff": "search", "image": "r/search:1"},
        },
    )


def _row(out: str, *first: str) -> list[str]:
    for line in out.splitlines():
        if line.split()[: len(first)] == list(first):
            return line.split()
    raise AssertionError(f"no row starting {first} in:\n{out}")


def test_status_of_a_bakeoff(run, custom, ns):
    _with_variants(custom, ns)
    r = run("status", "shop")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "phase:     Running" in out
    assert "mainline:  mainline (deployment shop)" in out
    assert "decision:  rollback (roll back slow) — slow: latency_p99 worse by +31%" in out
    assert "routing (version 7): mainline 90.0% -> shop-mainline:8080, cached 10.0% -> shop-cached:8080" in out
    assert _row(out, "cached")[:5] == ["cached", "Serving", "10.0%", "4321", "3f2a9c1e77"]
    assert "conversion better (+1.2 pts); error_rate ok" in out
    assert _row(out, "slow")[:5] == ["slow", "RolledBack", "0.0%", "-", "99aa00"]
    assert _row(out, "cached", "conversion") == [
        "cached",
        "conversion",
        "better",
        "+0.012",
        "[+0.004,",
        "+0.02]",
        "0.031",
        "0.043",
    ]
    assert _row(out, "cached", "latency_p99")[2] == "non-inferior"
    assert _row(out, "slow", "latency_p99")[:4] == ["slow", "latency_p99", "worse", "+0.31"]
    # conditions: the False one and those with messages, not the plain Ready=True ones
    assert _row(out, "bakeoff/shop", "Judging") == [
        "bakeoff/shop",
        "Judging",
        "False",
        "InvalidSpec",
        "spec.judge.source:",
        "unsupported",
        "scheme",
        "ftp",
    ]
    assert _row(out, "variant/slow", "RolledBack")[2:4] == ["True", "Worse"]
    assert _row(out, "variant/slow", "Serving") == ["variant/slow", "Serving", "False", "ScaledToZero"]
    assert "Available" not in out and "Reconciled" not in out
    assert "other" not in out


def test_status_json(run, custom, ns):
    _with_variants(custom, ns)
    r = run("status", "shop", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["bakeoff"]["metadata"]["name"] == "shop"
    assert doc["bakeoff"]["status"]["routing"]["version"] == 7
    assert [v["metadata"]["name"] for v in doc["variants"]] == ["cached", "slow"]
    assert doc["variants"][0]["status"]["verdicts"][0]["ci"] == [0.004, 0.02]


def test_status_rich_rendering(custom, cluster, ns):
    from rich.console import Console

    _with_variants(custom, ns)
    _, report = cluster_cli.collect(cluster, "shop")
    buf = io.StringIO()
    cluster_cli.render_rich(report, Console(file=buf, width=220, force_terminal=False, color_system=None))
    out = buf.getvalue()
    for needle in (
        "Running",
        "cached",
        "Serving",
        "10.0%",
        "4321",
        "better",
        "[+0.004, +0.02]",
        "InvalidSpec",
        "unsupported scheme ftp",
        "routing (version 7)",
    ):
        assert needle in out, needle


def test_status_missing_bakeoff(run, ns):
    r = run("status", "nope")
    assert r.returncode == 1
    assert f"bakeoff nope not found in namespace {ns}" in r.stderr


def test_status_watch_refreshes_until_interrupted(kube, custom, ns):
    make_bakeoff(custom, ns, status={"phase": "Running"})
    argv = _cmd() + [
        "status",
        "shop",
        "--watch",
        "--json",
        "--interval",
        "0.2",
        "--kubeconfig",
        kube.kubeconfig,
        "-n",
        ns,
    ]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = json.loads(p.stdout.readline())
        assert first["bakeoff"]["status"]["phase"] == "Running"
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "bakeoffs", "shop", {"status": {"phase": "Stopped"}}, _content_type=MERGE
        )
        for _ in range(100):  # the next refreshes show the change
            doc = json.loads(p.stdout.readline())
            if doc["bakeoff"]["status"]["phase"] == "Stopped":
                break
        else:
            pytest.fail("status --watch never showed the new phase")
        p.send_signal(signal.SIGINT)
        # keep reading: a watch blocked writing to a full pipe could not see the interrupt
        p.communicate(timeout=60)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- revert


def template(image: str, sidecar: str = "r/proxy:1") -> dict:
    return {
        "metadata": {"labels": {"app": "shop"}},
        "spec": {
            "containers": [
                {"name": "app", "image": image, "ports": [{"containerPort": 8080}]},
                {"name": "proxy", "image": sidecar},
            ]
        },
    }


def make_deployment(apps, ns: str, annotations: dict | None, image: str = "r/shop:cached") -> dict:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "annotations": annotations or {}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}}, "template": template(image)},
    }
    return apps.create_namespaced_deployment(ns, body)


PROMOTION = {
    "bakeoff": "shop",
    "variant": "cached",
    "uid": "1234-5678",
    "image": "r/shop:cached",
    "at": "2024-05-01T10:00:00Z",
}


def promoted_annotations(extra: dict | None = None) -> dict:
    prev = template("r/shop:old")
    prev["metadata"]["annotations"] = {"kept": "yes"}
    a = {
        "bakeoff.dev/previous-template": json.dumps(prev),
        "bakeoff.dev/promotion": json.dumps(PROMOTION),
        "team": "shop-team",
    }
    a.update(extra or {})
    return a


def test_revert_restores_the_previous_template(run, custom, apps, ns):
    make_bakeoff(custom, ns, status={"phase": "Promoted", "winner": "cached"})
    make_deployment(apps, ns, promoted_annotations())
    r = run("revert", "shop")
    assert r.returncode == 0, r.stderr
    assert "deployment shop: template from before the promotion of cached (image r/shop:cached) restored" in r.stdout
    assert "container app: r/shop:cached -> r/shop:old" in r.stdout
    d = apps.read_namespaced_deployment("shop", ns)
    assert [c.image for c in d.spec.template.spec.containers] == ["r/shop:old", "r/proxy:1"]
    assert d.spec.template.metadata.annotations == {"kept": "yes"}
    ann = d.metadata.annotations
    assert "bakeoff.dev/previous-template" not in ann and "bakeoff.dev/promotion" not in ann
    assert ann["team"] == "shop-team"
    reverted = json.loads(ann["bakeoff.dev/reverted"])
    assert reverted["variant"] == "cached" and reverted["at"].endswith("Z")
    # a second revert has nothing left to do
    r = run("revert", "shop")
    assert r.returncode == 1 and "deployment shop has no promotion to revert" in r.stderr


def test_revert_dry_run_changes_nothing(run, custom, apps, ns):
    make_bakeoff(custom, ns)
    before = make_deployment(apps, ns, promoted_annotations())
    r = run("revert", "shop", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "container app: r/shop:cached -> r/shop:old" in r.stdout
    assert "proxy" not in r.stdout  # unchanged images are not listed
    after = apps.read_namespaced_deployment("shop", ns)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.template.spec.containers[0].image == "r/shop:cached"


def test_revert_without_promotion(run, custom, apps, ns):
    make_bakeoff(custom, ns)
    make_deployment(apps, ns, {"team": "shop-team"})
    r = run("revert", "shop")
    assert r.returncode == 1
    assert "deployment shop has no promotion to revert" in r.stderr
    assert apps.read_namespaced_deployment("shop", ns).spec.template.spec.containers[0].image == "r/shop:cached"


def test_revert_missing_deployment_and_bakeoff(run, custom, ns):
    r = run("revert", "shop")
    assert r.returncode == 1 and f"bakeoff shop not found in namespace {ns}" in r.stderr
    make_bakeoff(custom, ns)
    r = run("revert", "shop")
    assert r.returncode == 1 and "deployment shop" in r.stderr and "not found" in r.stderr


def test_revert_refuses_another_bakeoffs_promotion(run, custom, apps, ns):
    make_bakeoff(custom, ns)
    make_deployment(
        apps, ns, promoted_annotations({"bakeoff.dev/promotion": json.dumps(dict(PROMOTION, bakeoff="other"))})
    )
    r = run("revert", "shop")
    assert r.returncode == 1 and "promoted by bakeoff other" in r.stderr
    assert apps.read_namespaced_deployment("shop", ns).spec.template.spec.containers[0].image == "r/shop:cached"


def test_revert_retries_a_conflicting_update(custom, apps, cluster, ns):
    make_bakeoff(custom, ns)
    make_deployment(apps, ns, promoted_annotations())
    writes = []

    def concurrent_writer(attempt: int) -> None:
        if attempt == 1:  # between our read and our replace: the API server will answer 409
            apps.patch_namespaced_deployment(
                "shop", ns, {"metadata": {"labels": {"touched": "by-someone"}}, "spec": {"replicas": 5}}
            )
            writes.append(attempt)

    r = cluster_cli.revert_mainline(cluster, "shop", before_write=concurrent_writer)
    assert writes == [1] and r.attempts == 2
    d = apps.read_namespaced_deployment("shop", ns)
    assert d.spec.template.spec.containers[0].image == "r/shop:old"
    assert d.metadata.labels == {"touched": "by-someone"} and d.spec.replicas == 5  # the other write survives
    assert "bakeoff.dev/reverted" in d.metadata.annotations


def test_revert_gives_up_after_five_conflicts(custom, apps, cluster, ns):
    make_bakeoff(custom, ns)
    make_deployment(apps, ns, promoted_annotations())
    attempts = []

    def always(attempt: int) -> None:
        attempts.append(attempt)
        apps.patch_namespaced_deployment("shop", ns, {"metadata": {"labels": {"n": str(attempt)}}})

    with pytest.raises(cluster_cli.CommandError, match="5 times"):
        cluster_cli.revert_mainline(cluster, "shop", before_write=always)
    assert attempts == [1, 2, 3, 4, 5]
    d = apps.read_namespaced_deployment("shop", ns)
    assert d.spec.template.spec.containers[0].image == "r/shop:cached"
    assert "bakeoff.dev/previous-template" in d.metadata.annotations
