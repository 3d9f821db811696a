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

QUICK=1 runs fewer streams (under 3 minutes on 2 cores).  The last line of
output is one JSON object with the headline figures.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bakeoff.contracts.histogram import NUM_BUCKETS, bucket_value  # noqa: E402
from bakeoff.judge.config import config_from_dict  # noqa: E402
from bakeoff.judge.core import JudgeState, step  # noqa: E402
from bakeoff.judge.simulate import Arm, Stream  # noqa: E402

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


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # percentiles over runs that never decided (inf)
    t0 = time.time()
    scs = scenarios()
    tasks = [(sc, r) for sc in scs for r in range(sc.runs)]
    # Long scenarios first so the two workers finish together.
    tasks.sort(key=lambda t: -(t[0].max_n // t[0].batch) * (1 + t[0].k))
    with Pool(processes=min(2, os.cpu_count() or 1)) as pool:
        results = pool.map(run_one, tasks, chunksize=4)
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
        "quick": QUICK,
        "elapsed_s": round(time.time() - t0, 1),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
