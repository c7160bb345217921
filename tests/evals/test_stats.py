"""Paired bootstrap interval and McNemar's exact test, checked against cases computed by hand."""

from __future__ import annotations

from fractions import Fraction
from math import comb, factorial

import numpy as np
import pytest

from evals.stats import bootstrap_means, compare_paired, mcnemar_exact, paired_bootstrap_interval


def outcomes(tuned_only: int, base_only: int, both: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Paired right/wrong lists with the given counts of each kind of pair."""
    base = [False] * tuned_only + [True] * base_only + [True] * both + [False] * neither
    tuned = [True] * tuned_only + [False] * base_only + [True] * both + [False] * neither
    return base, tuned


@pytest.mark.parametrize(
    ("tuned_only", "base_only", "expected"),
    [
        (7, 1, 18 / 256),  # 2 · (C(8,0) + C(8,1)) / 2^8
        (1, 7, 18 / 256),  # two-sided: symmetric
        (10, 0, 2 / 1024),  # 2 · C(10,0) / 2^10
        (5, 5, 1.0),  # 2 · (C(10,0) + … + C(10,5)) / 2^10 > 1, capped
        (3, 1, 10 / 16),  # 2 · (1 + 4) / 16
        (0, 0, 1.0),  # no discordant pair: no evidence either way
    ],
)
def test_mcnemar_exact_p_matches_hand_computation(tuned_only, base_only, expected):
    base, tuned = outcomes(tuned_only, base_only, both=4, neither=3)
    result = mcnemar_exact(base, tuned)
    assert result["tuned_only_correct"] == tuned_only and result["base_only_correct"] == base_only
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)
    # the same number from the formula in docs/metrics.md
    n, k = tuned_only + base_only, min(tuned_only, base_only)
    assert result["p_value"] == pytest.approx(min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0)


def exact_bootstrap_quantiles(n: int, plus: int, minus: int, tails: tuple[float, float]) -> tuple[float, float]:
    """The quantiles of the *exact* bootstrap distribution of a mean of +1/-1/0 differences.

    A resample of n pairs holds K+ of the +1 pairs and K- of the -1 pairs with
    (K+, K-, K0) ~ Multinomial(n; plus/n, minus/n, rest/n), and its mean is (K+ - K-)/n;
    enumerating every (K+, K-) gives the distribution with no sampling at all.
    """
    p, m = Fraction(plus, n), Fraction(minus, n)
    z = 1 - p - m
    dist: dict[Fraction, Fraction] = {}
    for a in range(n + 1):
        for b in range(n + 1 - a):
            c = n - a - b
            prob = Fraction(factorial(n), factorial(a) * factorial(b) * factorial(c)) * p**a * m**b * z**c
            dist[Fraction(a - b, n)] = dist.get(Fraction(a - b, n), 0) + prob
    cumulative, found = Fraction(0), []
    values = sorted(dist)
    for tail in tails:
        cumulative = Fraction(0)
        for value in values:
            cumulative += dist[value]
            if cumulative >= Fraction(tail).limit_denominator(1000):
                found.append(float(value))
                break
    return found[0], found[1]


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    """20 problems: 7 solved only by tuned, 1 only by base, 12 ties; difference = 6/20 = +0.30.

    By hand (enumeration above): P(mean ≤ 0) = 0.0131 and P(mean ≤ 0.05) = 0.0345, so the
    2.5% quantile is +0.05; P(mean ≤ 0.50) = 0.9658 and P(mean ≤ 0.55) = 0.9873, so the
    97.5% quantile is +0.55.  Both are ≥ 5.9 Monte-Carlo standard errors (10,000 resamples)
    from the 2.5%/97.5% levels, so the resampled interval must land on exactly these values.
    """
    base, tuned = outcomes(tuned_only=7, base_only=1, both=0, neither=12)
    assert exact_bootstrap_quantiles(20, 7, 1, (0.025, 0.975)) == (0.05, 0.55)
    low, high = paired_bootstrap_interval([float(b) for b in base], [float(t) for t in tuned])
    assert (low, high) == (pytest.approx(0.05, abs=1e-12), pytest.approx(0.55, abs=1e-12))


def test_compare_paired_reports_difference_interval_p_and_a_careful_verdict():
    base, tuned = outcomes(tuned_only=7, base_only=1, both=0, neither=12)
    rows = lambda flags: [{"correct": f, "accuracy": float(f), "clarity": 0.5} for f in flags]  # noqa: E731
    result = compare_paired(rows(base), rows(tuned), ["accuracy", "clarity"])
    accuracy = result["accuracy"]
    assert accuracy["difference"] == pytest.approx(0.30)
    assert (accuracy["ci_low"], accuracy["ci_high"]) == (0.05, 0.55)
    assert accuracy["mcnemar"] == {"tuned_only_correct": 7, "base_only_correct": 1, "p_value": 0.0703125}
    # the interval excludes 0 but the exact test does not reject: not claimed as real
    assert accuracy["significant"] is False
    assert result["clarity"] == {"n": 20, "difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert result["bootstrap"] == {"resamples": 10_000, "seed": 0, "confidence": 0.95}


def test_a_clear_gain_is_significant():
    base, tuned = outcomes(tuned_only=12, base_only=0, both=10, neither=18)
    rows = lambda flags: [{"correct": f, "accuracy": float(f)} for f in flags]  # noqa: E731
    accuracy = compare_paired(rows(base), rows(tuned), ["accuracy"])["accuracy"]
    assert accuracy["difference"] == pytest.approx(0.30)
    assert accuracy["mcnemar"]["p_value"] == pytest.approx(2 / 4096)
    assert accuracy["ci_low"] > 0 and accuracy["significant"] is True


def test_missing_metric_values_leave_their_pairs_out():
    base = [{"relevance": 0.2}, {"relevance": None}, {"relevance": 0.4}]
    tuned = [{"relevance": 0.5}, {"relevance": 0.9}, {"relevance": 0.4}]
    result = compare_paired(base, tuned, ["relevance"])["relevance"]
    assert result["n"] == 2 and result["difference"] == pytest.approx(0.15)
    nothing = compare_paired([{"relevance": None}], [{"relevance": 0.1}], ["relevance"])["relevance"]
    assert nothing == {"n": 0, "difference": None, "ci_low": None, "ci_high": None}


def test_bootstrap_is_reproducible_and_chunking_does_not_change_it(monkeypatch):
    differences = np.random.default_rng(3).normal(size=37)
    first = bootstrap_means(differences, resamples=500, seed=11)
    assert np.array_equal(first, bootstrap_means(differences, resamples=500, seed=11))
    assert not np.array_equal(first, bootstrap_means(differences, resamples=500, seed=12))
    # every resample mean is the mean of n values drawn from the differences
    assert differences.min() <= first.min() and first.max() <= differences.max()
    with pytest.raises(ValueError, match="at least one pair"):
        bootstrap_means([], resamples=10)
