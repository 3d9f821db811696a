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
:mod:`bakeoff.judge.sequential` (Johari, Pekelis, Walsh, Operations Research 2022).

For counts this is the Gaussian limit of the per-arm Poisson-process view of
Lindon & Malek ("Anytime-Valid Inference for Multinomial Count Data",
NeurIPS 2022) and Lindon, Sanden, Shirikian ("Rapid Regression Detection in
Software Deployments through Sequential Testing", KDD 2022): new errors per
arm are independent increments whose intensity ratio is the tested contrast;
the Gaussian form lets absolute tolerances (percentage points) be tested, not
only rate ratios.

Variances at the null boundary.  For error rates and proportions the tests
against a tolerance (``H0: p_t - p_c >= delta`` for non-inferiority, ``<=
delta`` for "worse than tolerated", or ``p_t = c p_c`` for relative
tolerances) weight each batch with the variance *under the null boundary*,
evaluated at the restricted maximum-likelihood estimate of Farrington &
Manning ("Test statistics and sample size formulae for comparative binomial
trials with null hypothesis of non-zero risk difference or non-unity
relative risk", Statistics in Medicine 9, 1990; the same estimate as
Miettinen & Nurminen 1985).  The unrestricted plug-in ``p(1-p)`` is wrong
there: with no errors on either side it is almost 0, so a difference of
``-delta`` looked like hundreds of standard errors (p-values like 1e-261 for
"non-inferior" from a few thousand requests) although a candidate erring at
exactly the tolerated rate produces no errors in its first hundred requests a
third of the time.  Under the boundary the candidate's rate is at least
``delta``, and so is its variance.  The plain difference (estimate,
confidence sequence, "better", "worse than control") keeps the smoothed
plug-in variances.
"""

from __future__ import annotations

import math

import numpy as np

from bakeoff.judge.config import MetricSpec
from bakeoff.judge.counters import VariantCounters
from bakeoff.judge.metric_test import ContrastState, Estimate, Stratum
from bakeoff.judge.sequential import log_mixture_one_sided as log_one_sided_many
from bakeoff.judge.sequential import log_mixture_two_sided as log_two_sided_many
from bakeoff.judge.sequential import log_one_sided, one_sided_cs_half_width, one_sided_cs_half_widths
from bakeoff.judge.sequential import log_two_sided as log_mixture_two_sided


def unit_stats(spec: MetricSpec, v: VariantCounters) -> tuple[float, float, float]:
    """(n, mean, per-unit variance) of the metric in cumulative counters: the Bernoulli
    variance with a +1/2 continuity smoothing (Agresti & Coull, "Approximate is better than
    'exact'", The American Statistician 1998, in spirit) or the sample variance."""
    if spec.kind in ("error_rate", "proportion"):
        x, n = binary_counts(spec, v)
        p = (x + 0.5) / (n + 1.0)
        return n, (x / n if n else math.nan), max(p * (1 - p), 1e-12)
    count, s, sq = v.metrics.get(spec.name, (0, 0.0, 0.0))
    n = v.requests if spec.per == "request" else count
    if n <= 0:
        return 0, math.nan, math.nan
    mean = s / n
    var = max(sq / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 1.0)
    return n, mean, var


def rmle_difference(x_t: float, n_t: float, x_c: float, n_c: float, delta: float) -> tuple[float, float]:
    """Restricted MLE of (p_t, p_c) under ``p_t - p_c = delta`` (Farrington & Manning 1990, closed form)."""
    p1h, p2h = x_t / n_t, x_c / n_c
    th = n_c / n_t
    a = 1.0 + th
    b = -(1.0 + th + p1h + th * p2h + delta * (th + 2.0))
    c = delta * delta + delta * (2.0 * p1h + th + 1.0) + p1h + th * p2h
    d = -p1h * delta * (1.0 + delta)
    v = b**3 / (27.0 * a**3) - b * c / (6.0 * a * a) + d / (2.0 * a)
    u = math.copysign(math.sqrt(max(b * b / (9.0 * a * a) - c / (3.0 * a), 0.0)), v)
    if u == 0.0:
        p1 = -b / (3.0 * a)
    else:
        w = (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3.0
        p1 = 2.0 * u * math.cos(w) - b / (3.0 * a)
    p1 = min(max(p1, max(0.0, delta)), min(1.0, 1.0 + delta))
    return p1, p1 - delta


def rmle_ratio(x_t: float, n_t: float, x_c: float, n_c: float, phi: float) -> tuple[float, float]:
    """Restricted MLE of (p_t, p_c) under ``p_t = phi * p_c`` (Farrington & Manning 1990)."""
    A = (n_t + n_c) * phi
    B = -(n_t * phi + x_t + n_c + x_c * phi)
    C = x_t + x_c
    disc = max(B * B - 4.0 * A * C, 0.0)
    p2 = (-B - math.sqrt(disc)) / (2.0 * A)
    p2 = min(max(p2, 0.0), min(1.0, 1.0 / phi))
    return phi * p2, p2


def null_variances(
    spec: MetricSpec, tot_t: VariantCounters, tot_c: VariantCounters, c: float, a: float
) -> tuple[float, float]:
    """Per-request variances of a binary metric under ``p_t = c p_c + a`` (restricted MLE)."""
    x_t, n_t = binary_counts(spec, tot_t)
    x_c, n_c = binary_counts(spec, tot_c)
    if n_t <= 0 or n_c <= 0:
        return math.nan, math.nan
    p_t, p_c = rmle_difference(x_t, n_t, x_c, n_c, a) if c == 1.0 else rmle_ratio(x_t, n_t, x_c, n_c, c)
    return p_t * (1.0 - p_t), p_c * (1.0 - p_c)


def binary_counts(spec: MetricSpec, v: VariantCounters) -> tuple[float, int]:
    """(events, trials) of an error rate or a proportion, events capped into [0, trials].

    Error rate: errors out of the requests that got a response (``upgraded``
    101s are neither).  Proportion: the *sum* of the reported 0/1 values out of
    all requests -- a request reporting ``conversion: 0`` is a trial without a
    conversion, exactly like a request reporting nothing.
    """
    if spec.kind == "error_rate":
        n = v.exchanges
        x = float(v.errors)
    else:
        n = v.requests
        x = v.metrics.get(spec.name, (0, 0.0, 0.0))[1]
    return float(min(max(x, 0.0), n)), n


def batch_mean(spec: MetricSpec, inc: VariantCounters) -> tuple[int, float]:
    """(units, mean) of the metric over one batch of new requests."""
    if spec.kind in ("error_rate", "proportion"):
        x, n = binary_counts(spec, inc)
        return n, (x / n if n > 0 else math.nan)
    count, s, _ = inc.metrics.get(spec.name, (0, 0.0, 0.0))
    n = inc.requests if spec.per == "request" else count
    return n, (s / n if n > 0 else math.nan)


class ContrastTest:
    """Tests of one metric of one candidate against the control.

    State (serialisable): ``acc[name] = [W, I]`` for the plain difference
    (``"diff"``: ``mu_t - mu_c``) and the tolerance contrast (``"tol"``:
    ``mu_t - c mu_c - a``).
    """

    def __init__(self, spec: MetricSpec):
        self.spec = spec
        tol = spec.tolerance
        if spec.relative:
            self.c_tol, self.a_tol = 1.0 + spec.harm * tol, 0.0
        else:
            self.c_tol, self.a_tol = 1.0, spec.harm * tol
        self.binary = spec.kind in ("error_rate", "proportion")
        # Tolerance tests of binary metrics use variances at the null boundary.
        self.null_var = self.binary and (self.c_tol != 1.0 or self.a_tol != 0.0)

    def new_state(self) -> ContrastState:
        return ContrastState()

    def _variances(self, name: str, tot_t, tot_c) -> tuple[float, float]:
        if name == "tol" and self.null_var:
            return null_variances(self.spec, tot_t, tot_c, self.c_tol, self.a_tol)
        return unit_stats(self.spec, tot_t)[2], unit_stats(self.spec, tot_c)[2]

    def update(
        self,
        st: ContrastState,
        inc_t: VariantCounters,
        inc_c: VariantCounters,
        prior_t: VariantCounters,
        prior_c: VariantCounters,
    ) -> None:
        """Add one batch.  ``prior_*``: the totals *before* this batch.

        The batch's weight ``1/v_j`` must be predictable -- fixed before the
        batch is seen -- or the weighted sum is no longer a martingale: with
        variances from totals that include the batch, a batch with more errors
        raises its own variance and lowers its own weight, which biases a
        low-traffic arm towards "fewer errors" (a 5% arm's one-sided false
        alarms were 0.125 vs ~0 the other way).  Predictable plug-in variances
        keep the increments' conditional mean at zero under the null (the
        condition of the martingale central limit theorem used by Johari et
        al. 2022, Section 4; cf. Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas,
        "Time-uniform central limit theory and asymptotic confidence
        sequences", Annals of Statistics 2024, which builds asymptotic
        confidence sequences from predictable variance estimates).
        """
        self.update_strata(st, [(inc_t, inc_c, prior_t, prior_c)])

    def update_strata(
        self, st: ContrastState, strata: list[Stratum], route_states: list[ContrastState] | None = None
    ) -> None:
        """Add one batch made of strata (routes): ``(inc_t, inc_c, prior_t, prior_c)`` each.

        The batch estimate is the *standardised* difference ``d_j = sum_r w_r (mean_t,r -
        c mean_c,r) - a`` with ``w_r`` route r's share of the batch (both arms pooled), and
        ``v_j = sum_r w_r^2 (s_t,r^2/n_t,r + c^2 s_c,r^2/n_c,r)`` -- direct standardisation of
        stratified rates (Fleiss, Levin, Paik, *Statistical Methods for Rates and
        Proportions*, 3rd ed., Wiley 2003, the chapter on the standardization of rates).  Its target is the whole service's change
        at the traffic mix: ``sum_r w_r (p_t,r - c p_c,r)``.  Weighting each route by its
        inverse variance instead (Mantel-Haenszel-like pooling) estimates a *common* change,
        and gave error-free routes, whose plug-in variance is almost 0, nearly all the
        weight: a candidate failing 3% on a route with 36% of the traffic (+1.07 points on
        the service) read +0.13 points [-0.45, +0.71].  The shares depend only on the
        request counts, never on the outcomes, so each batch stays conditionally unbiased
        and the sums remain a martingale under the null.

        A route missing from one arm in this batch is left out of it (the others' shares
        renormalised); the tolerance tests skip the batch while a route has no earlier data
        for its variance at the null boundary (a weight must be fixed before its batch).
        Each route's batch also goes, on its own, to its state in ``route_states``.
        """
        rows = [self._row(stratum) for stratum in strata]
        self._add_rows(st, [r for r in rows if r is not None])
        if route_states is not None:
            for row, rs in zip(rows, route_states):
                if row is not None:
                    self._add_rows(rs, [row])

    def _row(self, stratum: Stratum) -> tuple[int, float, int, float, dict[str, tuple[float, float]]] | None:
        """One stratum's batch sizes and means, and the variances (from the totals before
        the batch) of each contrast; None when the batch has no unit on one side.  Computed
        once per look and shared by the whole-service and the route's own state."""
        inc_t, inc_c, prior_t, prior_c = stratum
        n_t, m_t = batch_mean(self.spec, inc_t)
        n_c, m_c = batch_mean(self.spec, inc_c)
        if n_t <= 0 or n_c <= 0 or not (math.isfinite(m_t) and math.isfinite(m_c)):
            return None
        var = {"diff": self._variances("diff", prior_t, prior_c)}
        var["tol"] = self._variances("tol", prior_t, prior_c) if self.null_var else var["diff"]
        return n_t, m_t, n_c, m_c, var

    def _add_rows(self, st: ContrastState, rows: list[tuple[int, float, int, float, dict[str, tuple[float, float]]]]):
        if not rows:
            return
        total = float(sum(n_t + n_c for n_t, _, n_c, _, _ in rows))
        for name, c, a in (("diff", 1.0, 0.0), ("tol", self.c_tol, self.a_tol)):
            d, v = -a, 0.0
            for n_t, m_t, n_c, m_c, var in rows:
                var_t, var_c = var[name]
                if not (math.isfinite(var_t) and math.isfinite(var_c)):
                    break
                w = (n_t + n_c) / total
                d += w * (m_t - c * m_c)
                v += w * w * (var_t / n_t + c * c * var_c / n_c)
            else:
                if v > 0:
                    acc = st.acc(name)
                    acc[0] += d / v
                    acc[1] += 1.0 / v

    def _tau2(self, st: ContrastState, name: str, tot_t: VariantCounters, tot_c: VariantCounters) -> float:
        """The mixing variance, fixed the first time it can be estimated.

        A mixture martingale needs one fixed mixing distribution (Robbins 1970;
        Johari et al. 2022, Section 3): re-estimating tau on every look would mix
        a different prior each time.  ``tau = effect_size * sigma`` as in the
        module docstring."""
        frozen = st.tau2
        if name in frozen:
            return float(frozen[name])
        c = self.c_tol if name == "tol" else 1.0
        var_t, var_c = self._variances(name, tot_t, tot_c)
        sigma2 = (var_t + c * c * var_c) / 2.0
        if not (math.isfinite(sigma2) and sigma2 > 0):
            return math.nan
        frozen[name] = (self.spec.effect_size**2) * sigma2
        return float(frozen[name])

    def evidence(self, st: ContrastState, tot_t: VariantCounters, tot_c: VariantCounters) -> dict[str, float]:
        """log Lambda of each test (before running maxima): the two-sided and half-normal
        mixtures of Robbins (1970) as used by Johari, Pekelis, Walsh (2022)."""
        h = self.spec.harm
        out: dict[str, float] = {}
        w1, i1 = st.diff
        tau1 = self._tau2(st, "diff", tot_t, tot_c)
        if i1 > 0 and math.isfinite(tau1):
            out["no_change"] = float(log_mixture_two_sided(w1, i1, tau1))
            out["better"] = float(log_one_sided(-h * w1, i1, tau1))
            out["worse_than_control"] = float(log_one_sided(h * w1, i1, tau1))
        w0, it = st.tol
        taut = self._tau2(st, "tol", tot_t, tot_c)
        if it > 0 and math.isfinite(taut):
            out["worse"] = float(log_one_sided(h * w0, it, taut))
            out["non_inferior"] = float(log_one_sided(-h * w0, it, taut))
        return out

    def estimate(self, st: ContrastState, tot_t: VariantCounters, tot_c: VariantCounters, alpha_ci: float) -> Estimate:
        """Estimate and this look's confidence sequence: a lower and an upper one-sided
        mixture bound at ``alpha_ci`` each (so ``1 - 2 alpha_ci`` jointly), the inversion of
        the very tests behind "better" and "worse than control" (Robbins 1970; Howard,
        Ramdas, McAuliffe, Sekhon 2021 for the duality)."""
        _, mean_t, _ = unit_stats(self.spec, tot_t)
        _, mean_c, _ = unit_stats(self.spec, tot_c)
        w1, i1 = st.diff
        tau1 = float(st.tau2.get("diff", math.nan))
        if i1 > 0 and math.isfinite(tau1):
            est = w1 / i1
            hw = one_sided_cs_half_width(i1, tau1, alpha_ci)
            ci = (est - hw, est + hw)
        else:
            est, ci = math.nan, (math.nan, math.nan)
        rel = (mean_t / mean_c - 1.0) if mean_c and math.isfinite(mean_c) and math.isfinite(mean_t) else math.nan
        return Estimate(
            control=mean_c, candidate=mean_t, estimate=est, ci=ci, relative_estimate=rel, scale="difference"
        )

    def assess_many(
        self,
        states: list[ContrastState],
        tots_t: list[VariantCounters],
        tots_c: list[VariantCounters],
        update: list[bool],
        alpha_ci: float,
    ) -> list[tuple[dict[str, float] | None, Estimate]]:
        """:meth:`evidence` (where ``update``) then :meth:`estimate` of many states of this
        metric at once: the mixtures (Robbins 1970; Johari, Pekelis, Walsh 2022) evaluated on
        arrays, and the confidence sequences' half-widths found together
        (:func:`bakeoff.judge.sequential.one_sided_cs_half_widths`)."""
        n = len(states)
        h = self.spec.harm
        diff_rows: list[int] = []
        tol_rows: list[int] = []
        for r in range(n):
            if update[r]:
                st, tt, tc = states[r], tots_t[r], tots_c[r]
                tau1 = self._tau2(st, "diff", tt, tc)
                if st.diff[1] > 0 and math.isfinite(tau1):
                    diff_rows.append(r)
                taut = self._tau2(st, "tol", tt, tc)
                if st.tol[1] > 0 and math.isfinite(taut):
                    tol_rows.append(r)
        evs: list[dict[str, float] | None] = [{} if u else None for u in update]
        if diff_rows:
            w = np.array([states[r].diff[0] for r in diff_rows])
            i = np.array([states[r].diff[1] for r in diff_rows])
            t = np.array([states[r].tau2["diff"] for r in diff_rows])
            cols = (
                ("no_change", log_two_sided_many(w, i, t)),
                ("better", log_one_sided_many(-h * w, i, t)),
                ("worse_than_control", log_one_sided_many(h * w, i, t)),
            )
            for j, r in enumerate(diff_rows):
                ev = evs[r]
                assert ev is not None
                for name, col in cols:
                    ev[name] = float(col[j])
        if tol_rows:
            w = np.array([states[r].tol[0] for r in tol_rows])
            i = np.array([states[r].tol[1] for r in tol_rows])
            t = np.array([states[r].tau2["tol"] for r in tol_rows])
            tcols = (("worse", log_one_sided_many(h * w, i, t)), ("non_inferior", log_one_sided_many(-h * w, i, t)))
            for j, r in enumerate(tol_rows):
                ev = evs[r]
                assert ev is not None
                for name, col in tcols:
                    ev[name] = float(col[j])
        # Estimates and confidence sequences
        info = np.array([st.diff[1] for st in states], dtype=float)
        tau = np.array([float(st.tau2.get("diff", math.nan)) for st in states])
        has = (info > 0) & np.isfinite(tau)
        hw = np.full(n, math.inf)
        if has.any():
            hw[has] = one_sided_cs_half_widths(info[has], tau[has], alpha_ci)
        hw_l = hw.tolist()
        has_l = has.tolist()
        out: list[tuple[dict[str, float] | None, Estimate]] = []
        # the control's totals (of the service or of a route) recur for every candidate:
        # their mean is computed once
        means_c: dict[int, float] = {}
        for r in range(n):
            st = states[r]
            _, mean_t, _ = unit_stats(self.spec, tots_t[r])
            known = means_c.get(id(tots_c[r]))
            if known is None:
                known = means_c[id(tots_c[r])] = unit_stats(self.spec, tots_c[r])[1]
            mean_c = known
            if has_l[r]:
                est = st.diff[0] / st.diff[1]
                ci = (est - hw_l[r], est + hw_l[r])
            else:
                est, ci = math.nan, (math.nan, math.nan)
            rel = (mean_t / mean_c - 1.0) if mean_c and math.isfinite(mean_c) and math.isfinite(mean_t) else math.nan
            e = Estimate(
                control=mean_c, candidate=mean_t, estimate=est, ci=ci, relative_estimate=rel, scale="difference"
            )
            out.append((evs[r], e))
        return out
