"""Sequential tests for error rate and business metrics: differences of means.

Error rate (errors = 5xx + connect_error + timeout, per request), proportions
(e.g. conversion: reported values per request) and means (e.g. revenue per
request, or per reported value) are all means of per-request quantities.  For
a candidate ``t`` and the control ``c`` the judge tests linear contrasts

    Delta_c = mu_t - c * mu_c - a

where ``c = 1, a = 0`` is the plain difference (estimate, confidence
sequence, "better"), ``c = 1, a = +-tol`` an absolute tolerance ("errors at
most +0.5 percentage points") and ``c = 1 +- r, a = 0`` a relative one
("conversion may drop at most 2%").  Each batch of new requests gives
``d_j = mean_t,j - c * mean_c,j`` with variance ``v_j = s_t^2/n_t,j + c^2
s_c^2/n_c,j`` (plug-in variances from all data so far: Bernoulli
``p(1-p)`` with a +1/2 continuity smoothing for counts, the sample variance
from ``sum``/``sum_sq`` for means).  Accumulating ``d_j/v_j`` and ``1/v_j``
per batch (rather than differencing cumulative means) keeps the increments
independent even when the traffic split changes between looks, e.g. during a
ramp.  The evidence is then the normal mixture SPRT of
:mod:`judge.sequential` (Johari, Pekelis, Walsh, Operations Research 2022).

For counts this is the Gaussian limit of the per-arm Poisson-process view of
Lindon & Malek ("Anytime-Valid Inference for Multinomial Count Data",
NeurIPS 2022) and Lindon, Sanden, Shirikian ("Rapid Regression Detection in
Software Deployments through Sequential Testing", KDD 2022): new errors per
arm are independent increments whose intensity ratio is the tested contrast;
the Gaussian form lets absolute tolerances (percentage points) be tested, not
only rate ratios.
"""

from __future__ import annotations

import math
from typing import Any


from judge.config import MetricSpec
from judge.counters import VariantCounters
from judge.sequential import cs_half_width, log_one_sided as log_mixture_one_sided, log_two_sided as log_mixture_two_sided


def unit_stats(spec: MetricSpec, v: VariantCounters) -> tuple[float, float, float]:
    """(n, mean, per-unit variance) of the metric in cumulative counters."""
    if spec.kind == "error_rate":
        n = v.requests
        p = (v.errors + 0.5) / (n + 1.0)
        return n, (v.errors / n if n else math.nan), p * (1 - p)
    count, s, sq = v.metrics.get(spec.name, (0, 0.0, 0.0))
    if spec.kind == "proportion":
        n = v.requests
        p = min(1.0, (count + 0.5) / (n + 1.0))
        return n, (count / n if n else math.nan), max(p * (1 - p), 1e-12)
    n = v.requests if spec.per == "request" else count
    if n <= 0:
        return 0, math.nan, math.nan
    mean = s / n
    var = max(sq / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 1.0)
    return n, mean, var


def batch_mean(spec: MetricSpec, inc: VariantCounters) -> tuple[int, float]:
    if spec.kind == "error_rate":
        n = inc.requests
        return n, (inc.errors / n if n > 0 else math.nan)
    count, s, _ = inc.metrics.get(spec.name, (0, 0.0, 0.0))
    if spec.kind == "proportion":
        n = inc.requests
        return n, (count / n if n > 0 else math.nan)
    n = inc.requests if spec.per == "request" else count
    return n, (s / n if n > 0 else math.nan)


class ContrastTest:
    """Tests of one metric of one candidate against the control.

    State (serialisable): ``acc[c] = [W, I]`` per contrast coefficient.
    """

    def __init__(self, spec: MetricSpec):
        self.spec = spec
        tol = spec.tolerance
        if spec.relative:
            self.c_tol, self.a_tol = 1.0 + spec.harm * tol, 0.0
        else:
            self.c_tol, self.a_tol = 1.0, spec.harm * tol
        self.coefficients = sorted({1.0, self.c_tol})

    def new_state(self) -> dict[str, Any]:
        return {"acc": {repr(c): [0.0, 0.0] for c in self.coefficients}}

    def update(self, st: dict[str, Any], inc_t, inc_c, tot_t, tot_c) -> None:
        n_t, m_t = batch_mean(self.spec, inc_t)
        n_c, m_c = batch_mean(self.spec, inc_c)
        if n_t <= 0 or n_c <= 0 or not (math.isfinite(m_t) and math.isfinite(m_c)):
            return
        _, _, var_t = unit_stats(self.spec, tot_t)
        _, _, var_c = unit_stats(self.spec, tot_c)
        if not (math.isfinite(var_t) and math.isfinite(var_c)):
            return
        for c in self.coefficients:
            v = var_t / n_t + c * c * var_c / n_c
            if not v > 0:
                continue
            acc = st["acc"][repr(c)]
            acc[0] += (m_t - c * m_c) / v
            acc[1] += 1.0 / v

    def _tau2(self, c: float, tot_t, tot_c) -> float:
        _, _, var_t = unit_stats(self.spec, tot_t)
        _, _, var_c = unit_stats(self.spec, tot_c)
        sigma2 = (var_t + c * c * var_c) / 2.0
        if not (math.isfinite(sigma2) and sigma2 > 0):
            return math.nan
        return (self.spec.effect_size**2) * sigma2

    def evidence(self, st: dict[str, Any], tot_t, tot_c) -> dict[str, float]:
        """log Lambda of each test (before running maxima)."""
        h = self.spec.harm
        out: dict[str, float] = {}
        w1, i1 = st["acc"][repr(1.0)]
        tau1 = self._tau2(1.0, tot_t, tot_c)
        if i1 > 0 and math.isfinite(tau1):
            out["no_change"] = float(log_mixture_two_sided(w1, i1, tau1))
            out["better"] = float(log_mixture_one_sided(-h * w1, i1, tau1))
            out["worse_than_control"] = float(log_mixture_one_sided(h * w1, i1, tau1))
        wt, it = st["acc"][repr(self.c_tol)]
        taut = self._tau2(self.c_tol, tot_t, tot_c)
        if it > 0 and math.isfinite(taut):
            w0 = wt - self.a_tol * it
            out["worse"] = float(log_mixture_one_sided(h * w0, it, taut))
            out["non_inferior"] = float(log_mixture_one_sided(-h * w0, it, taut))
        return out

    def estimate(self, st: dict[str, Any], tot_t, tot_c, alpha_ci: float) -> dict[str, Any]:
        _, mean_t, _ = unit_stats(self.spec, tot_t)
        _, mean_c, _ = unit_stats(self.spec, tot_c)
        w1, i1 = st["acc"][repr(1.0)]
        tau1 = self._tau2(1.0, tot_t, tot_c)
        if i1 > 0 and math.isfinite(tau1):
            est = w1 / i1
            hw = cs_half_width(i1, tau1, alpha_ci)
            ci = (est - hw, est + hw)
        else:
            est, ci = math.nan, (math.nan, math.nan)
        rel = (mean_t / mean_c - 1.0) if mean_c and math.isfinite(mean_c) and math.isfinite(mean_t) else math.nan
        return {
            "control": mean_c,
            "candidate": mean_t,
            "estimate": est,
            "ci": ci,
            "relative_estimate": rel,
            "scale": "difference",
        }


