"""A table of tricky Vietnamese answers, right and wrong, graded exactly as `eval` and `score` grade.

Each row is a whole model response (not just an answer string): the grader must find the
final answer in it, normalise Vietnamese notation on both sides, and compare.  Every notation
named in the issue has at least one right and one wrong row.
"""

from __future__ import annotations

import json

import pytest

from evals.evaluate import run_score
from evals.metrics import score_answer

REFERENCE = "Bài giải\nTa tính: 12 + 8 = 20\nĐáp số: 20"

# (notation, response, gold answer as the textbook writes it, correct?)
TABLE = [
    # decimal comma
    ("decimal comma", "Mỗi gói nặng:\n25 : 2 = 12,5 (kg)\nĐáp số: 12,5 kg", "12,5 kg", True),
    ("decimal comma vs English point", "Đáp số: 12.5 kg", "12,5 kg", True),
    ("decimal comma, wrong value", "Đáp số: 12,05 kg", "12,5 kg", False),
    ("decimal comma is not a thousands comma", "Đáp số: 1,200", "1200", False),
    # thousands separators
    ("thousands dot", "Số tiền là:\n**Đáp số:** 1.200.000 đồng", "1 200 000 đồng", True),
    ("thousands space", "Đáp số: 1 200 000 đồng", "1.200.000 đồng", True),
    ("thousands non-breaking space", "Đáp số: 1\u00a0200\u00a0000 đồng", "1200000 đồng", True),
    ("thousands dot, wrong value", "Đáp số: 1.250.000 đồng", "1.200.000 đồng", False),
    ("a dot before three digits is not a decimal point", "Đáp số: 1.200 kg", "1,2 kg", False),
    ("nghìn/triệu words", "Đáp số: 1,5 triệu đồng", "1.500.000 đồng", True),
    # percentages
    ("percent", "Tỉ số phần trăm là:\n9 : 36 = 0,25 = 25%\nĐáp số: 25%", "25 %", True),
    ("percent in LaTeX", "Đáp số: $25\\%$", "25%", True),
    ("percent, wrong value", "Đáp số: 20%", "25%", False),
    ("percent is not its fraction", "Đáp số: 0,25", "25%", False),
    # fractions and \frac
    ("fraction a/b", "Đáp số: 3/4 kg", "3/4 kg", True),
    ("\\frac equals decimal comma", "Đáp số: $\\frac{3}{4}$ kg", "0,75 kg", True),
    ("unreduced fraction", "Đáp số: \\dfrac{6}{8}", "3/4", True),
    ("mixed number", "Đáp số: 2\\frac{1}{2} giờ", "2,5 giờ", True),
    ("fraction, inverted", "Đáp số: 4/3", "3/4", False),
    ("fraction vs rounded decimal", "Đáp số: 0,33", "1/3", False),
    # trailing unit words
    ("unit words", "Đáp số: 72 học sinh", "72 học sinh", True),
    ("unit only on one side", "Đáp số: 72", "72 học sinh", True),
    ("square metres", "Diện tích là:\n5,5 × 0,5 = 2,75 (m²)\nĐáp số: 2,75 m²", "2,75 m2", True),
    ("compound unit answer", "Đáp số: 2 giờ 30 phút", "2 giờ 30 phút", True),
    ("compound unit answer, wrong part", "Đáp số: 2 giờ 15 phút", "2 giờ 30 phút", False),
    ("unit words, wrong number", "Đáp số: 73 học sinh", "72 học sinh", False),
    # x = 9
    ("x = 9", "Ta có x + 3 = 12\nx = 12 - 3\nĐáp số: x = 9", "9", True),
    ("x = 9 both sides", "Đáp số: x = 9", "x = 9", True),
    ("chain of equalities", "Đáp số: S = 12 × 5 = 60 cm²", "60 cm²", True),
    ("x = 9, wrong", "Đáp số: x = 8", "9", False),
    # the Unicode minus
    ("Unicode minus", "Nhiệt độ lúc đó là:\n3 − 8 = −5 (°C)\nĐáp số: −5 °C", "-5 °C", True),
    ("en dash as minus", "Đáp số: – 5", "-5", True),
    ("Unicode minus, sign lost", "Đáp số: 5 °C", "−5 °C", False),
    # where the final answer is taken from
    ("bold label", "**Đáp số: 20 quyển vở**", "20 quyển vở", True),
    ("Đáp án label", "Đáp án: 20", "20", True),
    ("last Đáp số line wins", "Đáp số: 18\nÀ, em tính lại: 12 + 8 = 20.\nĐáp số: 20", "20", True),
    ("earlier Đáp số is not the final one", "Đáp số: 20\nEm tính lại: 12 + 9 = 21.\nĐáp số: 21", "20", False),
    ("\\boxed when no Đáp số line", "Vậy kết quả là $\\boxed{12,5}$ kg.", "12,5 kg", True),
    ("last number when nothing else", "12 + 8 = 20 nên có 20 quyển", "20", True),
    ("last number, wrong", "12 + 8 = 20 nhưng bạn cho đi 2 quyển, còn 18", "20", False),
    ("empty response", "", "20", False),
    ("whitespace response", "   \n  ", "0", False),
    ("expression by math-verify", "Đáp số: $\\sqrt{16}$ cm", "4 cm", True),
    ("expression by math-verify, wrong", "Đáp số: $\\sqrt{9}$ cm", "4 cm", False),
]


@pytest.mark.parametrize(("notation", "response", "gold", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_grading_table(notation, response, gold, expected):
    scored = score_answer(response, gold, REFERENCE)
    assert scored["correct"] is expected, (notation, scored["extracted_answer"])
    assert scored["accuracy"] == (1.0 if expected else 0.0)


def test_every_notation_has_a_right_and_a_wrong_row():
    families = ["decimal comma", "thousands", "percent", "fraction", "unit", "x = 9", "minus"]
    for family in families:
        outcomes = {expected for notation, _, _, expected in TABLE if family in notation}
        assert outcomes == {True, False}, family


def test_score_command_grades_the_table_the_same_way(tmp_path):
    """The `mathpal score` path (JSONL in, report out) gives each row the grade above."""
    predictions = tmp_path / "table.jsonl"
    with predictions.open("w", encoding="utf-8") as fh:
        for index, (notation, response, gold, _) in enumerate(TABLE):
            row = {
                "id": f"t{index:02d}",
                "question": notation,
                "answer": gold,
                "prediction": response,
                "topic": notation.split()[0],
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    report_dir, metrics = run_score(predictions, tmp_path / "report", comet=False)
    samples = [json.loads(line) for line in (report_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["correct"] for s in samples] == [expected for *_, expected in TABLE]
    assert metrics["models"]["table"]["accuracy"] == pytest.approx(sum(r[3] for r in TABLE) / len(TABLE), abs=1e-6)
    # no reference solution in the input: relevance and completeness are unknown, not 0
    assert metrics["models"]["table"]["relevance"] is None and samples[0]["completeness"] is None
