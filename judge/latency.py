"""Anytime-valid comparison of latency quantiles from histogram increments.

The router only exposes latency as a cumulative log-bucketed histogram, so the
judge works on the *increments* between looks (the new requests).  For
quantile ``q`` (median, p95, p99, ...) it asks whether the candidate's
quantile exceeds ``rho`` times the control's.

Quantile tests through exceedances.  Let ``x`` be the control's q-quantile.
Then ``P(L_c > x) = 1 - q`` and ``Q_t(q) > rho * x`` exactly when
``P(L_t / rho > x) > 1 - q``.  So each new request becomes a Bernoulli
"exceeds the threshold" -- for the control at ``x``, for the candidate at
``rho * x`` -- and "the candidate's quantile is more than rho times the
control's" becomes "the candidate's exceedance rate is higher than the
control's": a difference of proportions, tested with the normal mixture SPRT
of :mod:`judge.sequential` (Johari, Pekelis, Walsh 2022) exactly as error
rates are.  This is the two-sample analogue of the quantile confidence
sequences of Howard & Ramdas ("Sequential estimation of quantiles with
applications to A/B-testing and best-arm identification", Bernoulli 28(3),
2022), which likewise reduce a quantile to the Bernoulli process
``1{X_i <= Q(q)}`` and bound it uniformly over time.

The threshold must not peek at the data it tests, so at every look it is the
control's q-quantile of the data *before* that look (a predictable choice):
given the past, the batch's exceedances are independent Bernoullis.  Under
the A/A null (same distributions) the two exceedance rates are equal for
*any* threshold, so the test is exact whatever the threshold; at a
tolerance boundary it is exact when the candidate is a rescaled control
(``L_t ~ rho L_c``) and otherwise tests the quantile level the threshold
actually sits at, which converges to ``q``.

Relative tolerances are free on a log-bucketed histogram: dividing every
latency by ``gamma**s`` moves bucket ``i`` to bucket ``i - s`` exactly, so the
judge keeps the mixture statistics for a grid of shifts ``s`` (ratios
``gamma**s``, about 2% apart), tests the tolerance at the grid point on the
tolerance's own (fractional) shift, interpolating within a bucket, and
reports the confidence sequence for the ratio as the set of shifts not
rejected (Robbins' duality between tests and confidence sets).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from judge.config import MetricSpec
from judge.counters import VariantCounters
from judge.sequential import log_mixture_two_sided, log_one_sided, log_two_sided
from router.histogram import GAMMA, NUM_BUCKETS, bucket_value

LOG_GAMMA = math.log(GAMMA)
GRID = 40  # shifts -GRID..GRID: ratios 0.45 .. 2.24


def quantile_index(counts: np.ndarray, q: float, cum: np.ndarray | None = None) -> int | None:
    """Bucket index of the q-quantile (same rank rule as router.histogram.quantile_from_counts)."""
    if cum is None:
        cum = np.cumsum(counts)
    total = int(cum[-1])
    if total == 0:
        return None
    return int(np.searchsorted(cum, q * (total - 1), side="right"))


def _cum(counts: np.ndarray) -> np.ndarray:
    """cum[i] = number of values in buckets < i (length NUM_BUCKETS + 1)."""
    out = np.empty(NUM_BUCKETS + 1, dtype=np.int64)
    out[0] = 0
    np.cumsum(counts, out=out[1:])
    return out


def _tails(cum: np.ndarray, idx):
    """Number of values in buckets strictly above ``idx`` (idx may be out of range)."""
    j = np.minimum(np.maximum(np.asarray(idx) + 1, 0), NUM_BUCKETS)
    return cum[-1] - cum[j]


class LatencyTest:
    def __init__(self, spec: MetricSpec):
        self.spec = spec
        self.q = float(spec.quantile)
        self.shifts = np.arange(-GRID, GRID + 1)
        # The tolerance as a (fractional) shift in buckets; within a bucket the
        # tail count is interpolated log-linearly (buckets are 2% wide, finer
        # than any tolerance worth setting, and the histogram itself is only
        # 1% accurate).
        self.t_tol = math.log1p(spec.tolerance) / LOG_GAMMA if spec.tolerance else 0.0
        self.s_floor = int(math.floor(self.t_tol))
        self.frac = self.t_tol - self.s_floor
        # Warm-up: the threshold needs enough control data to mean something.
        self.warmup = max(20, math.ceil(5.0 / min(self.q, 1.0 - self.q)))
        self.tau2 = (spec.effect_size**2) * self.q * (1.0 - self.q)

    def new_state(self) -> dict[str, Any]:
        n = len(self.shifts)
        return {"W": np.zeros(n), "I": np.zeros(n), "tol": [0.0, 0.0]}

    def update(self, st, inc_t: VariantCounters, inc_c: VariantCounters, prior_t: VariantCounters,
               prior_c: VariantCounters) -> None:
        n_t, n_c = int(inc_t.latency.sum()), int(inc_c.latency.sum())
        n_c_prior = int(prior_c.latency.sum())
        if n_t == 0 or n_c == 0:
            return
        if n_c_prior < self.warmup:
            # No history yet (the first look): take the threshold from this
            # batch's own control data.  Under the A/A null this is
            # conservative -- the control's exceedances of its own quantile
            # vary less than modelled -- and it lets a single look judge.
            if n_c < self.warmup:
                return
            prior_c, n_c_prior = inc_c, n_c
        cum_pc = _cum(prior_c.latency)
        k = quantile_index(None, self.q, cum_pc[1:])
        ks = k + self.shifts
        a_c_batch = float(_tails(_cum(inc_c.latency), k)) / n_c
        a_t_batch = _tails(_cum(inc_t.latency), ks) / n_t
        a_c = (float(_tails(cum_pc, k)) + 0.5) / (n_c_prior + 1.0)
        n_t_prior = int(prior_t.latency.sum())
        if n_t_prior >= self.warmup:
            a_t = (_tails(_cum(prior_t.latency), ks) + 0.5) / (n_t_prior + 1.0)
        else:
            a_t = np.full(len(ks), a_c)
        v = a_t * (1 - a_t) / n_t + a_c * (1 - a_c) / n_c
        st["W"] = st["W"] + (a_t_batch - a_c_batch) / v
        st["I"] = st["I"] + 1.0 / v
        # The tolerance shift, interpolated between its two grid neighbours.
        i0 = self.s_floor + GRID
        f = self.frac
        at_b = (1 - f) * a_t_batch[i0] + f * a_t_batch[min(i0 + 1, 2 * GRID)]
        at_p = (1 - f) * a_t[i0] + f * a_t[min(i0 + 1, 2 * GRID)]
        vt = at_p * (1 - at_p) / n_t + a_c * (1 - a_c) / n_c
        st["tol"] = [st["tol"][0] + (at_b - a_c_batch) / vt, st["tol"][1] + 1.0 / vt]

    def _at(self, st, s: int) -> tuple[float, float]:
        i = s + GRID
        return float(st["W"][i]), float(st["I"][i])

    def evidence(self, st, tot_t, tot_c) -> dict[str, float]:
        h = self.spec.harm
        out: dict[str, float] = {}
        w0, i0 = self._at(st, 0)
        if i0 <= 0:
            return out
        out["no_change"] = log_two_sided(w0, i0, self.tau2)
        out["better"] = log_one_sided(-h * w0, i0, self.tau2)
        out["worse_than_control"] = log_one_sided(h * w0, i0, self.tau2)
        wt, it = st["tol"] if self.t_tol else (w0, i0)
        if it > 0:
            out["worse"] = log_one_sided(h * wt, it, self.tau2)
            out["non_inferior"] = log_one_sided(-h * wt, it, self.tau2)
        return out

    def estimate(self, st, tot_t, tot_c, alpha_ci: float) -> dict[str, Any]:
        it = quantile_index(tot_t.latency, self.q)
        ic = quantile_index(tot_c.latency, self.q)
        qt = bucket_value(it) if it is not None else math.nan
        qc = bucket_value(ic) if ic is not None else math.nan
        est = qt / qc - 1.0 if ic is not None and it is not None else math.nan
        W, I = st["W"], st["I"]
        ci = (math.nan, math.nan)
        if np.all(I > 0):
            logl = log_mixture_two_sided(W, I, self.tau2)
            keep = np.nonzero(logl < math.log(1.0 / alpha_ci))[0]
            if len(keep):
                lo, hi = int(keep[0]), int(keep[-1])
                ci = (
                    -1.0 if lo == 0 else GAMMA ** float(self.shifts[lo]) - 1.0,
                    math.inf if hi == len(self.shifts) - 1 else GAMMA ** float(self.shifts[hi]) - 1.0,
                )
            elif math.isfinite(est):
                ci = (est, est)
        return {"control": qc, "candidate": qt, "estimate": est, "ci": ci, "relative_estimate": est,
                "scale": "ratio"}
