"""examples/tournament through the real entry point (`python -m bakeoff run ... --headless
--exit-on-decision` as a subprocess): ten implementations of one service on live traffic with
adaptive allocation; the run must decide correctly, and its report must show every interval's
shares and why each retired candidate left (issue 19 items 3 and 4).  Also: a run of 20 variants."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOURNAMENT = ROOT / "examples" / "tournament" / "bakeoff.yaml"
BAKEOFF = [sys.executable, "-m", "bakeoff"]

# serial: latency guardrails judge real processes; slow: whole bake-offs (about a minute each)
pytestmark = [pytest.mark.slow, pytest.mark.serial]

WORSE = {"broken-item", "remote-prices", "confirm-twice"}  # worse than the mainline by construction


def bakeoff(*args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    return subprocess.run([*BAKEOFF, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tournament(tmp_path_factory):
    state = tmp_path_factory.mktemp("tournament") / "state"
    r = bakeoff("run", str(TOURNAMENT), "--headless", "--exit-on-decision", "--state-dir", str(state))
    return state, r


def test_the_tournament_rolls_back_the_broken_route_and_promotes_the_better_checkout(tournament):
    state, r = tournament
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    status = json.loads((state / "status.json").read_text())
    v = status["variants"]
    assert len(v) == 9 and all(x["phase"] != "Pending" for x in v.values()), v  # the mainline and nine candidates
    d = status["decision"]
    assert d["action"] == "promote" and d["winner"] == "one-page-checkout", d
    assert "conversion" in d["reason"]
    # the build that fails on one route is rolled back on its error rate, and the judge puts the failure on
    # that route: at the look that rolled it back, the item route's estimate is the one far above the
    # mainline's.  (Which of the whole-service and the item tests crosses first is a race: usually both at
    # the same look, "error_rate +18 points, item error_rate +56 points"; once in about nine runs the
    # whole-service test alone, with the item route's 80-odd requests still inconclusive.)
    assert v["broken-item"]["phase"] == "RolledBack", v["broken-item"]
    assert "error_rate" in v["broken-item"]["reason"], v["broken-item"]["reason"]
    looks = [json.loads(line) for line in (state / "verdicts.jsonl").read_text().splitlines() if line.strip()]
    at = next(
        x["variants"]["broken-item"]["metrics"]
        for x in looks
        if x["variants"].get("broken-item", {}).get("status") == "rolled_back"
    )
    by_route = {
        k.split("@")[1]: m["estimate"]
        for k, m in at.items()
        if k.startswith("error_rate @") and m["estimate"] is not None
    }
    assert by_route["item"] > 0.3 and all(e < 0.05 for r, e in by_route.items() if r != "item"), by_route
    # no worse build is promoted (or still serving)
    for name in WORSE:
        assert v[name]["phase"] in ("RolledBack", "Lost"), (name, v[name])
    promoted = [n for n, x in v.items() if x["phase"] == "Promoted"]
    assert promoted == ["one-page-checkout"], promoted
    assert "decision: promote one-page-checkout" in r.stdout
    # the headless rows line up however long a name is (before, `one-page-checkout` pushed its row's
    # columns two places right of the others')
    starts = {m.start(1) - m.start(0) for m in re.finditer(r"^  \S+ +\S+ +(share=)", r.stdout, re.M)}
    assert len(starts) == 1, starts


def test_adaptive_allocation_moved_traffic_and_retired_candidates_with_a_reason(tournament):
    state, _ = tournament
    records = journal(state)
    allocated = [e for e in records if e["type"] == "allocated"]
    assert allocated, [e["type"] for e in records]
    # the winner got more than its first step at some interval
    assert max(e["shares"].get("one-page-checkout", 0.0) for e in allocated) > 0.07 + 1e-6, allocated
    retired = [e for e in records if e["type"] == "lost" and e.get("retired_by") == "allocation"]
    assert retired, [(e["type"], e.get("variant")) for e in records]
    assert all(e["reason"].startswith("Lost: cannot beat ") for e in retired), retired


def test_the_report_charts_every_allocation_and_says_why_each_retired_candidate_left(tournament):
    state, _ = tournament
    allocated = [e for e in journal(state) if e["type"] == "allocated"]
    retired = {e["variant"]: e["reason"] for e in journal(state) if e.get("retired_by") == "allocation"}
    page = (state / "report.html").read_text()
    shares = re.search(r'<figure id="shares">(.*?)</figure>', page, re.S)
    assert shares, "no shares chart"
    # one mark per allocated record in the shares chart
    assert f'data-count="{len(allocated)}"' in shares.group(1)
    assert shares.group(1).count('class="allocated"') == len(allocated)
    # the chart's step line follows the allocated shares: the winner's polyline reaches its largest share
    from bakeoff.controller.report.model import shares_over_time

    rep = json.loads((state / "report.json").read_text())
    line = shares_over_time(rep)["one-page-checkout"]
    for e in allocated:
        if "one-page-checkout" in e["shares"]:
            assert (e["at"], e["shares"]["one-page-checkout"]) in line, e
    # each retired candidate's row says why, and that adaptive allocation retired it
    for name, reason in retired.items():
        row = re.search(rf'<tr data-variant="{re.escape(name)}">(.*?)</tr>', page, re.S)
        assert row, name
        cell = re.search(r'<td class="l retired">(.*?)</td>', row.group(1), re.S)
        assert cell and "retired by adaptive allocation" in cell.group(1), row.group(1)
        assert reason.split(",")[0].replace("'", "&#39;") in cell.group(1), (reason, cell.group(1))


def test_a_run_of_twenty_variants_starts_serves_and_decides(tmp_path):
    """The variants list of a local run up to the limit (20): the mainline and 19 candidates, each
    its own process on its own port, all admitted and judged; one converts better and wins."""
    docs = list(yaml.safe_load_all(TOURNAMENT.read_text()))
    b = docs[0]
    b["spec"]["mainline"]["workingDir"] = str(TOURNAMENT.parent)
    b["spec"]["mainline"]["startTimeout"] = "120s"
    b["spec"]["routing"].update(steps=[0.035], maxStep=0.05)
    b["spec"]["judge"]["maxDuration"] = "240s"
    impls = ["indexed.py", "prerendered.py", "streams.py", "pretty.py", "mainline.py"]
    variants = []
    for i in range(18):
        variants.append(
            {
                "apiVersion": "bakeoff.dev/v1alpha1",
                "kind": "Variant",
                "metadata": {"name": f"build-{i:02d}"},
                "spec": {
                    "bakeoff": "tournament",
                    "command": ["python", impls[i % len(impls)], "--port", "{port}"],
                    "workingDir": str(TOURNAMENT.parent),
                },
            }
        )
    variants.append(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "Variant",
            "metadata": {"name": "better"},
            "spec": {
                "bakeoff": "tournament",
                "command": ["python", "one_page_checkout.py", "--port", "{port}"],
                "workingDir": str(TOURNAMENT.parent),
            },
        }
    )
    spec = tmp_path / "twenty.yaml"
    spec.write_text(yaml.safe_dump_all([b, *variants], sort_keys=False))
    state = tmp_path / "state"
    r = bakeoff("run", str(spec), "--headless", "--exit-on-decision", "--state-dir", str(state), timeout=330)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    status = json.loads((state / "status.json").read_text())
    assert len(status["variants"]) == 19  # the candidates; with the mainline, 20 variants
    admitted = {e["variant"] for e in journal(state) if e["type"] == "admitted"}
    assert len(admitted) == 19, sorted(admitted)
    assert status["decision"]["winner"] == "better", status["decision"]
    # the terminal table: one line per variant, every name whole
    for name in ["mainline", *status["variants"]]:
        assert re.search(rf"^  {re.escape(name)}\s", r.stdout, re.M), name
