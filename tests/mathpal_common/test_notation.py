"""The Vietnamese answer notation: one label rule for data prep, grader and metrics; numbers written and read."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from dataprep.payloads import Piece, Rejected, assemble_problem
from evals.answers import answers_match, extract_final_answer
from evals.metrics import clarity_checks
from mathpal_common.notation import find_labelled_answer, find_numbers, format_fraction, format_number, has_answer_label

QUESTION = "### QUESTION: Lan có 5 quả cam, mẹ cho thêm 7 quả. Hỏi Lan có bao nhiêu quả cam?\n#### SOLUTION: "
STEPS = "Số quả cam Lan có là:\n5 + 7 = 12 (quả)\n"

# Every accepted form of the final-answer label (docs/metrics.md lists the same).
LABELLED = [
    "Đáp số: 12 quả",
    "Đáp án: 12 quả",
    "đáp số: 12 quả",
    "ĐÁP SỐ: 12 quả",
    "Đáp số：12 quả",
    "**Đáp số:** 12 quả",
    "**Đáp số**: 12 quả",
    "**Đáp số: 12 quả**",
    "__Đáp số__: 12 quả",
    "*Đáp số:* 12 quả.",
    "Đáp số 12 quả",
    "- Đáp số 12 quả",
    "Đáp số là 12 quả",
    "Đáp số là: 12 quả",
    "Vậy đáp số là 12 quả",
    "Vậy, đáp số: 12 quả",
    "Lan có 12 quả. Đáp số: 12 quả",
    "Đáp số:\n12 quả",
    "**Đáp số:**\n\n12 quả",
]
# Lines that name no final answer: a mid-sentence mention, a longer word.
UNLABELLED = ["Đáp số của bài toán là 12 quả", "Ta tìm đáp số bằng phép cộng 12 quả", "Đáp sốx: 12 quả"]


@pytest.mark.parametrize("line", LABELLED)
def test_each_label_form_is_one_decision_in_every_path(line):
    text = STEPS + line
    # data prep: the entry becomes a problem whose answer is the labelled text
    problem = assemble_problem("e1", [Piece(None, QUESTION + text, "grade_5", None)])
    assert not isinstance(problem, Rejected), problem
    assert problem.answer == "12 quả"
    # the grader: the same answer, graded right
    assert extract_final_answer(text) == "12 quả"
    assert answers_match(extract_final_answer(text), "12 quả")
    # the clarity metric: the response has its final-answer line
    assert clarity_checks(text, hit_limit=False)["has_final_answer_line"]


@pytest.mark.parametrize("line", UNLABELLED)
def test_unlabelled_lines_are_no_final_answer_anywhere(line):
    text = STEPS + line
    assert find_labelled_answer(text) is None and not has_answer_label(text)
    problem = assemble_problem("e1", [Piece(None, QUESTION + text, "grade_5", None)])
    assert isinstance(problem, Rejected) and problem.reason == "no_final_answer"
    assert not clarity_checks(text, hit_limit=False)["has_final_answer_line"]
    # the grader still has its fallback, the last number of the response
    assert extract_final_answer(text) == "12"


def test_the_last_labelled_line_wins():
    assert find_labelled_answer("Đáp số: 10 quả\nSửa lại: 5 + 7 = 12\nĐáp số: 12 quả") == "12 quả"


def test_a_label_with_nothing_after_it_at_the_end_gives_no_answer():
    assert find_labelled_answer("5 + 7 = 12\nĐáp số:") is None
    assert has_answer_label("5 + 7 = 12\nĐáp số:")


def test_numbers_are_read_in_vietnamese_notation():
    values = [n.value for n in find_numbers("1.200 và 1 200, 12,5; 3/4; 2 1/2; -7; 1,5 triệu; 0.125; m2")]
    assert values == [1200, 1200, 12.5, 0.75, 2.5, -7, 1_500_000, 0.125]


# --------------------------------------------------------------------------- formatting


def vi_literal(text: str) -> Fraction:
    """'1.234,5' → 1234.5 (dots are only ever thousands separators), read independently of the module."""
    return Fraction(text.replace(".", "").replace(",", "."))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.5, "12,5"),
        (12.50, "12,5"),
        (Decimal("12.50"), "12,5"),
        (Fraction(25, 2), "12,5"),
        (1200, "1.200"),
        (1000, "1.000"),
        (999, "999"),
        (1234.5, "1.234,5"),
        (1_200_000, "1.200.000"),
        (0, "0"),
        (-0.0, "0"),
        (0.125, "0,125"),
        (0.1 + 0.2, "0,3"),
        (-1234.5, "-1.234,5"),
        (Fraction(-3, 4), "-0,75"),
        (Decimal("-7.050"), "-7,05"),
        (72, "72"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("value", [Fraction(1, 3), Fraction(1, 16), float("nan"), float("inf"), Decimal("NaN")])
def test_format_number_refuses_values_it_cannot_write_exactly(value):
    with pytest.raises(ValueError):
        format_number(value)


@pytest.mark.parametrize("value", ["12", None, True])
def test_format_number_refuses_non_numbers(value):
    with pytest.raises(TypeError):
        format_number(value)


def test_format_number_round_trips():
    rng = random.Random(3)
    for _ in range(2000):
        value = Fraction(rng.randint(-(10**9), 10**9), rng.choice((1, 10, 100, 1000, 4, 8, 20, 125)))
        assert vi_literal(format_number(value).lstrip("-")) * (-1 if value < 0 else 1) == value


def test_format_fraction():
    assert format_fraction(Fraction(6, 8)) == "3/4"
    assert format_fraction(Fraction(10, 5)) == "2"
    assert format_fraction(Fraction(-1, 2)) == "-1/2"


def test_written_numbers_read_back_as_the_same_value():
    rng = random.Random(4)
    for _ in range(500):
        value = Fraction(rng.randint(-(10**7), 10**7), rng.choice((1, 10, 100, 1000, 4, 8, 20, 125)))
        (number,) = find_numbers(format_number(value))
        assert number.value == pytest.approx(float(value), rel=1e-12, abs=1e-12)
