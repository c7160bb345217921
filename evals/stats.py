"""Is the fine-tuned model really better than its base?  Paired statistics on per-problem scores.

Both models answer the same problems, so each problem gives a pair of scores and the question
is whether the mean of the paired differences is more than noise.  Two tools, both standard
and both cheap:

* a paired bootstrap percentile interval for the mean difference of every metric: resample the
  *problems* (pairs) with replacement, so the interval reflects how much the result depends on
  which problems happened to be in the test split;
* McNemar's exact test for accuracy: only the problems that exactly one model solves (the
  discordant pairs) carry information, and without a real difference each is equally likely to
  favour either model, so their split is Binomial(b + c, 1/2).

The resampling uses a fixed seed so a report is reproducible byte for byte.  Formulas and a
hand-computed example: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05

# Resample indices are drawn in chunks of at most this many cells, so a test split of tens of
# thousands of problems needs tens of MB, not gigabytes.
_CHUNK_CELLS = 4_000_000


def bootstrap_means(
    differences: Sequence[float] | np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """Mean of ``differences`` in each of ``resamples`` resamples of its entries with replacement.

    Callers pass every metric's differences with the same seed, so every metric is resampled
    with the same problems (same indices): their intervals describe the same resamples.
    """
    values = np.asarray(differences, dtype=np.float64)
    n = len(values)
    if n == 0:
        raise ValueError("the paired bootstrap needs at least one pair of scores")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def paired_bootstrap_interval(
    base: Sequence[float],
    tuned: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of mean(tuned - base) over paired bootstrap resamples.

    The percentile method (numpy's default linear interpolation between order statistics) is
    the plain, well-known one; it needs no normality of per-problem scores, which are 0/1 for
    accuracy.
    """
    if len(base) != len(tuned):
        raise ValueError(f"paired scores differ in length: {len(base)} base, {len(tuned)} tuned")
    differences = np.asarray(tuned, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    means = bootstrap_means(differences, resamples, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def mcnemar_exact(base_correct: Sequence[bool], tuned_correct: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test on paired right/wrong outcomes.

    ``b`` = problems only the tuned model solves, ``c`` = problems only the base model solves;
    two-sided p = P(a Binomial(b + c, 1/2) split at least as uneven as the one seen), which is
    min(1, 2 · Σ_{k ≤ min(b, c)} C(b+c, k) / 2^(b+c)).  With no discordant pair, p = 1.
    """
    if len(base_correct) != len(tuned_correct):
        raise ValueError(f"paired outcomes differ in length: {len(base_correct)} base, {len(tuned_correct)} tuned")
    b = sum(1 for base, tuned in zip(base_correct, tuned_correct) if tuned and not base)
    c = sum(1 for base, tuned in zip(base_correct, tuned_correct) if base and not tuned)
    if b + c == 0:
        p_value = 1.0
    else:
        from scipy.stats import binomtest

        p_value = float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"tuned_only_correct": b, "base_only_correct": c, "p_value": min(1.0, p_value)}


def compare_paired(
    base_rows: list[dict[str, Any]],
    tuned_rows: list[dict[str, Any]],
    metrics: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Tuned-minus-base difference of each metric with its paired bootstrap interval, McNemar's
    exact p for accuracy, and whether the accuracy gain is beyond noise.

    Rows are already paired (row i of both lists is the same problem).  A metric that is
    missing (None) on either side of a pair leaves that pair out of the metric's comparison;
    ``n`` says how many pairs each metric used.
    """
    if len(base_rows) != len(tuned_rows):
        raise ValueError(f"cannot pair {len(base_rows)} base rows with {len(tuned_rows)} tuned rows")
    result: dict[str, Any] = {
        "n_pairs": len(base_rows),
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence},
    }
    for metric in metrics:
        pairs = [
            (b[metric], t[metric])
            for b, t in zip(base_rows, tuned_rows)
            if b.get(metric) is not None and t.get(metric) is not None
        ]
        if not pairs:
            result[metric] = {"n": 0, "difference": None, "ci_low": None, "ci_high": None}
            continue
        base_values = [float(b) for b, _ in pairs]
        tuned_values = [float(t) for _, t in pairs]
        low, high = paired_bootstrap_interval(base_values, tuned_values, resamples, seed, confidence)
        difference = float(np.mean(np.subtract(tuned_values, base_values)))
        result[metric] = {
            "n": len(pairs),
            "difference": round(difference, 6),
            "ci_low": round(low, 6),
            "ci_high": round(high, 6),
        }
    if "accuracy" in metrics and base_rows:
        test = mcnemar_exact([bool(r["correct"]) for r in base_rows], [bool(r["correct"]) for r in tuned_rows])
        result["accuracy"]["mcnemar"] = test
        result["accuracy"]["significant"] = is_significant(result["accuracy"])
    return result


def is_significant(accuracy: dict[str, Any], alpha: float = SIGNIFICANCE) -> bool:
    """Beyond noise only when both tools agree: the interval excludes 0 and McNemar's p < alpha.

    On small splits the percentile bootstrap is somewhat optimistic (its interval can exclude 0
    while the exact test says p ≈ 0.07), so requiring both keeps the claim on the safe side.
    """
    low, high = accuracy.get("ci_low"), accuracy.get("ci_high")
    if low is None or high is None:
        return False
    excludes_zero = low > 0 or high < 0
    return bool(excludes_zero and accuracy["mcnemar"]["p_value"] < alpha)
