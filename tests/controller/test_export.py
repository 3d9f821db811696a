"""`bakeoff report DIR --format csv|parquet|json`: the evidence over time of a real `bakeoff run`,
read back with pandas and checked row by row against the run's verdicts.jsonl and journal."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from tests.controller.conftest import BAKEOFF, ROOT, bakeoff_doc, drive_load, variant_doc, write_docs

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.slow


def bakeoff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BAKEOFF, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A short real bake-off: an erroring build rolled back, a better one promoted."""
    from tests.controller.conftest import RunProcess

    tmp = tmp_path_factory.mktemp("export")
    routing = {"stickiness": {"header": "X-User-Id"}, "maxCandidateShare": 0.8, "steps": [0.3], "stepInterval": "2s"}
    # No latency guardrail: beside the xdist pass a just-started `better` read +201% p50 at its first
    # look and was rolled back (CI), and there was no promotion to export (the tolerance can't exceed 1.0)
    judge = bakeoff_doc()["spec"]["judge"]
    judge["guardrails"] = [g for g in judge["guardrails"] if g["metric"] != "latency_p50"]
    spec = write_docs(
        tmp / "bake.yaml",
        [
            bakeoff_doc(routing={**routing, "routes": [{"name": "items", "match": "/item/*"}]}, judge=judge),
            variant_doc("erroring", "error"),
            variant_doc("better", "better"),
        ],
    )
    run = RunProcess(spec, tmp / "state", "--exit-on-decision")

    async def drive() -> None:
        from tests.conftest import eventually_async

        st = await eventually_async(
            lambda: (lambda s: s if s and len(s.get("weights", {})) == 3 else None)(run.status()),
            what="both admitted",
            timeout=60,
        )
        stop = asyncio.Event()
        load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=32))
        try:
            await eventually_async(lambda: run.proc.poll() is not None, what="the run's decision and exit", timeout=120)
        finally:
            stop.set()
            await load

    try:
        asyncio.run(drive())
    finally:
        run.kill()
    assert run.proc.returncode == 0, run.output()[-3000:]
    return tmp / "state"


def _looks(state):
    return [json.loads(line) for line in (state / "verdicts.jsonl").read_text().splitlines()]


def _journal(state):
    return [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_reads_back_with_pandas_and_matches_the_journal(finished_run, fmt, tmp_path):
    state = finished_run
    r = bakeoff("report", str(state), "--format", fmt)
    assert r.returncode == 0, r.stderr
    path = state / f"evidence.{fmt}"
    assert r.stdout.startswith(f"{fmt}: {path} (")
    df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](path)
    looks = _looks(state)
    # one row per look, variant and metric (a per-route metric "<metric> @<route>" is its own row)
    expected = {
        (lk["look"], v, m): mv for lk in looks for v, vv in lk["variants"].items() for m, mv in vv["metrics"].items()
    }
    assert len(df) == len(expected) > 0
    assert int(r.stdout.split("(")[1].split()[0]) == len(df)
    for row in df.itertuples():
        key = (row.look, row.variant, row.metric + (f" @{row.route}" if isinstance(row.route, str) else ""))
        mv = expected[key]
        for col, want in (("estimate", mv["estimate"]), ("lower", mv["ci"][0]), ("upper", mv["ci"][1])):
            got = getattr(row, col)
            assert (pd.isna(got) and want is None) or got == pytest.approx(want, rel=1e-9, abs=1e-12), (key, col)
        assert row.state == mv["state"]
    assert set(df["route"].dropna()) >= {"items"}  # per-route evidence as well as the whole service's
    assert {"error_rate", "conversion"} <= set(df["metric"])
    # the decision in force after each look: the variant's last journal record before the next look
    journal = _journal(state)
    rb = next(e for e in journal if e["type"] == "rolled_back" and e["variant"] == "erroring")
    pr = next(e for e in journal if e["type"] == "promoted")
    at = {lk["look"]: lk["at"] for lk in looks}
    rb_look = max(n for n, t in at.items() if t <= rb["at"])  # the look the rollback was decided on
    pr_look = max(n for n, t in at.items() if t <= pr["at"])
    err = df[df["variant"] == "erroring"]
    assert set(err[err["look"] >= rb_look]["decision"]) == {"rolled_back"}, rb_look
    assert set(err[err["look"] < rb_look]["decision"]) <= {"admitted", "ramped"}
    assert (err[err["look"] >= rb_look]["decision_reason"] == rb["reason"]).all()
    better = df[df["variant"] == "better"]
    assert set(better[better["look"] >= pr_look]["decision"]) == {"promoted"}
    assert set(better[better["look"] < pr_look]["decision"]) <= {"admitted", "ramped", "winner"}
    assert set(df[df["variant"] == "mainline"]["decision"].dropna()) <= {"promoted"}
    assert list(df["look"]) == sorted(df["look"])


def test_export_to_a_chosen_file_and_bad_input(finished_run, tmp_path):
    out = tmp_path / "e.csv"
    r = bakeoff("report", str(finished_run), "--format", "csv", "--output", str(out))
    assert r.returncode == 0 and out.exists(), r.stderr
    r = bakeoff("report", str(finished_run), "--format", "xlsx")
    assert r.returncode == 2 and "invalid choice: 'xlsx'" in r.stderr
    empty = tmp_path / "fresh"
    empty.mkdir()
    (empty / "journal.jsonl").write_text("")
    r = bakeoff("report", str(empty), "--format", "json")
    assert r.returncode == 1 and f"{empty / 'verdicts.jsonl'}: no looks recorded yet" in r.stderr, r.stderr
