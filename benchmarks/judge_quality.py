"""Judge quality in simulation: bakeoff's judge vs Kayenta- and Flagger-style rules.

Every method sees the *same* simulated request streams (lognormal latency with
sigma_log 0.5 and a 100 ms median, 1% errors, 5% conversion), looked at on a
fixed cadence.  Per scenario and method it reports the family-wise false-alarm
rate (A/A), the rate of right decisions (power), wrong-direction decisions,
and the median / p90 number of requests per variant until the right decision.

Methods
- ``bakeoff``: judge.core.step on the cumulative snapshots (anytime-valid).
- ``kayenta``: NetflixACAJudge-style.  At every look, per metric, the
  per-interval values of candidate and control (one value per look's batch,
  cumulative from the start as Spinnaker's canary stage does) are compared by
  a two-sided Mann-Whitney confidence interval at 98% for the Hodges-Lehmann
  shift; the metric fails ("High"/"Low" in its harmful direction) when the
  interval lies beyond the tolerance 0.25 x |HL estimate|.  Score = share of
  metrics that pass; a look scoring below the marginal threshold (75) rolls
  back at once; the final look must score at least the pass threshold (95).
  No correction for repeated looks.
- ``flagger`` / ``flagger5``: one value per metric per interval against a fixed
  threshold (success rate >= 98%, p99 <= 1.25 x and p50 <= 1.1 x the
  baseline's, like a user tuning Flagger's request-success-rate and
  request-duration checks to this service); a failed check (or no value)
  counts, and N failed checks (N = 1, Flagger's failure threshold as in the
  issue, and N = 5) roll back; otherwise the canary is promoted at the end.

Configurations of bakeoff's judge (alpha 0.05, minSamples 500):
- ``guard``: error_rate maxIncrease 0 (any rise), latency_p50 +2%,
  latency_p99 +5%; objective conversion (higher).  Used for A/A and the
  harmful scenarios.  A zero error tolerance cannot be shown non-inferior by
  an equal candidate, so it never promotes.
- ``ship``: the same with error_rate maxIncrease 0.002 (0.2 points), which
  can promote; used for the better-conversion scenario and an A/A k=4 that
  measures false promotions.

Issue 12 scenarios (``i1_`` .. ``i5_`` keys): an A/A ramp 5% -> 20% -> 50%
(objective "out" and one-sided error/conversion rates), a regression after
non-inferiority, a variant missing from every third snapshot (request
inflation), state/interval disagreement per kind, and per-route judging (a
regression on one small route; a uniform slowdown judged stratified by route
versus whole-service: the sample-size change).  ONLY=issue12 runs just those.

Issue 19 (``alloc_`` keys): ``allocation: adaptive`` against the fixed split on the same
streams (``run_tournament``: the controller's reconcile and the judge's step, k = 5, 10, 20
candidates, one +1 point of conversion at 10%, the others equal or worse, some worse on the
error guardrail): requests until the promotion, requests served by worse-than-mainline
candidates (regret), P(promote the best), and false promotions in A/A at k = 10 and 20.
ONLY=allocation runs just those (ALLOC_RUNS, ALLOC_AA_RUNS set the number of streams).

QUICK=1 runs fewer streams (under 3 minutes on 2 cores).  The last line of
output is one JSON object with the headline figures.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np

from bakeoff.contracts.histogram import NUM_BUCKETS, bucket_value
from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.metric_test import verdict_tolerance_change
from bakeoff.judge.simulate import Arm, Route, Stream

QUICK = os.environ.get("QUICK") == "1"
BUCKET_VALUES = np.array([bucket_value(i) for i in range(NUM_BUCKETS)])
BASE = Arm()
BASE_P50 = BASE.median
BASE_P99 = BASE.median * math.exp(BASE.sigma * 2.3263)
Z99 = 2.3263  # two-sided 98%

GUARDRAILS = [
    {"metric": "error_rate", "maxIncrease": 0.0},
    {"metric": "latency_p99", "maxIncreaseRatio": 0.05},
    {"metric": "latency_p50", "maxIncreaseRatio": 0.02},
]
OBJECTIVE = {"metric": "conversion", "kind": "proportion", "direction": "higher"}


def judge_config(kind: str, max_samples: int):
    guard = [dict(g) for g in GUARDRAILS]
    if kind == "ship":
        guard[0]["maxIncrease"] = 0.002
    return config_from_dict(
        {
            "alpha": 0.05,
            "control": "mainline",
            "minSamples": 500,
            "maxSamples": max_samples,
            "guardrails": guard,
            "objective": OBJECTIVE,
        },
        f"benchmark-{kind}",
    )


@dataclass
class Scenario:
    name: str
    candidate: Arm
    k: int
    right: str  # none | rollback | promote | not_promote
    batch: int
    max_n: int
    runs: int
    config: str = "guard"
    seed: int = 0


def scenarios() -> list[Scenario]:
    q = QUICK
    return [
        Scenario("aa_k1", Arm(), 1, "none", 200, 20_000, 200 if q else 1000, seed=1),
        Scenario("aa_k4", Arm(), 4, "none", 200, 20_000, 120 if q else 600, seed=2),
        Scenario("aa_k4_ship", Arm(), 4, "none", 200, 20_000, 80 if q else 400, config="ship", seed=3),
        Scenario("latency5", Arm(median=0.105), 1, "rollback", 200, 30_000, 100 if q else 400, seed=4),
        Scenario("p99_20", Arm(tail_factor=1.2), 1, "rollback", 200, 30_000, 100 if q else 400, seed=5),
        Scenario("errors", Arm(error_rate=0.015), 1, "rollback", 200, 40_000, 100 if q else 400, seed=6),
        Scenario(
            "conversion_minus2", Arm(conversion=0.049), 1, "not_promote", 10_000, 1_500_000, 30 if q else 120, seed=7
        ),
        Scenario(
            "conversion_better",
            Arm(conversion=0.055),
            1,
            "promote",
            1000,
            150_000,
            60 if q else 300,
            config="ship",
            seed=8,
        ),
    ]


# --- Kayenta-style ------------------------------------------------------------


def mw_classify(x: np.ndarray, y: np.ndarray, harm: int) -> bool:
    """True when the metric fails: Mann-Whitney 98% CI of the HL shift beyond 0.25*|HL| in the harmful direction."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return False
    if np.array_equal(x, y):
        return False
    d = (x[:, None] - y[None, :]).ravel()
    mn = m * n
    k = int(math.floor(mn / 2.0 - Z99 * math.sqrt(mn * (m + n + 1) / 12.0)))
    hl = float(np.median(d))
    if k < 0:
        return False
    part = np.partition(d, (k, mn - 1 - k))
    lo, hi = float(part[k]), float(part[mn - 1 - k])
    crit = 0.25 * abs(hl)
    if harm > 0:
        return lo > crit
    return hi < -crit


KAYENTA_METRICS = (("error_rate", 1), ("p50", 1), ("p99", 1), ("conversion", -1))


# --- one stream through every method ----------------------------------------------


def batch_values(inc_req, inc_err, inc_lat, inc_conv):
    def q(p):
        if inc_req == 0:
            return math.nan
        cum = np.cumsum(inc_lat)
        return float(BUCKET_VALUES[int(np.searchsorted(cum, p * (cum[-1] - 1), side="right"))])

    return {
        "error_rate": inc_err / inc_req if inc_req else math.nan,
        "p50": q(0.5),
        "p99": q(0.99),
        "conversion": inc_conv / inc_req if inc_req else math.nan,
    }


def run_one(args):
    sc, run = args
    rng = np.random.default_rng([sc.seed, run])
    names = [f"v{i}" for i in range(sc.k)]
    stream = Stream({"mainline": BASE, **{v: sc.candidate for v in names}}, rng)
    cfg = judge_config(sc.config, sc.max_n)
    st = JudgeState.new(cfg)
    prev = {v: (0, 0, np.zeros(NUM_BUCKETS, dtype=np.int64), 0) for v in ["mainline", *names]}
    series = {v: {m: [] for m, _ in KAYENTA_METRICS} for v in ["mainline", *names]}
    fails = {v: 0 for v in names}
    out: dict[str, tuple[str, int]] = {}
    looks = sc.max_n // sc.batch
    for look in range(1, looks + 1):
        stream.advance(sc.batch)
        n = look * sc.batch
        last = look == looks
        if "bakeoff" not in out:
            st, v = step(st, stream.snapshot(), stream.t)
            a = v.decision.action
            if v.decision.winner:
                out["bakeoff"] = ("promote", n)
            elif v.decision.rollback:
                out["bakeoff"] = ("rollback", n)
            elif a == "stop":
                out["bakeoff"] = ("stop", n)
            elif last:
                out["bakeoff"] = ("stop", n)
        vals = {}
        for name in ["mainline", *names]:
            s = stream.state[name]
            r0, e0, l0, c0 = prev[name]
            vals[name] = batch_values(s["requests"] - r0, s["errors"] - e0, s["lat"] - l0, s["conv"] - c0)
            prev[name] = (s["requests"], s["errors"], s["lat"].copy(), s["conv"])
            for m, _ in KAYENTA_METRICS:
                series[name][m].append(vals[name][m])
        if "kayenta" not in out:
            for name in names:
                passed = 0
                for m, harm in KAYENTA_METRICS:
                    x = np.asarray(series[name][m])
                    y = np.asarray(series["mainline"][m])
                    passed += not mw_classify(x[np.isfinite(x)], y[np.isfinite(y)], harm)
                score = 100.0 * passed / len(KAYENTA_METRICS)
                if score < 75 or (last and score < 95):
                    out["kayenta"] = ("rollback", n)
                    break
            else:
                if last:
                    out["kayenta"] = ("pass", n)
        for label, threshold in (("flagger", 1), ("flagger5", 5)):
            if label in out:
                continue
            for name in names:
                b = vals[name]
                ok = (
                    math.isfinite(b["error_rate"])
                    and b["error_rate"] <= 0.02
                    and math.isfinite(b["p99"])
                    and b["p99"] <= 1.25 * BASE_P99
                    and math.isfinite(b["p50"])
                    and b["p50"] <= 1.1 * BASE_P50
                )
                if not ok:
                    fails[name] = fails.get(name, 0) + 1 if label == "flagger" else fails[name]
                fk = f"{label}:{name}"
                cnt = out.get(fk, ("", 0))[1] + (0 if ok else 1)
                out[fk] = ("count", cnt)
                if cnt >= threshold:
                    out[label] = ("rollback", n)
                    break
            else:
                if last:
                    out[label] = ("pass", n)
        if all(m in out for m in ("bakeoff", "kayenta", "flagger", "flagger5")):
            break
    return {m: out[m] for m in ("bakeoff", "kayenta", "flagger", "flagger5")}


METHODS = ("bakeoff", "kayenta", "flagger", "flagger5")


def is_right(sc: Scenario, method: str, decision: str) -> bool:
    if sc.right == "none":
        return decision in ("stop", "pass")
    if sc.right == "rollback":
        return decision == "rollback"
    if sc.right == "not_promote":
        return decision in ("rollback", "stop") if method == "bakeoff" else decision == "rollback"
    if sc.right == "promote":
        return decision == "promote" if method == "bakeoff" else decision == "pass"
    raise ValueError(sc.right)


def is_wrong_direction(sc: Scenario, method: str, decision: str) -> bool:
    if sc.right in ("rollback", "not_promote"):
        return decision == "promote" or (method != "bakeoff" and decision == "pass")
    if sc.right == "promote":
        return decision == "rollback"
    return False


def summarise(sc: Scenario, results: list[dict]) -> dict[str, dict]:
    table = {}
    for m in METHODS:
        decisions = [r[m] for r in results]
        right = [is_right(sc, m, d) for d, _ in decisions]
        ns = np.array([n if ok else np.inf for (d, n), ok in zip(decisions, right)], dtype=float)
        table[m] = {
            "right": float(np.mean(right)),
            "false_alarm": float(np.mean([not ok for ok in right])) if sc.right == "none" else math.nan,
            "wrong_direction": float(np.mean([is_wrong_direction(sc, m, d) for d, _ in decisions])),
            "median_n": float(np.median(ns)) if np.isfinite(np.median(ns)) else math.inf,
            "p90_n": float(np.percentile(ns, 90)) if np.isfinite(np.percentile(ns, 90)) else math.inf,
        }
    return table


# --- issue 12 scenarios: biases found in independent simulation -------------------------
#
# Each returns plain numbers per stream; ``issue12()`` aggregates them.  They use only
# ``step``, snapshots and verdict fields that every judge version has, so the same file
# measures the judge before and after the fixes.

RAMP_CFG = {
    "alpha": 0.05,
    "control": "mainline",
    "minSamples": 500,
    "guardrails": [{"metric": "error_rate", "maxIncrease": 0.0}, {"metric": "latency_p50", "maxIncreaseRatio": 0.02}],
    "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
}


def _raw_p(verdict, mv_p: float) -> float:
    return mv_p / max(1, verdict.tests_in_family)


def s1_ramp(run: int) -> dict:
    """A/A, candidate share 5% -> 20% -> 50% (a ramp); 2,000 requests per look over both arms."""
    rng = np.random.default_rng([121, run])
    cfg = config_from_dict(RAMP_CFG, "ramp")
    stream = Stream({"mainline": BASE, "v": BASE}, rng)
    st = JudgeState.new(cfg)
    err_lo = err_hi = conv_lo = conv_hi = False
    for look in range(60):
        share = 0.05 if look < 20 else 0.2 if look < 40 else 0.5
        n_v = int(rng.binomial(2000, share))
        stream.advance({"mainline": 2000 - n_v, "v": n_v})
        st, verdict = step(st, stream.snapshot(), stream.t)
        vv = verdict.variants.get("v")
        if vv is None or not vv.eligible:
            continue
        e, c = vv.metrics["error_rate"], vv.metrics["conversion"]
        err_lo |= _raw_p(verdict, e.p_better) <= 0.05
        err_hi |= _raw_p(verdict, e.p_worse) <= 0.05 and e.tolerance == 0.0
        conv_lo |= _raw_p(verdict, c.p_worse) <= 0.05
        conv_hi |= _raw_p(verdict, c.p_better) <= 0.05
    return {
        "out": "v" in st.out,
        "rollback": "v" in st.rolled_back,
        "err_lower": err_lo,
        "err_higher": err_hi,
        "conv_lower": conv_lo,
        "conv_higher": conv_hi,
    }


PER_LOOK_S2 = 1000  # requests per arm per 10 s look: enough for evidence to pass any cap


def s2_regress_after_ni(run: int) -> dict:
    """10 equal minutes (a look every 10 s), then the median 1.5x slower."""
    rng = np.random.default_rng([122, run])
    cfg = config_from_dict(
        {
            "alpha": 0.05,
            "minSamples": 500,
            "guardrails": [
                {"metric": "latency_p50", "maxIncreaseRatio": 0.1},
                {"metric": "error_rate", "maxIncrease": 0.01},
            ],
        },
        "regress",
    )
    stream = Stream({"mainline": BASE, "v": BASE}, rng)
    st = JudgeState.new(cfg)
    for _ in range(60):
        stream.advance(PER_LOOK_S2, dt=10.0)
        st, verdict = step(st, stream.snapshot(), stream.t)
    ni = verdict.variants["v"].metrics["latency_p50"].state == "non_inferior"
    slow = Arm(median=0.15)
    stream.arms["v"] = slow
    stream.probs["v"] = slow.bucket_probs()
    for look in range(60):
        stream.advance(PER_LOOK_S2, dt=10.0)
        st, verdict = step(st, stream.snapshot(), stream.t)
        if verdict.decision.rollback:
            mv = verdict.variants["v"].metrics["latency_p50"]
            return {"ni_first": ni, "caught": True, "seconds": (look + 1) * 10, "ci_reads_within": mv.ci[0] < 0.1}
    return {"ni_first": ni, "caught": False, "seconds": math.inf, "ci_reads_within": False}


def s3_missing_variant(run: int) -> dict:
    """A candidate missing from every third snapshot: judged requests / served requests."""
    rng = np.random.default_rng([123, run])
    cfg = config_from_dict({**RAMP_CFG, "minSamples": 10**6}, "missing")
    stream = Stream({"mainline": BASE, "v": BASE}, rng)
    st = JudgeState.new(cfg)
    for look in range(31):
        stream.advance(100)
        snap = stream.snapshot()
        if look % 3 == 1:
            del snap["variants"]["v"]
        st, _ = step(st, snap, stream.t)
    return {"inflation": st.totals["v"].requests / stream.state["v"]["requests"]}


def _disagrees(mv) -> bool:
    lo, hi = mv.ci
    up = mv.harm == "increase"
    tol = 0.0 if mv.role == "objective" else verdict_tolerance_change(mv)
    if mv.state == "worse":
        return not ((lo >= tol) if up else (hi <= tol))
    if mv.state == "non_inferior":
        return not ((hi <= tol) if up else (lo >= tol))
    if mv.state == "better":
        return not ((hi <= 0) if up else (lo >= 0))
    return bool((up and hi < 0) or (not up and lo > 0))


def s4_interval_agreement(run: int) -> dict:
    """Share of eligible looks where a metric's state and interval disagree (errors 1 -> 1.5%)."""
    rng = np.random.default_rng([124, run])
    cfg = config_from_dict(
        {
            "alpha": 0.05,
            "minSamples": 500,
            "guardrails": [
                {"metric": "error_rate", "maxIncrease": 0.002},
                {"metric": "latency_p50", "maxIncreaseRatio": 0.05},
                {"metric": "revenue", "kind": "mean", "maxDecrease": 1.0},
            ],
            "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
        },
        "agree",
    )
    arm = Arm(error_rate=0.015, median=0.11, conversion=0.06) if run % 2 else Arm(conversion=0.06)
    stream = Stream({"mainline": BASE, "v": arm}, rng)
    st = JudgeState.new(cfg)
    looks = {"error_rate": [0, 0], "latency_p50": [0, 0], "revenue": [0, 0], "conversion": [0, 0]}
    for _ in range(80):
        stream.advance(300)
        st, verdict = step(st, stream.snapshot(), stream.t)
        vv = verdict.variants["v"]
        if vv.eligible:
            for mv in vv.metrics.values():
                if getattr(mv, "route", None) is None:
                    looks[mv.metric][0] += 1
                    looks[mv.metric][1] += _disagrees(mv)
        if verdict.decision.action in ("promote", "stop") or verdict.decision.rollback:
            break
    return {k: tuple(v) for k, v in looks.items()}


ROUTES = {
    "checkout": Route(share=0.15, median_factor=0.4),
    "catalog": Route(share=0.55, median_factor=1.0),
    "other": Route(share=0.3, median_factor=2.0),
}
ROUTE_CFG = {
    "alpha": 0.05,
    "minSamples": 500,
    "guardrails": [
        {"metric": "error_rate", "maxIncrease": 0.005},
        {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
        {"metric": "latency_p50", "maxIncreaseRatio": 0.1},
    ],
}


def _route_run(seed, route_arms, arm_v, strip: bool, max_looks: int = 150) -> tuple[bool, float, bool]:
    """(rolled back, requests per arm at rollback, blamed the right route)."""
    rng = np.random.default_rng(seed)
    cfg = config_from_dict(ROUTE_CFG, "routes")
    stream = Stream({"mainline": BASE, "v": arm_v}, rng, routes=ROUTES, route_arms=route_arms)
    st = JudgeState.new(cfg)
    for _ in range(max_looks):
        stream.advance(200)
        snap = stream.snapshot()
        if strip:
            for v in snap["variants"].values():
                v.pop("by_route", None)
        st, verdict = step(st, snap, stream.t)
        if verdict.decision.rollback:
            named = "checkout" in verdict.variants["v"].reason
            return True, float(stream.state["v"]["requests"]), named
    return False, math.inf, False


def s5_routes(run: int) -> dict:
    """checkout (15% of traffic, fast) 1.31x slower; and every route 1.15x slower (stratification)."""
    one = {("v", "checkout"): Arm(median=BASE.median * 0.4 * 1.31)}
    a = _route_run([125, run], one, BASE, strip=False)
    b = _route_run([125, run], one, BASE, strip=True)
    slow = Arm(median=BASE.median * 1.15)
    c = _route_run([126, run], None, slow, strip=False)
    d = _route_run([126, run], None, slow, strip=True)
    return {"one_by_route": a, "one_whole": b, "uniform_by_route": c, "uniform_whole": d}


def s5_stratification_only(run: int) -> dict:
    """The same level for both: requests until one latency test rejects "within +10%" for a
    uniform 1.15x slowdown, fed whole-service increments vs per-route increments (stratified)."""
    from bakeoff.judge.counters import VariantCounters
    from bakeoff.judge.latency import LatencyTest

    out = {}
    for metric in ("latency_p50", "latency_p99"):
        spec = config_from_dict({"guardrails": [{"metric": metric, "maxIncreaseRatio": 0.1}]}, "s").guardrails[0]
        rng = np.random.default_rng([127, run])
        stream = Stream({"mainline": BASE, "v": Arm(median=BASE.median * 1.15)}, rng, routes=ROUTES)
        test = LatencyTest(spec)
        whole, strat = test.new_state(), test.new_state()
        prev = {k: {"lat": np.zeros(NUM_BUCKETS, dtype=np.int64), "r": {}} for k in ("mainline", "v")}
        thr = math.log(3 * 4 / 0.05)  # one guardrail's share with 3 guardrails, 1 candidate (no route split)
        n_whole = n_strat = math.inf
        for look in range(1, 301):
            stream.advance(200)
            inc = {}
            for k in ("mainline", "v"):
                lat = stream.state[k]["lat"]
                routes = {r: stream.route_state[k][r]["lat"].copy() for r in ROUTES}
                inc[k] = (
                    VariantCounters(latency=lat - prev[k]["lat"]),
                    {r: VariantCounters(latency=routes[r] - prev[k]["r"].get(r, 0)) for r in ROUTES},
                )
                prev[k] = {"lat": lat.copy(), "r": routes}
            test.update(whole, inc["v"][0], inc["mainline"][0])
            for r in ROUTES:
                test.update(strat, inc["v"][1][r], inc["mainline"][1][r])
            if not math.isfinite(n_whole) and test.evidence(whole, None, None).get("worse", 0) >= thr:
                n_whole = look * 200
            if not math.isfinite(n_strat) and test.evidence(strat, None, None).get("worse", 0) >= thr:
                n_strat = look * 200
            if math.isfinite(n_whole) and math.isfinite(n_strat):
                break
        out[metric] = (n_whole, n_strat)
    return out


def issue12(pool) -> dict:
    q = QUICK
    n1, n2, n3, n4, n5 = (150, 20, 10, 20, 16) if q else (600, 40, 20, 60, 60)
    r1 = pool.map(s1_ramp, range(n1), chunksize=8)
    r2 = pool.map(s2_regress_after_ni, range(n2), chunksize=2)
    r3 = pool.map(s3_missing_variant, range(n3), chunksize=2)
    r4 = pool.map(s4_interval_agreement, range(n4), chunksize=2)
    r5 = pool.map(s5_routes, range(n5), chunksize=1)
    r6 = pool.map(s5_stratification_only, range(n5), chunksize=1)

    def rate(rs, key):
        return round(float(np.mean([r[key] for r in rs])), 4)

    def med(xs):
        m = float(np.median(xs))
        return round(m) if math.isfinite(m) else None

    agree = {}
    for metric in ("error_rate", "latency_p50", "revenue", "conversion"):
        tot = sum(r[metric][0] for r in r4)
        bad = sum(r[metric][1] for r in r4)
        agree[f"i4_disagree_{metric}"] = round(bad / tot, 4) if tot else None
    caught = [r for r in r2 if r["caught"]]
    return {
        "i1_ramp_out": rate(r1, "out"),
        "i1_ramp_rollback": rate(r1, "rollback"),
        "i1_ramp_err_lower_p05": rate(r1, "err_lower"),
        "i1_ramp_err_higher_p05": rate(r1, "err_higher"),
        "i1_ramp_conv_lower_p05": rate(r1, "conv_lower"),
        "i1_ramp_conv_higher_p05": rate(r1, "conv_higher"),
        "i2_ni_first": rate(r2, "ni_first"),
        "i2_regression_caught": rate(r2, "caught"),
        "i2_median_seconds_to_rollback": med([r["seconds"] for r in r2]),
        "i2_rollback_ci_reads_within_tolerance": rate(caught, "ci_reads_within") if caught else None,
        "i3_request_inflation": round(float(np.mean([r["inflation"] for r in r3])), 3),
        **agree,
        "i5_one_route_power_by_route": rate([{"x": r["one_by_route"][0]} for r in r5], "x"),
        "i5_one_route_named": rate([{"x": r["one_by_route"][2]} for r in r5], "x"),
        "i5_one_route_power_whole": rate([{"x": r["one_whole"][0]} for r in r5], "x"),
        "i5_uniform_median_n_by_route": med([r["uniform_by_route"][1] for r in r5]),
        "i5_uniform_median_n_whole": med([r["uniform_whole"][1] for r in r5]),
        "i5_uniform_power_by_route": rate([{"x": r["uniform_by_route"][0]} for r in r5], "x"),
        "i5_uniform_power_whole": rate([{"x": r["uniform_whole"][0]} for r in r5], "x"),
        "i5_same_level_median_n_p50_whole": med([r["latency_p50"][0] for r in r6]),
        "i5_same_level_median_n_p50_stratified": med([r["latency_p50"][1] for r in r6]),
        "i5_same_level_median_n_p99_whole": med([r["latency_p99"][0] for r in r6]),
        "i5_same_level_median_n_p99_stratified": med([r["latency_p99"][1] for r in r6]),
    }


# --- Issue 19: adaptive allocation vs the fixed split, on the same streams ------------------------

TOURNAMENT_CFG = {
    "alpha": 0.05,
    "control": "mainline",
    "minSamples": 500,
    "guardrails": [{"metric": "error_rate", "maxIncrease": 0.005}],
    "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
}
T_BASE = Arm(conversion=0.10, error_rate=0.01)
# the others: equal, or worse on conversion by various amounts; every third worse one also fails a guardrail
T_DELTAS = (0.0, -0.003, -0.01, -0.02, 0.0, -0.005, -0.015, -0.03)


def tournament_arms(k: int, aa: bool = False) -> dict[str, Arm]:
    """k candidates: one truly better (+1 point of conversion at 10%), the rest equal or worse."""
    if aa:
        return {f"c{i:02d}": T_BASE for i in range(k)}
    arms = {"c00": Arm(conversion=0.11, error_rate=0.01)}
    for i in range(1, k):
        d = T_DELTAS[(i - 1) % len(T_DELTAS)]
        bad_guard = d < 0 and i % 3 == 0
        arms[f"c{i:02d}"] = Arm(conversion=0.10 + d, error_rate=0.02 if bad_guard else 0.01)
    return arms


def run_tournament(
    k: int,
    allocation: str,
    seed: int,
    aa: bool = False,
    batch: int = 4000,
    max_requests: int = 2_000_000,
    max_step: float = 0.1,
    mainline_floor: float = 0.5,
) -> dict:
    """One bake-off of k candidates, driven by the controller's real decision logic (reconcile) and the
    judge's real step: each look routes ``batch`` requests by the split reconcile asked for.

    Returns the requests served until the decision, the requests served by candidates worse than the
    mainline (regret), the winner and whether it was the best (or, in A/A, a false promotion)."""
    from bakeoff.controller.reconcile import FINAL, ControllerState, JudgeDecision, Observations, Policy, reconcile

    arms = tournament_arms(k, aa)
    names = list(arms)
    worse = {n for n, a in arms.items() if a.conversion < T_BASE.conversion or a.error_rate > T_BASE.error_rate}
    cfg = config_from_dict({**TOURNAMENT_CFG, "candidates": k}, "tournament")
    policy = Policy(
        mainline="mainline",
        steps=(0.05, 0.1, 0.2),
        step_interval=1.0,
        max_candidate_share=0.5,
        promotion="auto",
        min_samples=0,
        no_data_timeout=None,
        allocation=allocation,
        mainline_floor=mainline_floor,
        max_step=max_step,
    )
    rng = np.random.default_rng([190, seed, k, int(aa)])
    route_rng = np.random.default_rng([191, seed, k, int(aa), 0 if allocation == "fixed" else 1])
    stream = Stream({"mainline": T_BASE, **arms}, rng)
    state = ControllerState.new("tournament", "mainline", names)
    js = JudgeState.new(cfg)
    ready = frozenset(["mainline", *names])
    gates: dict[str, str | None] = dict.fromkeys(names)
    verdict = None
    served = regret = 0
    retired = 0
    t = 0.0
    while served < max_requests:
        obs = Observations(
            now=t, ready=ready, gates=gates, verdict=JudgeDecision.from_verdict(verdict) if verdict else None
        )
        plan = reconcile(policy, state, obs)
        state = plan.state
        for e in plan.events:
            if e.get("retired_by") == "allocation":
                js.out.setdefault(e["variant"], e["reason"])
                retired += 1
        if state.phase in FINAL:
            break
        w = state.weights
        order = list(w)
        counts = route_rng.multinomial(batch, np.array([w[n] for n in order]) / sum(w.values()))
        per = {n: int(c) for n, c in zip(order, counts)}
        t += 1.0
        stream.advance(per, dt=1.0)
        served += batch
        regret += sum(c for n, c in per.items() if n in worse)
        js, verdict = step(js, stream.snapshot(), t)
    winner = (state.decision or {}).get("winner") if state.phase in FINAL else None
    return {
        "k": k,
        "allocation": allocation,
        "aa": aa,
        "promoted": winner is not None,
        "winner": winner,
        "best": winner == "c00" and not aa,
        "false_promotion": winner is not None and (aa or winner in worse or arms[winner].conversion <= 0.10),
        "requests": served,
        "regret": regret,
        "retired": retired,
    }


def _tournament_task(args) -> dict:
    return run_tournament(*args)


def allocation_comparison(pool) -> dict:
    """Issue 19: requests to promotion, regret, P(promote best) at k = 5, 10, 20 for the fixed split and
    adaptive allocation on the same streams; false promotions in A/A at k = 10 and 20."""
    q = QUICK
    runs = int(os.environ.get("ALLOC_RUNS", 6 if q else 40))
    aa_runs = int(os.environ.get("ALLOC_AA_RUNS", 20 if q else 200))
    tasks = [(k, a, s) for k in (5, 10, 20) for a in ("fixed", "adaptive") for s in range(runs)]
    aa_tasks = [(k, a, s, True, 8000, 600_000) for k in (10, 20) for a in ("fixed", "adaptive") for s in range(aa_runs)]
    res = pool.map(_tournament_task, tasks + aa_tasks, chunksize=1)
    out: dict = {}
    print("allocation (issue 19): one candidate +1 point of conversion at 10%; the others equal or worse")
    print(f"{'k':>3} {'allocation':10} {'runs':>5} {'P(best)':>8} {'median requests':>16} {'median regret':>14}")
    for k in (5, 10, 20):
        for a in ("fixed", "adaptive"):
            rs = [r for r in res if r["k"] == k and r["allocation"] == a and not r["aa"]]
            pb = float(np.mean([r["best"] for r in rs]))
            n = float(np.median([r["requests"] for r in rs]))
            reg = float(np.median([r["regret"] for r in rs]))
            print(f"{k:>3} {a:10} {len(rs):>5} {pb:>8.3f} {n:>16,.0f} {reg:>14,.0f}")
            out[f"alloc_k{k}_{a}_p_best"] = round(pb, 3)
            out[f"alloc_k{k}_{a}_median_requests"] = round(n)
            out[f"alloc_k{k}_{a}_median_regret"] = round(reg)
        f, ad = out[f"alloc_k{k}_fixed_median_requests"], out[f"alloc_k{k}_adaptive_median_requests"]
        fr, ar = out[f"alloc_k{k}_fixed_median_regret"], out[f"alloc_k{k}_adaptive_median_regret"]
        out[f"alloc_k{k}_fewer_requests"] = round(1 - ad / f, 3) if f else None
        out[f"alloc_k{k}_less_regret"] = round(1 - ar / fr, 3) if fr else None
        print(
            f"    k={k}: adaptive needs {1 - ad / f:.0%} fewer requests, {1 - ar / fr:.0%} less regret"
            if f and fr
            else ""
        )
    for k in (10, 20):
        for a in ("fixed", "adaptive"):
            rs = [r for r in res if r["k"] == k and r["allocation"] == a and r["aa"]]
            fp = float(np.mean([r["false_promotion"] for r in rs]))
            print(f"A/A k={k:<3} {a:10} runs {len(rs):>4}: false promotions {fp:.3f} (alpha 0.05)")
            out[f"alloc_aa_k{k}_{a}_false_promotions"] = round(fp, 4)
    return out


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # percentiles over runs that never decided (inf)
    t0 = time.time()
    scs = scenarios()
    tasks = [(sc, r) for sc in scs for r in range(sc.runs)]
    # Long scenarios first so the two workers finish together.
    tasks.sort(key=lambda t: -(t[0].max_n // t[0].batch) * (1 + t[0].k))
    only = os.environ.get("ONLY", "")
    if only in ("issue12", "allocation"):
        tasks = []
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        if only == "allocation":
            alloc = allocation_comparison(pool)
            print(json.dumps({**alloc, "quick": QUICK, "elapsed_s": round(time.time() - t0, 1)}))
            return 0
        results = pool.map(run_one, tasks, chunksize=4)
        extra = issue12(pool)
        extra.update(allocation_comparison(pool))
    if only == "issue12":
        print(json.dumps({**extra, "quick": QUICK, "elapsed_s": round(time.time() - t0, 1)}))
        return 0
    by_sc: dict[str, list] = {sc.name: [] for sc in scs}
    for (sc, _), res in zip(tasks, results):
        by_sc[sc.name].append(res)
    summary = {sc.name: summarise(sc, by_sc[sc.name]) for sc in scs}

    def fmt_n(x):
        return "-" if not math.isfinite(x) else f"{x:,.0f}"

    print(
        f"judge quality ({'QUICK' if QUICK else 'full'}; {len(tasks)} streams; looks every batch of requests per variant)"
    )
    header = f"{'scenario':20} {'k':>2} {'batch':>6} {'runs':>5} {'method':9} {'right':>6} {'FWER':>6} {'wrong dir':>9} {'median n':>10} {'p90 n':>10}"
    print(header)
    print("-" * len(header))
    for sc in scs:
        for m in METHODS:
            r = summary[sc.name][m]
            fw = "" if math.isnan(r["false_alarm"]) else f"{r['false_alarm']:.3f}"
            print(
                f"{sc.name:20} {sc.k:>2} {sc.batch:>6} {sc.runs:>5} {m:9} {r['right']:>6.3f} {fw:>6} "
                f"{r['wrong_direction']:>9.3f} {fmt_n(r['median_n']):>10} {fmt_n(r['p90_n']):>10}"
            )
    print(f"elapsed {time.time() - t0:.1f}s")

    def j(x):
        return None if isinstance(x, float) and not math.isfinite(x) else x

    s = summary
    line = {
        "fpr_aa_k1": s["aa_k1"]["bakeoff"]["false_alarm"],
        "fpr_aa_k4": s["aa_k4"]["bakeoff"]["false_alarm"],
        "fpr_aa_k4_ship": s["aa_k4_ship"]["bakeoff"]["false_alarm"],
        "kayenta_fpr_aa_k1": s["aa_k1"]["kayenta"]["false_alarm"],
        "kayenta_fpr_aa_k4": s["aa_k4"]["kayenta"]["false_alarm"],
        "flagger_fpr_aa_k1": s["aa_k1"]["flagger"]["false_alarm"],
        "flagger_fpr_aa_k4": s["aa_k4"]["flagger"]["false_alarm"],
        "flagger5_fpr_aa_k4": s["aa_k4"]["flagger5"]["false_alarm"],
        "power_latency5": s["latency5"]["bakeoff"]["right"],
        "power_p99_20": s["p99_20"]["bakeoff"]["right"],
        "power_errors": s["errors"]["bakeoff"]["right"],
        "power_conversion_better": s["conversion_better"]["bakeoff"]["right"],
        "right_conversion_minus2": s["conversion_minus2"]["bakeoff"]["right"],
        "median_n_latency5": j(s["latency5"]["bakeoff"]["median_n"]),
        "median_n_p99_20": j(s["p99_20"]["bakeoff"]["median_n"]),
        "median_n_errors": j(s["errors"]["bakeoff"]["median_n"]),
        "p90_n_errors": j(s["errors"]["bakeoff"]["p90_n"]),
        "median_n_conversion_better": j(s["conversion_better"]["bakeoff"]["median_n"]),
        "kayenta_power_errors": s["errors"]["kayenta"]["right"],
        "kayenta_median_n_errors": j(s["errors"]["kayenta"]["median_n"]),
        "flagger_power_errors": s["errors"]["flagger"]["right"],
        **extra,
        "quick": QUICK,
        "elapsed_s": round(time.time() - t0, 1),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
