"""The mixture martingale math, by hand and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from bakeoff.judge.sequential import (
    cs_half_width,
    log_mixture_one_sided,
    log_mixture_two_sided,
    log_one_sided,
    log_two_sided,
)


def _numeric_mixture(w, info, tau2, one_sided):
    def lr(t):
        return math.exp(t * w - t * t * info / 2) * norm.pdf(t, scale=math.sqrt(tau2))

    if one_sided:
        val, _ = integrate.quad(lr, 0, np.inf)
        return math.log(2 * val)
    val, _ = integrate.quad(lr, -np.inf, np.inf)
    return math.log(val)


@pytest.mark.parametrize("w,info,tau2", [(3.0, 10.0, 0.5), (-2.0, 4.0, 1.0), (0.0, 100.0, 0.01), (25.0, 400.0, 0.02)])
def test_closed_forms_match_numerical_integration(w, info, tau2):
    assert log_two_sided(w, info, tau2) == pytest.approx(_numeric_mixture(w, info, tau2, False), rel=1e-6, abs=1e-8)
    assert log_one_sided(w, info, tau2) == pytest.approx(_numeric_mixture(w, info, tau2, True), rel=1e-6, abs=1e-8)
    assert float(log_mixture_one_sided(w, info, tau2)) == pytest.approx(log_one_sided(w, info, tau2))
    assert float(log_mixture_two_sided(w, info, tau2)) == pytest.approx(log_two_sided(w, info, tau2))


def test_one_sided_evidence_grows_only_in_its_direction():
    assert log_one_sided(5.0, 10.0, 0.5) > log_two_sided(5.0, 10.0, 0.5) > 0
    assert log_one_sided(-5.0, 10.0, 0.5) < 0


def test_confidence_sequence_is_the_inverted_test():
    info, tau2, alpha = 50.0, 0.2, 0.05
    hw = cs_half_width(info, tau2, alpha)
    # At the CS boundary the two-sided mixture equals exactly 1/alpha.
    w0 = hw * info
    assert log_two_sided(w0, info, tau2) == pytest.approx(math.log(1 / alpha))
    assert cs_half_width(0.0, tau2, alpha) == math.inf


def test_ville_bound_holds_for_gaussian_increments_under_continuous_monitoring():
    """Drift 0, 400 looks, 2000 paths: the supremum crosses 1/alpha at most alpha of the time."""
    rng = np.random.default_rng(7)
    paths, looks, alpha, tau2 = 2000, 400, 0.05, 1.0
    incr = rng.normal(size=(paths, looks))
    W = np.cumsum(incr, axis=1)
    info = np.arange(1, looks + 1)
    one = (log_mixture_one_sided(W, info, tau2) >= math.log(1 / alpha)).any(axis=1).mean()
    two = (log_mixture_two_sided(W, info, tau2) >= math.log(1 / alpha)).any(axis=1).mean()
    assert one <= alpha and two <= alpha
    # ... while the naive fixed-sample z-test, repeated at every look, alarms far more often.
    naive = (np.abs(W / np.sqrt(info)) >= 1.96).any(axis=1).mean()
    assert naive > 0.3
    # Power: a drift of 0.2 per unit information is found on nearly every path
    # by a mixture tuned to it (tau = drift).
    drifted = np.cumsum(incr + 0.2, axis=1)
    assert (log_mixture_one_sided(drifted, info, 0.04) >= math.log(1 / alpha)).any(axis=1).mean() > 0.9
