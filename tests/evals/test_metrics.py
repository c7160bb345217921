"""Per-answer metrics and their aggregation."""

from __future__ import annotations

import pytest

from evals.metrics import (
    aggregate,
    clarity_checks,
    completeness,
    has_repetition_loop,
    reference_results,
    relevance,
    score_answer,
)

REFERENCE = (
    "Số học sinh nữ là:\n120 × 3 : 5 = 72 (học sinh)\n"
    "Số học sinh nam là:\n120 - 72 = 48 (học sinh)\nĐáp số: 48 học sinh"
)


def test_reference_results_are_the_numbers_after_equals_and_the_answer():
    assert reference_results(REFERENCE, "48 học sinh") == [72.0, 48.0]
    assert reference_results("Tổng là:\n1.200 + 300 = 1.500 (đồng)\nĐáp số: 1.500 đồng", "1.500 đồng") == [1500.0]


def test_completeness_counts_intermediate_results_found():
    assert completeness("Nữ: 72 bạn. Nam: 48 bạn.\nĐáp số: 48", REFERENCE, "48 học sinh") == 1.0
    assert completeness("Đáp số: 48", REFERENCE, "48 học sinh") == 0.5
    assert completeness("Đáp số: 50", REFERENCE, "48 học sinh") == 0.0


def test_relevance_is_higher_for_the_reference_itself():
    assert relevance(REFERENCE, REFERENCE) == pytest.approx(1.0)
    assert relevance("xyz", REFERENCE) < 0.1
    assert relevance("", REFERENCE) == 0.0


def test_repetition_loop_detection():
    assert has_repetition_loop("Số học sinh nữ là 72\n" * 3)
    assert has_repetition_loop(" ".join(["một hai ba bốn"] * 20))
    assert not has_repetition_loop(REFERENCE)


def test_clarity_checks_of_a_good_and_a_cut_off_answer():
    assert all(clarity_checks(REFERENCE, hit_limit=False).values())
    cut = clarity_checks("Số học sinh nữ là:\n120 × 3", hit_limit=True)
    assert cut == {"has_steps": False, "has_final_answer_line": False, "no_repetition_loop": True, "not_cut_off": False}


def test_score_answer_marks_vietnamese_notation_correct():
    scored = score_answer("Ta có 120 - 72 = 48.\nVậy...\n**Đáp số:** 48 học sinh", "48 học sinh", REFERENCE)
    assert scored["correct"] is True and scored["accuracy"] == 1.0
    assert scored["extracted_answer"].startswith("48")
    wrong = score_answer("Đáp số: 47", "48 học sinh", REFERENCE)
    assert wrong["correct"] is False and wrong["accuracy"] == 0.0
    assert score_answer("", "48", REFERENCE)["correct"] is False


def test_aggregate_means_and_breakdowns():
    scores = [
        {"accuracy": 1.0, "relevance": 0.5, "completeness": 1.0, "clarity": 1.0},
        {"accuracy": 0.0, "relevance": 0.1, "completeness": 0.0, "clarity": 0.5},
        {"accuracy": 1.0, "relevance": 0.3, "completeness": 0.5, "clarity": 0.75},
    ]
    groups = [
        {"grade_id": "grade_5", "topic": "a"},
        {"grade_id": "grade_6", "topic": "a"},
        {"grade_id": "grade_5", "topic": ""},
    ]
    summary = aggregate(scores, groups)
    assert summary["n"] == 3 and summary["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert summary["by_grade_id"]["grade_5"] == {
        "n": 2,
        "accuracy": 1.0,
        "relevance": 0.4,
        "completeness": 0.75,
        "clarity": 0.875,
    }
    assert summary["by_topic"] == {
        "a": {"n": 2, "accuracy": 0.5, "relevance": 0.3, "completeness": 0.5, "clarity": 0.75}
    }


def test_without_reference_relevance_and_completeness_are_unknown_not_zero():
    scored = score_answer("Ta có 120 - 72 = 48.\nVậy...\nĐáp số: 48 học sinh", "48 học sinh", None)
    assert scored["correct"] is True and scored["relevance"] is None and scored["completeness"] is None
    summary = aggregate([scored, score_answer("Đáp số: 47", "48", REFERENCE)])
    assert summary["accuracy"] == 0.5
    assert summary["completeness"] == 0.0
    assert summary["relevance"] == pytest.approx(relevance("Đáp số: 47", REFERENCE), abs=1e-6)
