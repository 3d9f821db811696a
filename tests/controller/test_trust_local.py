"""Trust in local runs (issue 16): a mainline that cannot start ends the run; a run whose mainline and
candidates are all gone exits; health checks say what they got; guardrails act while a winner waits
for approval; approvals name the variant that waits and are journaled with who and why; commands on
a state directory that does not exist say so."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import subprocess
import sys

import pytest

from tests.conftest import eventually_async
from tests.controller.conftest import ROOT, SERVICE, bakeoff_doc, drive_load, variant_doc, write_docs

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bakeoff", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def after_flag(flag, tail: str) -> list[str]:
    """A command that waits for the file `flag` to appear, then runs `tail` (shell)."""
    return ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.2; done; {tail}"]


def never_answers() -> list[str]:
    # accepts connections, never answers: health checks time out
    code = (
        "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',int(sys.argv[1]))); s.listen(); time.sleep(300)"
    )
    return ["python", "-c", code, "{port}"]


async def wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit code, or None if the process still runs after ``timeout`` (the caller's assertion shows its output)."""
    with contextlib.suppress(AssertionError):
        await eventually_async(proc.poll, until=lambda code: code is not None, timeout=timeout, what="the exit")
    return proc.poll()


async def test_a_mainline_that_never_becomes_healthy_ends_the_run_with_exit_1_naming_it(tmp_path, runs):
    # http.server answers 404 on /healthz: the mainline never becomes healthy
    main = {"command": ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"], "startTimeout": "3s"}
    docs = [
        bakeoff_doc(mainline=main),
        variant_doc("good", "good"),
        variant_doc("refusing", "good", command=["sleep", "300"], startTimeout="3s"),
        variant_doc("silent", "good", command=never_answers(), startTimeout="4s"),
    ]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    code = await wait_exit(run.proc, 60)
    out = run.output()
    assert code == 1, f"exit {code}\n{out[-3000:]}"
    err = [line for line in out.splitlines() if line.startswith("bakeoff: error:")]
    assert err, out[-3000:]
    assert "mainline mainline failed to start" in err[-1], err
    assert "GET /healthz answered 404" in err[-1], err
    assert "command: " in err[-1] and "http.server" in err[-1], err
    assert f"log: {state / 'logs' / 'mainline.log'}" in err[-1], err
    assert [e for e in run.journal() if e["type"] == "mainline_failed"], run.journal()


async def test_health_checks_say_what_they_got_and_a_never_healthy_candidate_failed_to_start(tmp_path, runs):
    docs = [
        bakeoff_doc(),
        variant_doc("refusing", "good", command=["sleep", "300"], startTimeout="3s"),
        variant_doc("silent", "good", command=never_answers(), startTimeout="4s"),
    ]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    assert await wait_exit(run.proc, 90) == 3, run.output()[-3000:]
    st = run.status() or {}
    refusing, silent = st["variants"]["refusing"], st["variants"]["silent"]
    assert "connection refused on 127.0.0.1:" in refusing["reason"], refusing
    assert "timed out" in silent["reason"], silent
    shown = cli("status", str(state))
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()[2:]}
    assert "Failed to start" in lines["refusing"] and "Failed to start" in lines["silent"], shown.stdout
    report = (state / "report.md").read_text()
    assert "Failed to start" in report, report[:3000]


async def test_exit_on_decision_exits_when_the_mainline_and_every_candidate_are_gone(tmp_path, runs):
    kill_main, kill_cand = tmp_path / "main-dies", tmp_path / "cand-dies"
    main = {
        "command": [
            "sh",
            "-c",
            f"{sys.executable} {SERVICE} --port {{port}} --behaviour good & pid=$!; "
            f"while [ ! -e {kill_main} ]; do sleep 0.2; done; kill $pid; exit 1",
        ]
    }
    docs = [
        bakeoff_doc(mainline=main),
        variant_doc("late", "good", command=after_flag(kill_cand, "exit 1"), startTimeout="300s"),
    ]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    await run.wait_for(lambda s: s.get("weights", {}).get("mainline"), 60, "the mainline serving")
    kill_main.touch()
    await run.wait_for(lambda s: s.get("mainline_failed"), 30, "the mainline's death recorded")
    kill_cand.touch()
    await run.wait_for(lambda s: s.get("decision"), 30, "the stop")
    code = await wait_exit(run.proc, 30)
    assert code == 3, f"exit {code}: {run.output()[-3000:]}"


async def test_guardrails_act_while_a_winner_waits_and_approvals_are_checked_and_journaled(tmp_path, runs):
    go = tmp_path / "erroring-may-start"
    late_erroring = after_flag(go, f"exec {sys.executable} {SERVICE} --port $PORT --behaviour error")
    docs = [
        bakeoff_doc(promotion={"mode": "manual"}),
        variant_doc("better", "better"),
        variant_doc("erroring", "error", command=late_erroring, startTimeout="300s"),
    ]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    st = await run.wait_for(lambda s: s if s.get("router", {}).get("url") else None, 30, "the router")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=30))
    try:
        await run.wait_for(lambda s: s if s["phase"] == "AwaitingApproval" else None, 90, "a winner waiting")
        wrong = cli("approve", str(state), "erroring")
        assert wrong.returncode == 1, wrong.stdout + wrong.stderr
        assert "erroring is not waiting for approval" in wrong.stderr and "waiting: better" in wrong.stderr
        assert not (state / "approve").exists()
        go.touch()  # a candidate joins while the winner waits, and is worse on error_rate
        await run.wait_for(lambda s: s["variants"]["erroring"]["phase"] == "Serving", 60, "erroring admitted")
        st = await run.wait_for(
            lambda s: s if s["variants"]["erroring"]["phase"] == "RolledBack" else None, 90, "erroring rolled back"
        )
        assert st["phase"] == "AwaitingApproval" and st["weights"].get("erroring") is None, st
        assert "error_rate" in st["variants"]["erroring"]["reason"], st["variants"]["erroring"]
        ok = cli("approve", str(state), "better", "--reason", "checked the dashboards")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        st = await run.wait_for(lambda s: s if s.get("decision") else None, 30, "the promotion")
    finally:
        stop.set()
        await load
    assert st["decision"]["winner"] == "better"
    assert run.proc.wait(30) == 0
    approved = [e for e in run.journal() if e["type"] == "approved"]
    assert len(approved) == 1, approved
    assert approved[0]["variant"] == "better" and approved[0]["user"] == getpass.getuser()
    assert approved[0]["note"] == "checked the dashboards" and approved[0]["at"] > 0
    assert f"approved by {getpass.getuser()}: checked the dashboards" in (state / "report.md").read_text()


def test_commands_on_a_state_directory_that_does_not_exist_say_so(tmp_path):
    missing = tmp_path / "no-such-run"
    for args in (["status"], ["report"], ["abort"], ["approve"], ["list"]):
        r = cli(*args, str(missing))
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert f"{missing}: no such directory" in r.stderr, (args, r.stderr)
        assert "kubeconfig" not in r.stderr.lower(), (args, r.stderr)


async def test_exit_on_decision_exits_when_no_candidate_is_left_and_the_mainline_never_started(tmp_path, runs):
    # the only candidate fails at once (a stop without a winner); the mainline never answers its
    # health check: nothing can serve the final split, so the run must end rather than wait forever
    main = {"command": ["sleep", "300"], "startTimeout": "8s"}
    docs = [bakeoff_doc(mainline=main), variant_doc("broken", "good", command=["sh", "-c", "exit 1"])]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    await run.wait_for(lambda s: s.get("decision"), 60, "the stop")
    code = await wait_exit(run.proc, 60)
    out = run.output()
    assert code == 1, f"exit {code}: {out[-3000:]}"
    assert "mainline mainline failed to start" in out and "connection refused on 127.0.0.1:" in out, out[-3000:]


async def test_a_misspelt_objective_with_a_kind_is_warned_about_at_start(tmp_path, runs):
    b = bakeoff_doc()
    b["spec"]["judge"]["objective"]["metric"] = "convertion"  # the service reports `conversion`
    spec = write_docs(tmp_path / "bake.yaml", [b, variant_doc("a", "good")])
    run = runs(spec, tmp_path / "state")
    st = await run.wait_for(lambda s: s if s.get("router", {}).get("url") else None, 30, "the router")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=8))
    try:
        await eventually_async(
            run.output, until=lambda out: "did you mean" in out, timeout=60, what="a did-you-mean warning"
        )
    finally:
        stop.set()
        await load
    warning = [line for line in run.output().splitlines() if "'convertion' was not reported" in line]
    assert warning, run.output()[-3000:]
    assert "objective metric" in warning[0] and "did you mean 'conversion'?" in warning[0], warning


@pytest.mark.parametrize(("name", "hint"), [("eror_rate", "error_rate"), ("latency_99", "latency_p99")])
def test_a_misspelt_guardrail_name_gets_a_did_you_mean(tmp_path, name, hint):
    b = bakeoff_doc()
    b["spec"]["judge"]["guardrails"][0]["metric"] = name
    spec = write_docs(tmp_path / "bake.yaml", [b, variant_doc("a", "good")])
    r = cli("run", str(spec), "--state-dir", str(tmp_path / "state"), "--headless")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "guardrails[0].metric" in r.stderr and f"did you mean {hint!r}?" in r.stderr, r.stderr
