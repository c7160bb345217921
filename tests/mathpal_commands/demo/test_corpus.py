"""Tests of the sample corpus: size, spread, determinism, notation and, above all, correctness.

Correctness is checked two ways that share no code with the generator:

* every calculation line of every solution (``120 × 3 : 5 = 72 (học sinh)``, chains
  ``a = b = c``, conversions ``2 giờ 30 phút = 2,5 giờ``, ``ƯCLN(48, 60) = 2² × 3 = 12``)
  is parsed back from Vietnamese notation and evaluated here, and the ``Đáp số`` must be the
  result of the last such line;
* for every template, the answer is recomputed from the numbers read back out of the
  question, with the formula written independently below.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import pytest

from mathpal_commands.demo import corpus as sample_corpus
from mathpal_commands.demo.corpus import (
    TEMPLATES,
    TOPICS,
    Draft,
    Problem,
    Template,
    generate_problems,
    make_problem,
    to_content,
)

REPO = Path(__file__).resolve().parents[3]
SEEDS_PER_TEMPLATE = 40


@pytest.fixture(scope="module")
def corpus() -> list[Problem]:
    return generate_problems()


@pytest.fixture(scope="module")
def drawn() -> list[tuple[Template, Problem]]:
    """Every template drawn with many seeds, so rare branches are covered too."""
    return [(t, make_problem(t, random.Random(seed))) for t in TEMPLATES for seed in range(SEEDS_PER_TEMPLATE)]


# --------------------------------------------------------------------------- an independent reader

NUMBER = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?"
TOKEN_RE = re.compile(
    rf"\s*(?:(?P<num>(?:{NUMBER})(?:/\d+)?)(?P<pow>[²³⁴⁵⁶⁷⁸⁹]*)(?P<pct>%?)"
    r"|(?P<func>ƯCLN|BCNN)|(?P<unit>°C|[^\W\d_]+)|(?P<op>[-−+×:(),]))"
)
SUPERSCRIPTS = str.maketrans("²³⁴⁵⁶⁷⁸⁹", "23456789")

# Units relative to a base unit of their kind; a line compares quantities of one kind only.
UNITS: dict[str, Fraction] = {
    "km": Fraction(1000),
    "m": Fraction(1),
    "dm": Fraction(1, 10),
    "cm": Fraction(1, 100),
    "mm": Fraction(1, 1000),
    "tấn": Fraction(1000),
    "tạ": Fraction(100),
    "yến": Fraction(10),
    "kg": Fraction(1),
    "g": Fraction(1, 1000),
    "km²": Fraction(10**6),
    "ha": Fraction(10**4),
    "m²": Fraction(1),
    "dm²": Fraction(1, 100),
    "cm²": Fraction(1, 10**4),
    "m³": Fraction(1000),
    "dm³": Fraction(1),
    "lít": Fraction(1),
    "l": Fraction(1),
    "cm³": Fraction(1, 1000),
    "ngày": Fraction(24 * 60),
    "giờ": Fraction(60),
    "phút": Fraction(1),
    "giây": Fraction(1, 60),
    "năm": Fraction(12),
    "tháng": Fraction(1),
}


def vi_literal(text: str) -> Fraction:
    """'1.234,5' → 1234.5, '3/4' → 3/4 (dots are only ever thousands separators)."""
    if "/" in text:
        numerator, denominator = text.split("/")
        return vi_literal(numerator) / vi_literal(denominator)
    return Fraction(text.replace(".", "").replace(",", "."))


def tokenize(text: str) -> list[tuple[str, str, re.Match[str]]]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = TOKEN_RE.match(text, position)
        if match is None:
            raise ValueError(f"cannot read {text!r} at {text[position:]!r}")
        kind = next(k for k in ("num", "func", "unit", "op") if match.group(k) is not None)
        tokens.append((kind, match.group(kind), match))
        position = match.end()
    return tokens


def evaluate(text: str) -> Fraction:
    """Value of an arithmetic expression in Vietnamese notation (units scale their number)."""
    tokens = tokenize(text)
    at = 0

    def peek(kind: str, value: str | None = None) -> bool:
        return at < len(tokens) and tokens[at][0] == kind and (value is None or tokens[at][1] == value)

    def take(kind: str, value: str | None = None) -> tuple[str, str, re.Match[str]]:
        nonlocal at
        if not peek(kind, value):
            raise ValueError(f"expected {value or kind} in {text!r}")
        at += 1
        return tokens[at - 1]

    def quantity() -> Fraction:
        _, literal, match = take("num")
        value = vi_literal(literal)
        if match.group("pow"):
            value **= int(match.group("pow").translate(SUPERSCRIPTS))
        if match.group("pct"):
            value /= 100
        if peek("unit"):
            value *= UNITS[take("unit")[1]]
        return value

    def primary() -> Fraction:
        if peek("num"):
            value = quantity()
            # "2 giờ 30 phút": adjacent quantities with units add up.
            while peek("num") and at + 1 < len(tokens) and tokens[at + 1][0] == "unit":
                value += quantity()
            return value
        if peek("func"):
            name = take("func")[1]
            take("op", "(")
            args = [expression()]
            while peek("op", ","):
                take("op", ",")
                args.append(expression())
            take("op", ")")
            assert all(a.denominator == 1 for a in args)
            ints = [int(a) for a in args]
            return Fraction(math.gcd(*ints) if name == "ƯCLN" else math.lcm(*ints))
        take("op", "(")
        value = expression()
        take("op", ")")
        return value

    def factor() -> Fraction:
        if peek("op", "-") or peek("op", "−"):
            take("op")
            return -factor()
        return primary()

    def term() -> Fraction:
        value = factor()
        while peek("op", "×") or peek("op", ":"):
            op = take("op")[1]
            value = value * factor() if op == "×" else value / factor()
        return value

    def expression() -> Fraction:
        value = term()
        while peek("op", "+") or peek("op", "-") or peek("op", "−"):
            op = take("op")[1]
            value = value + term() if op == "+" else value - term()
        return value

    result = expression()
    if at != len(tokens):
        raise ValueError(f"unexpected {tokens[at][1]!r} in {text!r}")
    return result


LABEL_RE = re.compile(r"^[^\W\d_][^\d=]*?:\s+")  # "Đổi: ", "Ta có: ", "Vậy: "
UNIT_SUFFIX_RE = re.compile(r"\s*\(([^()]*[^\W\d_][^()]*)\)$")  # " (học sinh)", " (m²)"


def check_calculation(line: str) -> tuple[str, str]:
    """Assert every side of ``a = b = c (unit)`` has the same value; return (last side, unit)."""
    body = LABEL_RE.sub("", line, count=1)
    unit_match = UNIT_SUFFIX_RE.search(body)
    unit = unit_match.group(1) if unit_match else ""
    if unit_match:
        body = body[: unit_match.start()]
    sides = [side.strip() for side in body.split(" = ")]
    assert len(sides) >= 2, f"not a calculation: {line!r}"
    values = [evaluate(side) for side in sides]
    assert len(set(values)) == 1, f"wrong calculation {line!r}: sides are {[str(v) for v in values]}"
    return sides[-1], unit


def check_solution(problem: Problem) -> None:
    """All calculation lines are right and the answer is the result of the last one."""
    lines = problem.solution.split("\n")
    assert lines[-1] == f"Đáp số: {problem.answer}"
    calculations = [line for line in lines[:-1] if "=" in line]
    assert calculations, f"no calculation in {problem.solution!r}"
    results = [check_calculation(line) for line in calculations]
    last, unit = results[-1]
    assert problem.answer in (last, f"{last} {unit}"), (
        f"answer {problem.answer!r} is not the last result {last!r} ({unit}) in\n{problem.solution}"
    )


ANSWER_NUMBER_RE = re.compile(rf"-?(?:{NUMBER})(?:/\d+)?%?")
QUESTION_NUMBER_RE = re.compile(rf"(?<![\w,.])-?(?:{NUMBER})(?:/\d+)?%?")


def number_value(literal: str) -> Fraction:
    """'-1.200' → -1200, '3/4' → 3/4, '25%' → 1/4."""
    sign = -1 if literal.startswith("-") else 1
    literal = literal.lstrip("-")
    if literal.endswith("%"):
        return sign * vi_literal(literal[:-1]) / 100
    return sign * vi_literal(literal)


def numbers_in(question: str) -> list[Fraction]:
    return [number_value(m.group(0)) for m in QUESTION_NUMBER_RE.finditer(question)]


def answer_value(answer: str) -> Fraction:
    match = ANSWER_NUMBER_RE.match(answer)
    assert match, f"answer {answer!r} does not start with a number"
    return number_value(match.group(0))


# --------------------------------------------------------------------------- reader self-tests


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("120 × 3 : 5", 72),
        ("1.200 - 25,5", Fraction(2349, 2)),
        ("(-12) + 35 - (-8)", 31),
        ("3/4 : 2/5", Fraction(15, 8)),
        ("2² × 3 × 5", 60),
        ("ƯCLN(48, 60)", 12),
        ("BCNN(4, 6, 9)", 36),
        ("2 giờ 30 phút", 150),
        ("120% - 100%", Fraction(1, 5)),
    ],
)
def test_reader_evaluates_vietnamese_arithmetic(text, value):
    assert evaluate(text) == value


def test_reader_rejects_wrong_lines():
    with pytest.raises(AssertionError):
        check_calculation("120 × 3 : 5 = 73 (học sinh)")
    with pytest.raises(AssertionError):
        check_calculation("3 km 250 m = 3.520 m")
    with pytest.raises(ValueError):
        evaluate("12 ÷ 3")


# --------------------------------------------------------------------------- size and spread


def test_default_call_gives_1200_distinct_questions(corpus):
    assert len(corpus) == 1200
    assert all(isinstance(p, Problem) for p in corpus)
    # Distinct even under the export's normalisation (case and spaces), which dedups on it.
    assert len({" ".join(p.question.casefold().split()) for p in corpus}) == 1200


def test_topics_are_many_and_evenly_used(corpus):
    assert len(TOPICS) >= 12
    assert len(set(TOPICS)) == len(TOPICS)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", topic) for topic in TOPICS)
    counts = Counter(p.topic for p in corpus)
    assert set(counts) == set(TOPICS)
    fair = len(corpus) / len(TOPICS)
    assert min(counts.values()) >= 0.75 * fair, counts


def test_every_topic_has_several_templates_and_both_grades_exist():
    by_topic = Counter(t.topic for t in TEMPLATES)
    assert set(by_topic) == set(TOPICS)
    assert min(by_topic.values()) >= 3, by_topic
    assert len({t.name for t in TEMPLATES}) == len(TEMPLATES)
    assert {t.grade_id for t in TEMPLATES} == {"grade_5", "grade_6"}


def test_both_grades_are_well_represented(corpus):
    counts = Counter(p.grade_id for p in corpus)
    assert set(counts) == {"grade_5", "grade_6"}
    assert min(counts.values()) >= 0.35 * len(corpus), counts


# --------------------------------------------------------------------------- determinism


def _digest(problems: list[Problem]) -> str:
    payload = json.dumps([asdict(p) for p in problems], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def test_same_arguments_give_the_same_problems():
    first, second = generate_problems(300, seed=7), generate_problems(300, seed=7)
    assert first == second
    assert _digest(first) == _digest(second)


def test_different_seeds_give_different_problems():
    a, b = generate_problems(300, seed=7), generate_problems(300, seed=8)
    assert a != b
    assert len({p.question for p in a} & {p.question for p in b}) < 30


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_output_does_not_depend_on_string_hashing(corpus, hash_seed):
    """Set/dict order changes with PYTHONHASHSEED; the corpus must not."""
    code = (
        "import hashlib, json; from dataclasses import asdict;"
        "from mathpal_commands.demo.corpus import generate_problems;"
        "p = json.dumps([asdict(x) for x in generate_problems()], ensure_ascii=False, sort_keys=True);"
        "print(hashlib.sha256(p.encode('utf-8')).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(corpus)


def test_generation_is_fast():
    start = time.perf_counter()
    generate_problems(1200, seed=11)
    assert time.perf_counter() - start < 2.0


def test_negative_n_and_exhausted_templates_raise(monkeypatch):
    with pytest.raises(ValueError):
        generate_problems(-1)
    assert generate_problems(0) == []
    constant = Template("constant", "four_operations", "grade_5", lambda rng: Draft("Tính: 1 + 1", ("1 + 1 = 2",), "2"))
    monkeypatch.setattr(sample_corpus, "TEMPLATES", (constant,))
    assert len(generate_problems(1)) == 1
    with pytest.raises(ValueError, match="distinct"):
        generate_problems(2)


# --------------------------------------------------------------------------- shape of a problem


def test_solutions_end_with_the_answer_line(corpus):
    for p in corpus:
        lines = p.solution.split("\n")
        assert lines[-1] == f"Đáp số: {p.answer}"
        assert p.answer and p.answer == p.answer.strip()
        assert p.solution.count("Đáp số") == 1
        assert len(lines) >= 2, "a step-by-step solution has steps before the answer"


def test_downstream_readers_agree_on_the_answer(corpus):
    """The export and the grader read the same answer, and the same number from it."""
    from dataprep.payloads import reference_answer, split_content
    from evals.answers import extract_final_answer, parse_number

    for p in corpus:
        assert split_content(to_content(p)) == (p.question, p.solution)
        assert reference_answer(p.solution) == p.answer
        assert extract_final_answer(p.solution) == p.answer
        expected = answer_value(p.answer) * (100 if p.answer.split()[0].endswith("%") else 1)
        assert parse_number(p.answer) == pytest.approx(float(expected), rel=1e-9, abs=1e-9), p.answer


def test_to_content_is_the_mathpal_payload_format(corpus):
    p = corpus[0]
    assert to_content(p) == "### QUESTION:\n" + p.question + "\n\n#### SOLUTION:\n" + p.solution


def test_problem_is_frozen(corpus):
    with pytest.raises(AttributeError):
        corpus[0].answer = "42"  # type: ignore[misc]


def test_no_placeholders_or_foreign_notation(corpus, drawn):
    problems = corpus + [p for _, p in drawn]
    for p in problems:
        for text in (p.question, p.solution):
            for bad in ("{", "}", "  ", "*", "÷", " x ", " / "):
                assert bad not in text, f"{bad!r} in {text!r}"
            assert not re.search(r"\b(?:None|nan|inf|TODO|True|False)\b", text), text
            assert text == text.strip()
            # Thousands separator from 1000 up: no run of 4+ digits outside a decimal part.
            assert not re.search(r"(?<![\d,])\d{4,}", text), text
            # No English decimal point: a dot between digits always starts a group of three.
            assert not re.search(r"\d\.(?=\d)(?!\d{3}(?!\d))", text), text
            # No trailing zeros in decimals (12,50) and no empty decimal part (12,).
            assert not re.search(r",\d*0(?!\d)|\d,(?!\d)(?=\S)", text.replace(", ", " ")), text


# --------------------------------------------------------------------------- correctness


def test_every_calculation_in_the_default_corpus_is_right(corpus):
    for p in corpus:
        check_solution(p)


def test_every_calculation_of_every_template_is_right(drawn):
    for _, p in drawn:
        check_solution(p)


def _expression_after_colon(q: str) -> Fraction:
    return evaluate(q.split(": ", 1)[1])


def _conversion(q: str, answer: str) -> tuple[Fraction, Fraction]:
    """'Đổi đơn vị: 3 km 250 m = ... m' → (value of the left side, value of the answer), in base units."""
    left = q.split(": ", 1)[1].split(" = ")[0]
    return evaluate(left), evaluate(answer)


def _distance(q: str, n: list[Fraction]) -> Fraction:
    h1, m1, h2, m2, *rest = n
    rest_minutes = rest[0] if "nghỉ" in q else 0
    speed = rest[-1]
    return speed * ((h2 * 60 + m2) - (h1 * 60 + m1) - rest_minutes) / 60


def _in_range_multiple(n: list[Fraction]) -> Fraction:
    *sizes, low, high = (int(x) for x in n)
    lcm = math.lcm(*sizes)
    candidates = [k for k in range(low, high + 1) if k % lcm == 0]
    assert len(candidates) == 1, (sizes, low, high)
    return Fraction(candidates[0])


def _sum_ratio(n: list[Fraction]) -> set[Fraction]:
    total, f = n
    return {total * f / (1 + f), total / (1 + f)}


def _difference_ratio(n: list[Fraction]) -> set[Fraction]:
    difference, f = (n[0], n[1]) if n[1] < 1 else (n[1], n[0])
    return {difference * f / (1 - f), difference / (1 - f)}


# Each entry: template name → the expected answer value(s), from the question's own numbers.
Recompute = Callable[[str, list[Fraction]], "Fraction | set[Fraction]"]
INDEPENDENT: dict[str, Recompute | None] = {
    "stock_two_days": lambda q, n: n[0] - (2 * n[1] + n[2]),
    "boxes_sold": lambda q, n: n[0] * n[1] - n[2],
    "expression_value": lambda q, n: _expression_after_colon(q),
    "production_two_periods": lambda q, n: n[1] * n[0] + (n[1] + n[3]) * n[2],
    "division_with_remainder": lambda q, n: Fraction(math.ceil(n[0] / n[1])),
    "fraction_of_quantity": lambda q, n: n[0] * n[1],
    "whole_from_fraction": lambda q, n: n[0] / n[1],
    "add_fractions_of_whole": lambda q, n: n[0] + n[1],
    "remaining_fraction": lambda q, n: n[0] * (1 - n[1] - n[2]),
    "fraction_arithmetic": lambda q, n: _expression_after_colon(q),
    "cut_and_share": lambda q, n: (n[0] - n[1]) / n[2],
    "can_of_oil": lambda q, n: n[0] * n[1] + n[2],
    "bottles_needed": lambda q, n: n[0] / n[1],
    "decimal_expression": lambda q, n: _expression_after_colon(q),
    "percent_of_quantity": lambda q, n: n[0] * n[1],
    "percent_ratio": lambda q, n: n[1] / n[0],
    "whole_from_percent": lambda q, n: n[0] / n[1],
    "percent_over_plan": lambda q, n: n[1] / n[0] - 1,
    "dilute_salt_water": lambda q, n: n[0] * n[1] / n[2] - n[0],
    "sum_and_ratio": lambda q, n: _sum_ratio(n),
    "difference_and_ratio": lambda q, n: _difference_ratio(n),
    "map_scale": lambda q, n: n[2] * n[1] / 100_000,
    "ratio_of_two_quantities": lambda q, n: n[0] / (10 * n[1]) if " dm" in q else n[0] / n[1],
    "direct_proportion": lambda q, n: n[1] * n[2] / 100 if "100 km" in q else n[1] / n[0] * n[2],
    "average_of_list": lambda q, n: sum(n[1:], Fraction(0)) / len(n[1:]) if len(n[1:]) == n[0] else None,
    "average_three_days": lambda q, n: (3 * n[0] + 2 * n[1] - n[2]) / 3,
    "missing_value_for_average": lambda q, n: (
        n[2] * (n[0] + 1) - n[1] * n[0] if "huấn luyện viên" in q else n[3] * n[2] - n[1] * n[0]
    ),
    "weighted_average": lambda q, n: (n[0] * n[1] + n[2] * n[3]) / (n[0] + n[2]),
    "compound_to_one_unit": None,  # checked with units below
    "to_bigger_unit": None,
    "to_smaller_unit": None,
    "convert_then_solve": lambda q, n: (
        n[0] * 1000 / n[1] if "tấn" in q else n[0] * 100 / n[1] if " cm" in q else n[0] * n[1] / 60
    ),
    "rectangle_from_perimeter": lambda q, n: (n[0] / 2 + n[1]) / 2 * ((n[0] / 2 - n[1]) / 2),
    "triangle_area": lambda q, n: n[0] * n[1] / 2,
    "circle_area": lambda q, n: (n[0] if "bán kính" in q else n[0] / 2) ** 2 * Fraction(314, 100),
    "circle_circumference": lambda q, n: (
        n[0] * Fraction(314, 100) * n[1]
        if "vòng" in q
        else n[0] * 2 * Fraction(314, 100)
        if "bán kính" in q
        else n[0] * Fraction(314, 100)
    ),
    "tank_volume_in_litres": lambda q, n: n[0] * n[1] * n[2] * 1000,
    "cube_measures": lambda q, n: (
        n[0] ** 3 if "thể tích" in q else 6 * n[0] ** 2 if "toàn phần" in q else 4 * n[0] ** 2
    ),
    "trapezoid_harvest": lambda q, n: (n[0] + n[1]) * n[2] / 2 / n[3] * n[4],
    "quadrilateral_area": lambda q, n: (
        (n[0] / 4) ** 2 if "hình vuông" in q else n[0] * n[1] / 2 if "hình thoi" in q else n[0] * n[1]
    ),
    "speed_from_distance_time": lambda q, n: n[0] / (n[1] + n[2] / 60),
    "distance_from_clock_times": _distance,
    "meeting_time": lambda q, n: n[0] / (n[1] + n[2]),
    "catching_up": lambda q, n: n[0] * n[1] / (n[2] - n[0]),
    "boat_on_river": lambda q, n: n[0] / (n[1] + n[2] if "xuôi" in q else n[1] - n[2]),
    "ages_sum_difference": lambda q, n: {(max(n) - min(n)) / 2, (max(n) + min(n)) / 2},
    "ages_difference_ratio": lambda q, n: _difference_ratio(n),
    "years_until_multiple": lambda q, n: (n[0] - n[1]) / (n[2] - 1) - n[1],
    "ages_from_future_sum": lambda q, n: (n[2] - 2 * n[1]) / (n[0] + 1),
    "more_workers_fewer_days": lambda q, n: n[0] * n[1] / n[2],
    "same_rate_longer_time": lambda q, n: n[1] / n[0] * n[2],
    "working_together": lambda q, n: n[0] * n[1] / (n[0] + n[1]),
    "one_of_two_workers": lambda q, n: 1 / (1 / n[0] - 1 / n[1]),
    "reinforcements": lambda q, n: (n[1] - n[2]) - n[0] * (n[1] - n[2]) / (n[0] + n[3]),
    "shopping_change": lambda q, n: n[4] - n[0] * n[1] - n[2] * n[3],
    "discounted_price": lambda q, n: n[0] * (1 - n[1]),
    "savings_interest": lambda q, n: n[0] * (1 + n[1]) if "cả tiền gửi" in q else n[0] * n[1],
    "cost_from_profit": lambda q, n: n[0] / (1 + n[1]),
    "same_price_more_items": lambda q, n: n[1] / n[0] * n[2],
    "greatest_common_divisor": lambda q, n: Fraction(math.gcd(*(int(x) for x in n))),
    "least_common_multiple": lambda q, n: Fraction(math.lcm(*(int(x) for x in n))),
    "common_multiple_in_range": lambda q, n: _in_range_multiple(n),
    "temperature_change": lambda q, n: n[0] + n[1] if "tăng" in q else n[0] - n[1],
    "height_above_sea": lambda q, n: n[0] + n[1] if "nổi" in q else n[0] - n[1],
    "quiz_score": lambda q, n: n[0] * n[2] - n[1] * n[3],
    "integer_expression": lambda q, n: _expression_after_colon(q),
}
UNIT_CONVERSIONS = {"compound_to_one_unit", "to_bigger_unit", "to_smaller_unit"}


def test_every_template_has_an_independent_check():
    assert set(INDEPENDENT) == {t.name for t in TEMPLATES}


def test_answers_match_an_independent_recomputation(drawn):
    for template, p in drawn:
        if template.name in UNIT_CONVERSIONS:
            left, right = _conversion(p.question, p.answer)
            assert left == right, (p.question, p.answer)
            continue
        expected = INDEPENDENT[template.name](p.question, numbers_in(p.question))
        assert expected is not None, (template.name, p.question)
        allowed = expected if isinstance(expected, set) else {expected}
        assert answer_value(p.answer) in allowed, (template.name, p.question, p.answer, [str(v) for v in allowed])


def test_answers_are_clean_numbers(drawn):
    """Integers, short decimals or reduced fractions: what a grade 5-6 answer looks like."""
    for _, p in drawn:
        literal = ANSWER_NUMBER_RE.match(p.answer).group(0).lstrip("-").rstrip("%")
        if "/" in literal:
            a, b = (int(x) for x in literal.split("/"))
            assert math.gcd(a, b) == 1 and b > 1, p.answer
        else:
            assert len(literal.partition(",")[2]) <= 3, p.answer
