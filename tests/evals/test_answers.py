"""Tests for evals.answers: Vietnamese number notation, answer extraction and matching."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from evals.answers import answers_match, extract_final_answer, parse_number

# --------------------------------------------------------------------------- parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12,5", 12.5),
        ("12.5", 12.5),
        ("1.200", 1200),
        ("1 200", 1200),
        ("1\u00a0200", 1200),
        ("100.000 đồng", 100000),
        ("3.500.000 đồng", 3500000),
        ("1.234.567,5", 1234567.5),
        ("1 234 567,5", 1234567.5),
        ("3.5", 3.5),
        ("3.25", 3.25),
        ("0.125", 0.125),  # a group never starts with 0: English decimal, not 125
        ("1,200", 1.2),  # ambiguous: the comma is a Vietnamese decimal comma
        ("25%", 25),
        ("25 %", 25),
        ("25\\%", 25),
        ("3/4", 0.75),
        ("\\frac{3}{4}", 0.75),
        ("\\dfrac{3}{4}", 0.75),
        ("\\tfrac34", 0.75),
        ("2 1/2", 2.5),
        ("2\\frac{1}{2}", 2.5),
        ("x = 9", 9),
        ("a=9", 9),
        ("S = 12 × 5 = 60 cm²", 60),
        ("−5", -5),
        ("–5", -5),
        ("-5", -5),
        ("$12,5$", 12.5),
        ("\\(12,5\\)", 12.5),
        ("\\boxed{12,5}", 12.5),
        ("\\boxed{\\frac{3}{4}}", 0.75),
        ("12\\,500", 12500),
        ("12{,}5 \\text{ cm}^2", 12.5),
        ("\\text{72 học sinh}", 72),
        ("2,75 m²", 2.75),
        ("2,75 m2", 2.75),
        ("72 học sinh", 72),
        ("45 km/giờ", 45),
        ("12,5 kg", 12.5),
        ("8 quyển vở", 8),
        ("1,5 triệu đồng", 1500000),
        ("150 nghìn đồng", 150000),
        ("**12,5 kg**", 12.5),
        ("Đáp số: 12,5 kg.", 12.5),
    ],
)
def test_parse_number(text: str, expected: float) -> None:
    assert parse_number(text) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("text", ["", "   ", "không có đáp án", "\\text{tam giác đều}"])
def test_parse_number_without_number_is_none(text: str) -> None:
    assert parse_number(text) is None


# --------------------------------------------------------------------------- extract_final_answer


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Lớp có 40 + 32 = 72 học sinh.\n**Đáp số:** 72 học sinh", "72 học sinh"),
        ("Ta có ...\n**Đáp số: 12,5 kg**", "12,5 kg"),
        ("Ta có ...\n**Đáp số**: 12,5 kg", "12,5 kg"),
        ("ĐÁP SỐ: 15 cm", "15 cm"),
        ("Đáp án: 3/4", "3/4"),
        ("Vậy đáp số: 9 quả.", "9 quả"),
        ("Giải:\nĐáp số:\n\n**20 lít**", "20 lít"),
        ("Kết quả là \\boxed{12,5} kg.", "12,5"),
        ("\\boxed{1} rồi \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("Bạn An có 12 quyển vở, cho đi 4 quyển, còn lại 8 quyển.", "8"),
        ("Số tiền là 3.500.000 đồng.", "3.500.000"),
        ("Nhiệt độ là −5 độ.", "-5"),
    ],
)
def test_extract_final_answer(response: str, expected: str) -> None:
    assert extract_final_answer(response) == expected


def test_last_dap_so_line_wins() -> None:
    response = "Đáp số: 70 học sinh\nÀ, em tính lại: 40 + 32 = 72.\nĐáp số: 72 học sinh"
    assert extract_final_answer(response) == "72 học sinh"
    assert answers_match(extract_final_answer(response), "72 học sinh")


def test_dap_so_line_beats_later_numbers_and_boxed() -> None:
    response = "\\boxed{5}\nĐáp số: 72 học sinh\nChúc em học tốt lớp 5!"
    assert extract_final_answer(response) == "72 học sinh"


def test_no_dap_so_line_falls_back_to_last_number() -> None:
    response = "Mỗi bạn được 12 : 4 = 3 cái kẹo. Vậy mỗi bạn có 3 cái kẹo"
    assert extract_final_answer(response) == "3"
    assert answers_match(extract_final_answer(response), "3 cái kẹo")


@pytest.mark.parametrize("response", ["", "   \n\t ", "Em không biết làm bài này."])
def test_extract_without_answer(response: str) -> None:
    assert extract_final_answer(response) is None


def test_empty_response_never_matches() -> None:
    assert answers_match(extract_final_answer(""), "0") is False
    assert answers_match(None, "12") is False
    assert answers_match("", "") is False
    assert answers_match("   ", "12") is False


# --------------------------------------------------------------------------- answers_match


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("12,5", "12.5"),
        ("12.5", "12,5"),
        ("1.5", "1,5"),
        ("1.200", "1200"),
        ("1 200", "1200"),
        ("1.200", "1 200"),
        ("100.000 đồng", "100000"),
        ("3.500.000 đồng", "3500000"),
        ("3.500.000 đồng", "3 500 000 đồng"),
        ("72 học sinh", "72 học sinh"),
        ("72", "72 học sinh"),
        ("\\boxed{12,5}", "12,5"),
        ("\\frac{3}{4}", "3/4"),
        ("\\frac{3}{4}", "0,75"),
        ("3/4", "0,75"),
        ("6/8", "3/4"),
        ("\\dfrac{6}{8}", "\\frac{3}{4}"),
        ("25%", "25 %"),
        ("25%", "25"),
        ("x = 9", "9"),
        ("−5", "-5"),
        ("– 5 độ C", "-5"),
        ("2,75 m²", "2.75"),
        ("2,75 \\text{ m}^2", "2,75 m²"),
        ("2 1/2", "2,5"),
        ("$12{,}5$ kg", "12,5 kg"),
        ("**Đáp số:** 12,5 kg", "12,5 kg"),
        ("100 nghìn đồng", "100.000 đồng"),
        ("100 nghìn đồng", "100"),  # "… bao nhiêu nghìn đồng?"
        ("2 giờ 30 phút", "2 giờ 30 phút"),
        ("12,5 kg (hay 12 500 g)", "12,5 kg"),
        ("0,1", "0.1"),
        ("1/3", "0,333333333"),
        ("Tam giác đều", "tam giác  đều."),
        ("\\sqrt{4}", "2"),
    ],
)
def test_answers_match(predicted: str, gold: str) -> None:
    assert answers_match(predicted, gold) is True


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("72", "73"),
        ("72 học sinh", "73 học sinh"),
        ("12,5 kg", "125"),
        ("1,200", "1200"),  # comma is a decimal comma
        ("1.2", "1200"),
        ("0.125", "125"),
        ("25%", "0,25"),  # percent is compared with percent, not as a fraction
        ("3/4", "4/3"),
        ("-5", "5"),
        ("2 giờ 15 phút", "2 giờ 30 phút"),
        ("2 giờ", "2 giờ 30 phút"),
        ("100 nghìn đồng", "100 triệu đồng"),
        ("0,333", "1/3"),
        ("\\sqrt{9}", "2"),
        ("Tam giác vuông", "tam giác đều"),
        ("Em không biết", "12"),
    ],
)
def test_answers_do_not_match(predicted: str, gold: str) -> None:
    assert answers_match(predicted, gold) is False


def test_extract_then_match_full_response() -> None:
    response = (
        "Bài giải\n"
        "Số học sinh nữ là: 40 × 3/5 = 24 (học sinh)\n"
        "Số học sinh nam là: 40 − 24 = 16 (học sinh)\n"
        "**Đáp số:** 16 học sinh"
    )
    assert answers_match(extract_final_answer(response), "16 học sinh")
    assert not answers_match(extract_final_answer(response), "24 học sinh")


# --------------------------------------------------------------------------- threads


def test_math_verify_path_works_in_worker_thread() -> None:
    """math-verify's default timeouts use signal.alarm, which raises outside the main thread;
    evaluation runs in thread pools, so the symbolic path must work there."""
    cases = [("\\sqrt{4}", "2", True), ("\\sqrt{9}", "2", False), ("\\sqrt{16} cm", "4 cm", True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: answers_match(case[0], case[1]), cases))
    assert results == [expected for _, _, expected in cases]

    outcome: dict[str, object] = {}

    def worker() -> None:
        try:
            outcome["result"] = answers_match("\\sqrt{4}", "2")
        except BaseException as error:  # noqa: BLE001 - report any failure to the main thread
            outcome["error"] = error

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert "error" not in outcome
    assert outcome.get("result") is True
