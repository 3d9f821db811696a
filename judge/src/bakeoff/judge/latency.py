"""Anytime-valid comparison of latency quantiles from histogram increments.

The router only exposes latency as a cumulative log-bucketed histogram, so the
judge works on the *increments* between looks (the new requests).  For
quantile ``q`` (median, p95, p99, ...) it estimates the ratio ``rho`` of the
candidate's quantile to the control's, with a confidence sequence, and tests
it against 1 and against the tolerance.

Quantile tests through exceedances.  "The candidate's q-quantile is ``r``
times the control's" is, when the candidate is a rescaled control
(``L_t ~ r L_c``), the statement that ``L_c`` and ``L_t / r`` have the same
distribution, so at *any* threshold ``x`` the two exceed ``x`` equally often.
This reduces the quantile to the Bernoulli process ``1{X > x}`` -- the device
of Howard & Ramdas ("Sequential estimation of quantiles with applications to
A/B-testing and best-arm identification", Bernoulli 28(3), 2022), who bound it
uniformly over time -- and the comparison to a difference of exceedance rates,
accumulated over looks in the normal mixture SPRT of :mod:`bakeoff.judge.sequential`
(Johari, Pekelis, Walsh 2022).

The threshold of a look is the q-quantile of that look's *pooled* batch:
the control's new latencies together with the candidate's divided by ``r``.
Under the null the pooled values are exchangeable, so given the pooled batch
the candidate's share of the exceedances is a draw without replacement: the
difference of exceedance rates has mean exactly 0 and a known (permutation)
variance, with no plug-in estimate, no peeking at the data tested, no warm-up
and no drift when load changes during the run (each look tests the quantile
of its own time window).  Histogram buckets are 2% wide, so the pooled
quantile usually falls inside a bucket; that bucket's latencies count as a
fractional exceedance (log-uniform within the bucket), which keeps the
tested level at exactly ``q`` despite ties.  Dividing by ``r = gamma**s``
moves bucket ``i`` to ``i - s`` exactly, so for integer ``s`` the test is
exact under the rescaling null; half-bucket points and the tolerance's own
(fractional) shift interpolate between their two integer neighbours.

Confidence sequence, estimate and states come from the same tests.  For
every grid ratio ``r`` the two-sided mixture ``Lambda(r)`` is kept as a
running maximum over looks, split by the sign of its drift: evidence that
``rho > r`` (``W(r) > 0``) and that ``rho < r``.  The lower confidence bound
is the largest ``r`` such that ``rho > r'`` is established for every grid
``r' <= r``; the upper bound symmetrically (Robbins' duality between tests
and confidence sets, with running intersection -- the interval only
shrinks).  At the true ratio ``Lambda`` is a martingale, so by Ville's
inequality the interval misses it at *any* look with probability at most
``alpha``; a test of "``rho <= r``" against the same threshold is valid for
the composite null because its evidence for ``rho > r`` requires ``W(r) > 0``
(a supermartingale when ``rho <= r``).  The states are read off the interval
(worse: it lies above the tolerance; non-inferior: below it; better: below
1), and the p-values are those of the same tests, so they always agree.  The
estimate is the ratio at which the accumulated exceedance difference changes
sign (where the evidence is weakest), clamped into the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bakeoff.contracts.histogram import GAMMA, NUM_BUCKETS, bucket_value
from bakeoff.judge.config import MetricSpec
from bakeoff.judge.counters import VariantCounters
from bakeoff.judge.metric_test import Estimate, LatencyState, Stratum
from bakeoff.judge.sequential import log_mixture_two_sided

LOG_GAMMA = math.log(GAMMA)
SPAN = 60  # integer shifts -SPAN..SPAN buckets: ratios 0.30 .. 3.3
# The relative changes at the ends of the grid (-70%, +232%). An estimate (or an interval end) that
# sits there means the change lies *beyond* it: the tests cannot place it further out.
GRID_EDGES = (GAMMA**-SPAN - 1.0, GAMMA**SPAN - 1.0)


def beyond_grid(change: float) -> int:
    """+1 when a latency change (ratio - 1) sits at the grid's upper edge (the true change is at
    least that), -1 at the lower edge, 0 inside the grid or for no number."""
    if not isinstance(change, (int, float)) or not math.isfinite(change):
        return 0
    if change >= GRID_EDGES[1] - 1e-9:
        return 1
    if change <= GRID_EDGES[0] + 1e-9:
        return -1
    return 0


def quantile_index(counts: np.ndarray, q: float) -> int | None:
    """Bucket index of the q-quantile (same rank rule as bakeoff.contracts.histogram.quantile_from_counts)."""
    cum = np.cumsum(counts)
    total = int(cum[-1])
    if total == 0:
        return None
    return int(np.searchsorted(cum, q * (total - 1), side="right"))


class LatencyTest:
    """Tests of one latency quantile of one candidate against the control (see the module)."""

    def __init__(self, spec: MetricSpec):
        if spec.quantile is None:
            raise ValueError(f"{spec.name}: a latency metric needs a quantile")
        self.spec = spec
        self.q = float(spec.quantile)
        self.h = 1 if spec.harm > 0 else -1
        self.ints = np.arange(-SPAN, SPAN + 1)
        r_tol = 1.0 + self.h * spec.tolerance
        self.t_tol = math.log(r_tol) / LOG_GAMMA if spec.tolerance and r_tol > 0 else 0.0
        # The grid of tested shifts (in buckets): integers, half-integers and the tolerance.
        pts = np.concatenate([self.ints, self.ints[:-1] + 0.5, [self.t_tol, 0.0]])
        self.grid = np.unique(np.clip(np.round(pts, 9), -SPAN, SPAN))
        fl = np.clip(np.floor(self.grid).astype(int), -SPAN, SPAN - 1)
        self.i0 = fl + SPAN
        self.f = self.grid - fl
        self.k0 = int(np.searchsorted(self.grid, 0.0))
        self.k_tol = int(np.searchsorted(self.grid, round(self.t_tol, 9)))
        self.tau2 = (spec.effect_size**2) * self.q * (1.0 - self.q)
        # Relative change at each grid point (exact at 0 and at the tolerance, so
        # that "the interval is above the tolerance" is the same test as p_worse).
        self.change = GAMMA**self.grid - 1.0
        self.change[self.k_tol] = self.h * spec.tolerance if self.t_tol else 0.0
        self.change[self.k0] = 0.0

    def new_state(self) -> LatencyState:
        # W, I: mixture sums (current); A, B: running max of log Lambda with drift > 0 / < 0.
        return LatencyState.zeros(len(self.grid))

    # -- one look ------------------------------------------------------------
    def batch(
        self, ct: np.ndarray, cc: np.ndarray, smin: int = -SPAN, smax: int = SPAN
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per integer shift s in smin..smax: (exceedance difference D, its permutation variance V)
        for one batch.

        Threshold: the q-quantile of the control's counts pooled with the
        candidate's shifted down by s buckets (Howard & Ramdas 2022's reduction of a
        quantile to exceedances); V is the exact permutation variance of the difference
        of exceedance rates given the pooled batch.  V = 0 marks "no information".
        """
        n_t, n_c = int(ct.sum()), int(cc.sum())
        N = n_t + n_c
        nz_c, nz_t = np.flatnonzero(cc), np.flatnonzero(ct)
        # Positions u (u = lower edge of bucket u, in the control's coordinates) from below
        # every latency to above every latency, for every shift.
        lo = min(int(nz_c[0]), int(nz_t[0]) - smax)
        hi = max(int(nz_c[-1]), int(nz_t[-1]) - smin) + 2
        u = np.arange(lo, hi)
        cum_c = np.zeros(NUM_BUCKETS + 1, dtype=np.int64)  # cum[i]: values in buckets < i
        cum_t = np.zeros(NUM_BUCKETS + 1, dtype=np.int64)
        np.cumsum(cc, out=cum_c[1:])
        np.cumsum(ct, out=cum_t[1:])
        Fc = cum_c.take(u, mode="clip")
        # Row s of Ft: the candidate's cumulative counts at u + s (its latencies divided by gamma**s).
        ext = cum_t.take(np.arange(lo + smin, hi + smax), mode="clip")
        Ft = sliding_window_view(ext, len(u))
        P = Fc[None, :] + Ft
        target = self.q * N
        j = np.minimum((P <= target).sum(axis=1) - 1, len(u) - 2)
        rows = np.arange(smax - smin + 1)
        p0, p1 = P[rows, j], P[rows, j + 1]
        m_b = p1 - p0  # pooled count in the bucket holding the threshold
        frac = np.minimum(np.maximum((target - p0) / np.maximum(m_b, 1), 0.0), 1.0)
        g = 1.0 - frac  # exceedance credit of a latency in that bucket (log-uniform within it)
        fc0, fc1 = Fc[j], Fc[j + 1]
        ft0, ft1 = Ft[rows, j], Ft[rows, j + 1]
        x_c = (n_c - fc1) + (fc1 - fc0) * g
        x_t = (n_t - ft1) + (ft1 - ft0) * g
        # Permutation variance of the difference of exceedance rates given the pooled batch:
        # N^2 S^2 / (n_t n_c (N - 1)), S^2 the pooled (population) variance of the credits.
        above = N - p1
        s1 = above + m_b * g
        s2 = above + m_b * g * g
        var_g = np.maximum(s2 / N - (s1 / N) ** 2, 0.0)
        V = N * N * var_g / (n_t * n_c * (N - 1))
        D = x_t / n_t - x_c / n_c
        return D, V

    def update(
        self,
        st: LatencyState,
        inc_t: VariantCounters,
        inc_c: VariantCounters,
        prior_t: VariantCounters | None = None,
        prior_c: VariantCounters | None = None,
    ) -> None:
        """Add one batch at every grid point.

        Every grid point is updated on every look, for the whole bake-off: a
        point whose evidence is already overwhelming still needs new data,
        because the candidate can get worse later (a regression after
        non-inferiority was shown must still roll back; stopping the updates
        at a cap missed 40 of 40 such regressions).  ``prior_*`` are unused:
        the permutation variance needs no plug-in estimate.
        """
        inc = self.increments(inc_t, inc_c)
        if inc is not None:
            st.W = st.W + inc[0]
            st.I = st.I + inc[1]

    def update_strata(
        self, st: LatencyState, strata: list[Stratum], route_states: list[LatencyState] | None = None
    ) -> None:
        """Add a batch made of routes: each route's batch is tested against the same route's
        batch of the control and the evidence adds up over the routes (their permutation
        variances are already proportional to 1/requests of the route); each route's batch
        also goes to its own state in ``route_states``."""
        for i, (inc_t, inc_c, _, _) in enumerate(strata):
            inc = self.increments(inc_t, inc_c)
            if inc is None:
                continue
            st.W = st.W + inc[0]
            st.I = st.I + inc[1]
            if route_states is not None:
                rs = route_states[i]
                rs.W = rs.W + inc[0]
                rs.I = rs.I + inc[1]

    def increments(self, inc_t: VariantCounters, inc_c: VariantCounters) -> tuple[np.ndarray, np.ndarray] | None:
        """One batch's additions to ``W`` and ``I`` at every grid point (None: no data)."""
        n_t, n_c = int(inc_t.latency.sum()), int(inc_c.latency.sum())
        if n_t == 0 or n_c == 0:
            return None
        i0, f = self.i0, self.f
        smin, smax = int(i0[0]) - SPAN, int(i0[-1]) + 1 - SPAN
        D, V = self.batch(inc_t.latency, inc_c.latency, smin, smax)
        k0 = i0 - (smin + SPAN)
        d0, d1, v0, v1 = D[k0], D[k0 + 1], V[k0], V[k0 + 1]
        Dg = (1 - f) * d0 + f * d1
        Vg = (1 - f) * v0 + f * v1
        ok = ((v0 > 0) | (f == 1.0)) & ((v1 > 0) | (f == 0.0)) & (Vg > 0)
        inv = np.where(ok, 1.0 / np.where(ok, Vg, 1.0), 0.0)
        return Dg * inv, inv

    def increments_many(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], prepared: Batches | None = None
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """:meth:`increments` of many batches ``(candidate counts, control counts)`` at once
        (:meth:`increments_rows`, one pair of rows per batch; None where a side is empty)."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(pairs)
        rows, dW, inv = self.increments_rows(pairs, prepared)
        for r, i in enumerate(rows):
            out[i] = (dW[r], inv[r])
        return out

    def increments_rows(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], prepared: Batches | None = None
    ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """:meth:`increments` of many batches ``(candidate counts, control counts)`` at once, as
        matrices: ``(rows, dW, dI)`` where row ``r`` of ``dW``, ``dI`` is the batch
        ``pairs[rows[r]]`` (the batches with requests on both sides).

        The same arithmetic as :meth:`batch` (element for element, so the results are the
        same), vectorised over the batches: where :meth:`batch` scans every position for
        the pooled quantile, this finds it by bisection -- the pooled cumulative count
        ``P(u) = F_c(u) + F_t(u + s)`` is non-decreasing in ``u``, so the last position
        with ``P(u) <= q N`` is where a binary search over ``u`` ends.  ``prepared``: the
        same ``pairs`` already stacked by :func:`prepare_batches` (for another quantile).
        """
        prep = prepare_batches(pairs) if prepared is None else prepared
        if not prep.rows:
            return [], np.zeros((0, len(self.grid))), np.zeros((0, len(self.grid)))
        rows, M, nb, cum_c, cum_t = prep.rows, prep.M, prep.nb, prep.cum_c, prep.cum_t
        n_t, n_c, N = prep.n_t, prep.n_c, prep.N
        i0, f = self.i0, self.f
        smin, smax = int(i0[0]) - SPAN, int(i0[-1]) + 1 - SPAN
        shifts = np.arange(smin, smax + 1, dtype=np.int64)[None, :]
        target = self.q * N
        # Bisection over u from lo0, where P(lo0) = 0 <= target (every latency above), over a
        # power-of-two span reaching past nb - smin + 1, where P = N > target (every one
        # below): every element then halves the same span, so the search is one add per step.
        lo0 = -smax - 1
        steps = max(1, int(nb - smin + 1 - lo0).bit_length())
        # The cumulative counts at every position u (control) and u + s (candidate) the search
        # can reach, clipped to 0..nb once (cum[0] = 0 below, cum[nb] = the total above).
        left = -(lo0 + smin)
        width = left + lo0 + (1 << steps) + smax + 2
        # (32-bit in the search, which halves the memory it reads: counts of one batch and
        # positions fit; the arithmetic below is on 64-bit values again)
        small = M * width < 2**31 and int(N.max()) < 2**31
        idt = np.int32 if small else np.int64
        flat_c: Any = _padded(cum_c, left, width, idt).ravel()
        flat_t: Any = _padded(cum_t, left, width, idt).ravel()
        # (a control's counts are stacked once for all the candidates compared with it: row
        # ``ctrl[m]`` of cum_c is batch m's)
        ic: np.ndarray = np.broadcast_to(
            (prep.ctrl.astype(idt) * width + left + lo0)[:, None], (M, len(shifts[0]))
        ).copy()
        it: np.ndarray = (np.arange(M, dtype=idt) * width + left + lo0)[:, None] + shifts.astype(idt)
        for e in range(steps - 1, -1, -1):
            half = 1 << e
            below: np.ndarray = (flat_c.take(ic + half) + flat_t.take(it + half)) <= target
            step: np.ndarray = below.astype(idt) * half
            ic += step
            it += step
        # j = the last u with P(u) <= target: ic and it point at u = j and j + s
        fc0, fc1 = flat_c.take(ic).astype(np.int64), flat_c.take(ic + 1).astype(np.int64)
        ft0, ft1 = flat_t.take(it).astype(np.int64), flat_t.take(it + 1).astype(np.int64)
        p0, p1 = fc0 + ft0, fc1 + ft1
        m_b = p1 - p0  # pooled count in the bucket holding the threshold
        frac = np.minimum(np.maximum((target - p0) / np.maximum(m_b, 1), 0.0), 1.0)
        g = 1.0 - frac  # exceedance credit of a latency in that bucket (log-uniform within it)
        x_c = (n_c - fc1) + (fc1 - fc0) * g
        x_t = (n_t - ft1) + (ft1 - ft0) * g
        above = N - p1
        s1 = above + m_b * g
        s2 = above + m_b * g * g
        var_g = np.maximum(s2 / N - (s1 / N) ** 2, 0.0)
        V = N * N * var_g / (n_t.astype(float) * n_c.astype(float) * (N - 1).astype(float))
        D = x_t / n_t - x_c / n_c
        k0 = i0 - (smin + SPAN)
        # (1 - f) d0 + f d1 and the same of V, each 1/V where defined: the arithmetic of
        # :meth:`increments`, written into the gathered columns (fresh copies) rather than
        # into a new M x grid matrix per operation, whose pages a look would fault in anew
        v0, v1 = V[:, k0], V[:, k0 + 1]
        ok = (v0 > 0) | (f == 1.0)
        ok &= (v1 > 0) | (f == 0.0)
        g = 1 - f
        Vg = np.multiply(v0, g, out=v0)
        Vg += np.multiply(v1, f, out=v1)
        ok &= Vg > 0
        np.copyto(Vg, 1.0, where=~ok)
        inv = np.divide(1.0, Vg, out=v1)
        inv[~ok] = 0.0
        d0, d1 = D[:, k0], D[:, k0 + 1]
        Dg = np.multiply(d0, g, out=d0)
        Dg += np.multiply(d1, f, out=d1)
        Dg *= inv
        return rows, Dg, inv

    # -- evidence, interval, estimate -------------------------------------------
    def _monotone(self, st: LatencyState) -> tuple[np.ndarray, np.ndarray]:
        """Evidence for rho > r (non-increasing in r) and for rho < r (non-decreasing in r)."""
        above = np.minimum.accumulate(st.A)
        below = np.minimum.accumulate(st.B[::-1])[::-1]
        return above, below

    def evidence(self, st: LatencyState, tot_t: VariantCounters, tot_c: VariantCounters) -> dict[str, float]:
        """log Lambda of each decision test: running maxima of the two-sided normal mixture
        (Robbins 1970; Johari et al. 2022) split by the sign of the drift, made monotone in
        the ratio (Robbins' duality between tests and confidence sets)."""
        W, I = st.W, st.I
        if not np.any(I > 0):
            return {}
        logl = np.where(I > 0, log_mixture_two_sided(W, I, self.tau2), 0.0)
        st.A = np.maximum(st.A, np.where(W > 0, logl, 0.0))
        st.B = np.maximum(st.B, np.where(W < 0, logl, 0.0))
        above, below = self._monotone(st)
        up, down = (above, below) if self.h > 0 else (below, above)  # harmful / helpful direction
        return {
            "no_change": float(max(above[self.k0], below[self.k0])),
            "better": float(down[self.k0]),
            "worse_than_control": float(up[self.k0]),
            "worse": float(up[self.k_tol]),
            "non_inferior": float(down[self.k_tol]),
        }

    def estimate(self, st: LatencyState, tot_t: VariantCounters, tot_c: VariantCounters, alpha_ci: float) -> Estimate:
        """Estimate and confidence sequence: the grid ratios no test has excluded at level
        ``alpha_ci`` (Howard, Ramdas, McAuliffe, Sekhon 2021 for confidence sequences by
        test inversion); the estimate is where the exceedance difference changes sign."""
        it = quantile_index(tot_t.latency, self.q)
        ic = quantile_index(tot_c.latency, self.q)
        qt = bucket_value(it) if it is not None else math.nan
        qc = bucket_value(ic) if ic is not None else math.nan
        W, I = st.W, st.I
        grid = self.grid
        # Point estimate: where the accumulated exceedance difference changes sign.
        s_hat = math.nan
        info = np.flatnonzero(I > 0)
        if len(info):
            g, w = grid[info], W[info]
            neg = np.flatnonzero(w <= 0)
            if len(neg) == 0:
                s_hat = float(g[-1])
            elif neg[0] == 0:
                s_hat = float(g[0])
            else:
                k = int(neg[0])
                s_hat = float(g[k - 1] + w[k - 1] / (w[k - 1] - w[k]) * (g[k] - g[k - 1]))
        # Confidence sequence: the grid ratios not (yet) excluded by either side.
        thr = math.log(1.0 / alpha_ci)
        above, below = self._monotone(st)
        rej_lo = np.flatnonzero(above >= thr)
        rej_hi = np.flatnonzero(below >= thr)
        k_lo = int(rej_lo[-1]) if len(rej_lo) else None
        k_hi = int(rej_hi[0]) if len(rej_hi) else None
        return self._estimate(qc, qt, s_hat, k_lo, k_hi)

    def _estimate(self, qc: float, qt: float, s_hat: float, k_lo: int | None, k_hi: int | None) -> Estimate:
        """The estimate from the grid position ``s_hat`` and the confidence sequence from the
        last grid index excluded from below (``k_lo``) and the first excluded from above (``k_hi``)."""
        if k_lo is not None and k_hi is not None and k_lo > k_hi:
            # Contradictory evidence (the ratio changed during the run): report the hull.
            k_lo, k_hi = k_hi, k_lo
        ci = (
            float(self.change[k_lo]) if k_lo is not None else -1.0,
            float(self.change[k_hi]) if k_hi is not None else math.inf,
        )
        est = math.nan
        if math.isfinite(s_hat):
            est = GAMMA**s_hat - 1.0
            est = min(max(est, ci[0]), ci[1])
        return Estimate(control=qc, candidate=qt, estimate=est, ci=ci, relative_estimate=est, scale="ratio")

    # -- many tests of one quantile at once (the judge's look) ----------------------
    def assess_many(
        self,
        states: list[LatencyState],
        tots_t: list[np.ndarray],
        tots_c: list[np.ndarray],
        update: list[bool],
        alpha_ci: float,
        quantiles: tuple[list[float], list[float]] | None = None,
    ) -> list[tuple[dict[str, float] | None, Estimate]]:
        """:meth:`evidence` (where ``update``) then :meth:`estimate` of many states of this
        metric at once: the same arithmetic element for element, on the states stacked into
        one matrix (one row per candidate and route).  Returns, per state, the evidence
        (None where not updated) and the estimate; the states' running maxima ``A``, ``B`` are
        raised as :meth:`evidence` raises them.  ``tots_*``: the totals' latency counts;
        ``quantiles``: their quantiles when already known (:func:`quantile_values`)."""
        n = len(states)
        if n == 0:
            return []
        G = len(self.grid)
        W = _rows([s.W for s in states], G)
        I = _rows([s.I for s in states], G)  # noqa: E741
        A = _rows([s.A for s in states], G)
        B = _rows([s.B for s in states], G)
        has_info = I > 0
        any_info = has_info.any(axis=1)
        upd = np.asarray(update, dtype=bool) & any_info
        if upd.any():
            rows = np.flatnonzero(upd)
            every = len(rows) == n  # (the usual look: no row to leave out, no gather)
            Wu, Iu = (W, I) if every else (W[rows], I[rows])
            logl = _log_mixture_two_sided(Wu, Iu, self.tau2)
            logl[~(Iu > 0)] = 0.0
            lift = np.where(Wu > 0, logl, 0.0)
            if every:
                np.maximum(A, lift, out=A)
                np.copyto(lift, logl)
                lift[~(Wu < 0)] = 0.0
                np.maximum(B, lift, out=B)
            else:
                A[rows] = np.maximum(A[rows], lift)
                B[rows] = np.maximum(B[rows], np.where(Wu < 0, logl, 0.0))
            for r in rows.tolist():
                states[r].A = A[r]
                states[r].B = B[r]
        # The monotone evidence (:meth:`_monotone`: the running minimum of A from the left, of B
        # from the right) is read at two columns only, each a min over the row's prefix or
        # suffix: the same floats as the accumulated matrices' columns, without writing them.
        k0, kt = self.k0, self.k_tol
        above0, below0 = A[:, : k0 + 1].min(axis=1), B[:, k0:].min(axis=1)
        above_t, below_t = A[:, : kt + 1].min(axis=1), B[:, kt:].min(axis=1)
        up0, down0, up_t, down_t = (
            (above0, below0, above_t, below_t) if self.h > 0 else (below0, above0, below_t, above_t)
        )
        no_change = np.maximum(above0, below0).tolist()
        better, wtc = down0.tolist(), up0.tolist()
        worse, ni = up_t.tolist(), down_t.tolist()
        # Point estimates: where the accumulated exceedance difference changes sign.
        cols = np.arange(G)
        neg = has_info & (W <= 0)
        has_neg = neg.any(axis=1)
        first_neg = neg.argmax(axis=1)
        first_info = has_info.argmax(axis=1)
        last_info = G - 1 - has_info[:, ::-1].argmax(axis=1)
        grid = self.grid
        # Confidence sequences: the grid ratios not excluded by either side.  "Excluded from
        # below" holds on a prefix of the row (the running minimum of A from the left stays
        # >= thr until A first falls below it), "from above" on a suffix, so the last and first
        # excluded ratios are where A first and B last fall short (NaN falls short, as the
        # running minimum propagates it).
        thr = math.log(1.0 / alpha_ci)
        short_lo, short_hi = ~(A >= thr), ~(B >= thr)
        has_lo, has_hi = ~short_lo[:, 0], ~short_hi[:, G - 1]
        any_lo, any_hi = short_lo.any(axis=1), short_hi.any(axis=1)
        k_lo_all = np.where(has_lo, np.where(any_lo, short_lo.argmax(axis=1), G) - 1, G - 1)
        k_hi_all = np.where(has_hi & any_hi, G - short_hi[:, ::-1].argmax(axis=1), 0)
        if quantiles is None:
            qt, qc = self._quantiles(tots_t), self._quantiles(tots_c)
        else:
            qt, qc = quantiles
        # The point estimates and intervals of every row at once (:meth:`_estimate`, element
        # for element): the grid position where the exceedance difference changes sign...
        rix = np.arange(n)
        # the last grid point with information at or before max(first_neg - 1, 0) (-1: none)
        before = has_info & (cols <= np.maximum(first_neg - 1, 0)[:, None])
        k_prev = np.where(before.any(axis=1), G - 1 - before[:, ::-1].argmax(axis=1), -1)
        wk, wp = W[rix, first_neg], W[rix, k_prev]
        with np.errstate(divide="ignore", invalid="ignore"):
            between = grid[k_prev] + wp / (wp - wk) * (grid[first_neg] - grid[k_prev])
        s_hat = np.where(
            ~any_info,
            math.nan,
            np.where(~has_neg, grid[last_info], np.where(first_neg == first_info, grid[first_info], between)),
        )
        # ... and the interval between the last grid ratio excluded from below and the first
        # excluded from above (their hull when they cross: the ratio changed during the run)
        swap = has_lo & has_hi & (k_lo_all > k_hi_all)
        k_lo = np.where(swap, k_hi_all, k_lo_all)
        k_hi = np.where(swap, k_lo_all, k_hi_all)
        change = self.change
        ci_lo = np.where(has_lo, change[k_lo], -1.0)
        ci_hi = np.where(has_hi, change[k_hi], math.inf)
        fin = np.isfinite(s_hat)
        est = np.full(n, math.nan)
        est[fin] = np.minimum(np.maximum(GAMMA ** s_hat[fin] - 1.0, ci_lo[fin]), ci_hi[fin])
        out: list[tuple[dict[str, float] | None, Estimate]] = []
        upd_l = upd.tolist()
        upd_req = list(update)
        for r, (e, lo, hi) in enumerate(zip(est.tolist(), ci_lo.tolist(), ci_hi.tolist())):
            ev: dict[str, float] | None = None
            if upd_req[r]:
                ev = (
                    {
                        "no_change": no_change[r],
                        "better": better[r],
                        "worse_than_control": wtc[r],
                        "worse": worse[r],
                        "non_inferior": ni[r],
                    }
                    if upd_l[r]
                    else {}
                )
            out.append((ev, Estimate(qc[r], qt[r], e, (lo, hi), e, "ratio")))
        return out

    def _quantiles(self, counts: list[np.ndarray]) -> list[float]:
        return quantile_values(counts, (self.q,))[self.q]


def _log_mixture_two_sided(w0: np.ndarray, info: np.ndarray, tau2: float) -> np.ndarray:
    """:func:`bakeoff.judge.sequential.log_mixture_two_sided` of matrices, operation for
    operation (the same floats) in two buffers instead of a new matrix per operation."""
    a = np.multiply(info, tau2)
    a += 1.0
    out = np.log(a)
    out *= -0.5
    q = np.multiply(w0, tau2)
    q *= w0
    a *= 2.0
    q /= a
    out += q
    return out


def quantile_values(counts: list[np.ndarray], qs: tuple[float, ...]) -> dict[float, list[float]]:
    """``bucket_value(quantile_index(c, q))`` of each histogram for each q (NaN when empty),
    each distinct array computed once (the control's totals recur for every candidate)."""
    index: dict[int, int] = {}
    uniq: list[np.ndarray] = []
    of: list[int] = []  # each histogram's row among the distinct ones
    for c in counts:
        i = index.get(id(c))
        if i is None:
            i = index[id(c)] = len(uniq)
            uniq.append(c)
        of.append(i)
    dense = _rows(uniq, NUM_BUCKETS)
    lo, hi = _span(dense)
    cum = np.cumsum(dense[:, lo:hi], axis=1)
    total = cum[:, -1]
    rows = np.asarray(of, dtype=np.intp)
    empty = total <= 0
    out: dict[float, list[float]] = {}
    for q in qs:
        target = q * (total - 1).astype(float)
        # buckets below lo are empty (cum 0 <= target), buckets from hi on hold none of the
        # rest: searchsorted over the cropped cumulative counts, shifted back by lo
        idx = lo + (cum <= target[:, None]).sum(axis=1)
        # bucket_value read from its table (the same floats) and spread to every histogram
        # by one gather, instead of a call per distinct histogram and a lookup per histogram
        vals = _BUCKET_VALUES[idx]
        vals[empty] = math.nan
        out[q] = vals[rows].tolist()
    return out


# bucket_value of every index quantile_values can give (0 .. NUM_BUCKETS)
_BUCKET_VALUES = np.array([bucket_value(i) for i in range(NUM_BUCKETS + 1)])


@dataclass
class Batches:
    """Batches of latency counts stacked for :meth:`LatencyTest.increments_many`: the pairs
    with requests on both sides (``rows``), cropped to the buckets that hold data, their
    sizes and cumulative counts (``cum[:, i]``: values in buckets below ``i``).  The
    controls' counts are stacked once per distinct array (the same control batch of a route
    is compared with every candidate): batch ``m``'s control is row ``ctrl[m]`` of ``cum_c``."""

    rows: list[int]
    M: int
    nb: int
    n_t: np.ndarray
    n_c: np.ndarray
    N: np.ndarray
    cum_c: np.ndarray
    cum_t: np.ndarray
    ctrl: np.ndarray

    @classmethod
    def none(cls) -> Batches:
        z = np.zeros((0, 1), dtype=np.int64)
        return cls([], 0, 0, z, z, z, z, z, np.zeros(0, dtype=np.int64))


def prepare_batches(pairs: list[tuple[np.ndarray, np.ndarray]]) -> Batches:
    """Stack ``(candidate counts, control counts)`` pairs once for every latency quantile
    (each distinct control array once)."""
    if not pairs:
        return Batches.none()
    index: dict[int, int] = {}
    controls: list[np.ndarray] = []
    of: list[int] = []
    for _, cc in pairs:
        u = index.get(id(cc))
        if u is None:
            u = index[id(cc)] = len(controls)
            controls.append(cc)
        of.append(u)
    CT = _rows([ct for ct, _ in pairs], NUM_BUCKETS).astype(np.int64, copy=False)
    CC = _rows(controls, NUM_BUCKETS).astype(np.int64, copy=False)
    n_cu = CC.sum(axis=1)
    ctrl = np.asarray(of, dtype=np.int64)
    keep = (CT.sum(axis=1) > 0) & (n_cu[ctrl] > 0)
    rows = np.flatnonzero(keep).tolist()
    if not rows:
        return Batches.none()
    if len(rows) < len(pairs):
        CT, ctrl = CT[keep], ctrl[keep]
    used, ctrl = np.unique(ctrl, return_inverse=True)  # the controls of the kept batches
    if len(used) < len(CC):
        CC, n_cu = CC[used], n_cu[used]
    # Only the buckets some batch has data in matter: below them every cumulative count
    # is 0, above them the batch's total, so the columns outside are cropped (positions
    # u below are 0 = "nothing below", at nb = "everything below"; the same P(u)).
    b_lo, b_hi = _span(CT, CC)
    CT, CC = CT[:, b_lo:b_hi], CC[:, b_lo:b_hi]
    M, nb = CT.shape
    n_t = CT.sum(axis=1)[:, None]
    n_c = n_cu[ctrl][:, None]
    cum_c = np.zeros((len(CC), nb + 1), dtype=np.int64)
    cum_t = np.zeros((M, nb + 1), dtype=np.int64)
    np.cumsum(CC, axis=1, out=cum_c[:, 1:])
    np.cumsum(CT, axis=1, out=cum_t[:, 1:])
    return Batches(rows, M, nb, n_t, n_c, n_t + n_c, cum_c, cum_t, ctrl.reshape(-1))


def _padded(cum: np.ndarray, left: int, width: int, dtype: Any) -> np.ndarray:
    """``cum[:, clip(arange(width) - left, 0, nb)]`` as ``dtype`` (``nb + 1`` columns in
    ``cum``): its first column ``left`` times, ``cum``, then its last column repeated --
    written into one new matrix rather than gathered column by column and then converted."""
    M, n = cum.shape
    out = np.empty((M, width), dtype=dtype)
    out[:, :left] = cum[:, :1]
    out[:, left : left + n] = cum
    out[:, left + n :] = cum[:, n - 1 : n]
    return out


def _rows(arrays: list[np.ndarray], width: int) -> np.ndarray:
    """The 1-D arrays (each ``width`` long) as the rows of one matrix (np.stack without its
    per-array Python overhead)."""
    return np.concatenate(arrays).reshape(len(arrays), width)


def _span(*mats: np.ndarray) -> tuple[int, int]:
    """The columns ``lo:hi`` outside which every row of every matrix is zero (0:1 if all are)."""
    used = np.flatnonzero(np.logical_or.reduce([m.any(axis=0) for m in mats]))
    if len(used) == 0:
        return 0, 1
    return int(used[0]), int(used[-1]) + 1
