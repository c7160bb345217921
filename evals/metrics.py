"""Per-answer quality metrics and their aggregation (formulas in docs/metrics.md).

Each metric is a number in [0, 1] per problem, so a model's score is a plain
mean and two models can be compared problem by problem.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from statistics import mean
from typing import Any

from evals.answers import answers_match, extract_final_answer, parse_number
from mathpal_common.notation import find_numbers, has_answer_label, normalise_symbols, number_at

METRICS = ("accuracy", "relevance", "completeness", "clarity")

# An "=" of a calculation line ("120 × 3 : 5 = 72 (học sinh)"); its result is the number after it.
_EQUALS_RE = re.compile(r"=\s*")


def numbers_in(text: str) -> list[float]:
    """Every number in ``text``, read in Vietnamese notation (``mathpal_common.notation``), unscaled."""
    return [number.raw for number in find_numbers(normalise_symbols(text))]


def reference_results(reference: str, gold_answer: str) -> list[float]:
    """The reference's intermediate results: the number after each ``=``, plus the final answer."""
    text = normalise_symbols(reference)
    results = [number.raw for eq in _EQUALS_RE.finditer(text) if (number := number_at(text, eq.end())) is not None]
    final = parse_number(gold_answer)
    if final is not None:
        results.append(final)
    return list(dict.fromkeys(results))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-9)


def completeness(response: str, reference: str, gold_answer: str) -> float:
    """Share of the reference's intermediate results that also appear in the response."""
    wanted = reference_results(reference, gold_answer)
    if not wanted:
        return 0.0
    found = numbers_in(response)
    return sum(any(_close(w, f) for f in found) for w in wanted) / len(wanted)


def relevance(response: str, reference: str) -> float:
    """chrF (character n-gram F-score, sacrebleu) of the response against the reference, in [0, 1]."""
    if not response.strip():
        return 0.0
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(response, [reference]).score / 100.0


def has_repetition_loop(response: str) -> bool:
    """True when the text repeats itself: a line three times, or few distinct word 4-grams."""
    lines = [line.strip() for line in response.splitlines() if len(line.strip()) >= 10]
    if any(count >= 3 for count in Counter(lines).values()):
        return True
    words = response.split()
    if len(words) < 40:
        return False
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / len(grams) < 0.5


def clarity_checks(response: str, hit_limit: bool) -> dict[str, bool]:
    """The four properties a clear solution has."""
    lines = [line for line in response.splitlines() if line.strip()]
    return {
        "has_steps": len(lines) >= 3,
        "has_final_answer_line": has_answer_label(response),
        "no_repetition_loop": not has_repetition_loop(response),
        "not_cut_off": not hit_limit,
    }


def score_answer(response: str, gold_answer: str, reference: str | None, hit_limit: bool = False) -> dict[str, Any]:
    """Everything we know about one response: extracted answer, correctness and each metric.

    Without a reference solution (``mathpal score`` input may lack one) relevance and
    completeness are unknown, so they are None rather than a misleading 0.
    """
    extracted = extract_final_answer(response)
    checks = clarity_checks(response, hit_limit)
    correct = bool(response.strip()) and answers_match(extracted, gold_answer)
    has_reference = reference is not None and bool(reference.strip())
    return {
        "extracted_answer": extracted,
        "correct": correct,
        "accuracy": 1.0 if correct else 0.0,
        "relevance": round(relevance(response, reference), 6) if has_reference else None,
        "completeness": round(completeness(response, reference, gold_answer), 6) if has_reference else None,
        "clarity": sum(checks.values()) / len(checks),
        "clarity_checks": checks,
    }


def _mean_of(scores: list[dict[str, Any]], metric: str) -> float | None:
    """Mean of a metric over the scores that have it; None when none has it."""
    values = [s[metric] for s in scores if s.get(metric) is not None]
    return round(mean(values), 6) if values else None


def aggregate(scores: list[dict[str, Any]], groups: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Mean of each metric, overall and per value of each grouping key (grade, topic).

    A metric that some rows lack (None) is averaged over the rows that have it.
    """
    summary: dict[str, Any] = {"n": len(scores)}
    summary.update({m: _mean_of(scores, m) if scores else 0.0 for m in METRICS})
    if groups:
        for key in sorted({k for g in groups for k in g}):
            buckets: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for score, group in zip(scores, groups):
                if group.get(key):
                    buckets[group[key]].append(score)
            if buckets:
                summary[f"by_{key}"] = {
                    value: {"n": len(items), **{m: _mean_of(items, m) for m in METRICS}}
                    for value, items in sorted(buckets.items())
                }
    return summary
