"""Tests for dataprep.payloads: cleaning, chunk joining, content splitting, answers, rejects."""

from __future__ import annotations

import random
import unicodedata

import pytest

from dataprep.payloads import (
    MIN_CHUNK_OVERLAP,
    Problem,
    Rejected,
    chunk_index,
    clean_text,
    join_chunks,
    merge_overlap,
    normalise_question,
    reference_answer,
    split_content,
)
from tests.dataprep.conftest import LONG_QUESTION, LONG_SOLUTION, build_problem, eid, split_with_overlap

NFC_QUESTION = "Một người đi xe đạp được 12 km trong 1 giờ. Hỏi trong 3 giờ người đó đi được bao nhiêu ki-lô-mét?"


# --------------------------------------------------------------------------- clean_text
def test_clean_text_strips_tags_and_unescapes_entities():
    text = "<p>Tính&nbsp;<b>tổng</b> 2 &amp; 3 &quot;nhanh&quot;</p>"
    assert clean_text(text) == 'Tính tổng 2 & 3 "nhanh"'


def test_clean_text_nbsp_entity_becomes_a_plain_space():
    cleaned = clean_text("Chiều dài&nbsp;&nbsp;là:\u00a012 cm")
    assert cleaned == "Chiều dài là: 12 cm"
    assert "\u00a0" not in cleaned and "&nbsp;" not in cleaned


def test_clean_text_escaped_less_than_survives_as_text():
    # "&lt;" is how HTML writes a literal "<": it must come out as the sign, not vanish.
    assert clean_text("3 &lt; 5 và 7 &gt; 2") == "3 < 5 và 7 > 2"


def test_clean_text_keeps_bare_comparison_signs_of_maths():
    # "Điền dấu >, <, =" is a staple of grade 5-6 exercises: a "<" followed by a space is
    # not an HTML tag, and the text between "<" and a later ">" must not be deleted.
    text = "So sánh: 3/4 < 5/6 và 7/8 > 2/3"
    assert clean_text(text) == text


def test_clean_text_nfd_equals_nfc():
    nfd = unicodedata.normalize("NFD", NFC_QUESTION)
    assert nfd != NFC_QUESTION
    cleaned = clean_text(nfd)
    assert cleaned == NFC_QUESTION
    assert unicodedata.is_normalized("NFC", cleaned)


def test_clean_text_collapses_runs_of_spaces_and_tabs_and_trims_lines():
    assert clean_text("  Tính   2 +\t\t3  \n   x  =  5   ") == "Tính 2 + 3\nx = 5"


def test_clean_text_keeps_single_line_breaks_and_one_blank_line():
    text = "Bước 1: 2 + 3 = 5\nBước 2: 5 × 2 = 10\n\n\n\nĐáp số: 10"
    assert clean_text(text) == "Bước 1: 2 + 3 = 5\nBước 2: 5 × 2 = 10\n\nĐáp số: 10"


def test_clean_text_break_tags_become_line_breaks_and_crlf_is_normalised():
    assert clean_text("a<br>b<br/>c</p>d") == "a\nb\nc\nd"
    assert clean_text("a\r\nb\rc") == "a\nb\nc"


# --------------------------------------------------------------------------- normalise_question


@pytest.mark.parametrize(
    "variant",
    [
        unicodedata.normalize("NFD", NFC_QUESTION),
        NFC_QUESTION.upper(),
        "  " + NFC_QUESTION.replace(" ", "   ") + "\n",
        "<p>" + NFC_QUESTION.replace("12 km", "<b>12 km</b>") + "</p>",
        NFC_QUESTION.replace(" ", "&nbsp;", 3),
        NFC_QUESTION.replace(". ", ".<br>"),
    ],
)
def test_normalise_question_equal_for_variants(variant):
    assert normalise_question(variant) == normalise_question(NFC_QUESTION)


def test_normalise_question_distinguishes_different_questions():
    other = NFC_QUESTION.replace("3 giờ", "4 giờ")
    assert normalise_question(other) != normalise_question(NFC_QUESTION)


# --------------------------------------------------------------------------- chunk_index


@pytest.mark.parametrize(
    ("chunk_id", "index"), [("abc_0", 0), (f"{eid(7)}_9", 9), (f"{eid(7)}_10", 10), ("a_b_123", 123)]
)
def test_chunk_index_reads_numeric_suffix(chunk_id, index):
    assert chunk_index(chunk_id) == index


def test_chunk_index_orders_numerically():
    ids = [f"{eid(3)}_{i}" for i in (10, 2, 9, 1, 11, 0)]
    assert [chunk_index(c) for c in sorted(ids, key=chunk_index)] == [0, 1, 2, 9, 10, 11]


@pytest.mark.parametrize("bad", ["abc", "abc_", "abc_x", "abc_1a", ""])
def test_chunk_index_rejects_missing_suffix(bad):
    with pytest.raises(ValueError):
        chunk_index(bad)


# --------------------------------------------------------------------------- merge_overlap / join_chunks


def test_merge_overlap_keeps_overlap_once():
    assert (
        merge_overlap("Một cửa hàng có 45 kg gạo", "45 kg gạo, đã bán 20 kg")
        == "Một cửa hàng có 45 kg gạo, đã bán 20 kg"
    )


def test_merge_overlap_without_overlap_concatenates():
    assert merge_overlap("Tính tổng ", "của hai số") == "Tính tổng của hai số"


def test_merge_overlap_ignores_coincidences_shorter_than_minimum():
    left, right = "abc 12", "12 def"
    assert len("12") < MIN_CHUNK_OVERLAP
    assert merge_overlap(left, right) == left + right


def test_merge_overlap_right_already_contained():
    assert merge_overlap("Hỏi mỗi bạn có mấy quyển vở?", "mấy quyển vở?") == "Hỏi mỗi bạn có mấy quyển vở?"


def test_join_chunks_orders_by_index_and_removes_overlap():
    text = LONG_QUESTION + "\n" + LONG_SOLUTION
    pieces = split_with_overlap(text, 30, 10)
    assert len(pieces) > 11
    chunks = list(enumerate(pieces))
    random.Random(3).shuffle(chunks)
    assert join_chunks(chunks) == text


def test_join_chunks_puts_chunk_10_after_chunk_9():
    chunks = [(i, f"<{i:02d}>") for i in range(12)]
    shuffled = [chunks[i] for i in (10, 1, 11, 9, 0, 2, 8, 3, 7, 4, 6, 5)]
    assert join_chunks(shuffled) == "".join(f"<{i:02d}>" for i in range(12))


def test_join_chunks_empty_and_single():
    assert join_chunks([]) == ""
    assert join_chunks([(4, "chỉ một đoạn")]) == "chỉ một đoạn"


# --------------------------------------------------------------------------- split_content


def test_split_content_both_parts(make_content):
    assert split_content(make_content("Tính 2 + 3.", "2 + 3 = 5\nĐáp số: 5")) == ("Tính 2 + 3.", "2 + 3 = 5\nĐáp số: 5")


def test_split_content_missing_solution():
    assert split_content("### QUESTION:\nTính 2 + 3.") == ("Tính 2 + 3.", "")


def test_split_content_missing_question_marker():
    assert split_content("Tính 2 + 3.\n#### SOLUTION:\nĐáp số: 5") == ("", "Đáp số: 5")


def test_split_content_solution_before_question():
    assert split_content("#### SOLUTION:\nĐáp số: 5\n### QUESTION:\nTính 2 + 3.")[0] == ""


# --------------------------------------------------------------------------- reference_answer


def test_reference_answer_takes_last_answer_line():
    solution = "Đáp số: 10 (nháp)\nSửa lại: 2 × 6 = 12\nĐáp số: 12 quyển vở."
    assert reference_answer(solution) == "12 quyển vở"


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        ("2 + 3 = 5\nĐáp số: 5", "5"),
        ("Chọn C\nĐáp án: C", "C"),
        ("12,5 × 2 = 25\n**Đáp số:** 25 m.", "25 m"),
        ("Vậy đáp số : 0,5 kg", "0,5 kg"),
        ("Đáp số：42", "42"),
        ("Đáp số: 3.5", "3.5"),
    ],
)
def test_reference_answer_formats(solution, answer):
    assert reference_answer(solution) == answer


@pytest.mark.parametrize("solution", ["2 + 3 = 5", "", "Đáp số:", "Kết quả là 5."])
def test_reference_answer_none_without_answer_line(solution):
    assert reference_answer(solution) is None


# --------------------------------------------------------------------------- build_problem


def test_build_problem_single_point(make_point):
    point = make_point(eid(1), "Tính 2 + 3.", "2 + 3 = 5\nĐáp số: 5", grade_id="grade_6", topic="số học")
    problem = build_problem(eid(1), [point])
    assert problem == Problem(
        entry_id=eid(1),
        grade_id="grade_6",
        question="Tính 2 + 3.",
        solution="2 + 3 = 5\nĐáp số: 5",
        answer="5",
        topic="số học",
    )


def test_build_problem_joins_scrambled_overlapping_chunks(corpus):
    ids = corpus["ids"]
    points = [p for p in corpus["points"] if p["entry_id"] == ids["chunked"]]
    assert len(points) >= 12 and [p["chunk_id"] for p in points] != sorted(p["chunk_id"] for p in points)
    problem = build_problem(ids["chunked"], points)
    assert isinstance(problem, Problem)
    assert problem.question == LONG_QUESTION
    assert problem.solution == LONG_SOLUTION
    assert problem.answer == "105 kg"
    assert problem.topic == "cộng trừ"


def test_build_problem_cleans_html_nfd_and_keeps_solution_line_breaks(make_point):
    question = "<p>Tính&nbsp;&nbsp;chu vi   hình vuông cạnh <b>4 cm</b>.</p>"
    solution = "Chu vi hình vuông là:<br>\n4 × 4 = 16 (cm)\n<b>Đáp số:</b> 16 cm."
    point = make_point(eid(2), unicodedata.normalize("NFD", question), unicodedata.normalize("NFD", solution))
    problem = build_problem(eid(2), [point])
    assert isinstance(problem, Problem)
    assert problem.question == "Tính chu vi hình vuông cạnh 4 cm."
    assert problem.solution == "Chu vi hình vuông là:\n\n4 × 4 = 16 (cm)\nĐáp số: 16 cm."
    assert unicodedata.is_normalized("NFC", problem.solution)
    assert problem.answer == "16 cm"


def test_build_problem_topic_none_without_metadata():
    point = {"entry_id": eid(3), "grade_id": "grade_5", "content": "### QUESTION:\nq?\n#### SOLUTION:\nĐáp số: 1"}
    problem = build_problem(eid(3), [point])
    assert isinstance(problem, Problem) and problem.topic is None and problem.answer == "1"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (12345, "content_not_string"),
        (None, "content_not_string"),
        (["### QUESTION:", "q"], "content_not_string"),
        ("", "empty_content"),
        ("  \n\t ", "empty_content"),
        ("#### SOLUTION:\n2 + 3 = 5\nĐáp số: 5", "no_question"),
        ("### QUESTION:\n<p> </p>\n#### SOLUTION:\nĐáp số: 5", "no_question"),
        ("### QUESTION:\nTính 2 + 3.", "no_solution"),
        ("### QUESTION:\nTính 2 + 3.\n#### SOLUTION:\n&nbsp;", "no_solution"),
        ("### QUESTION:\nTính 2 + 3.\n#### SOLUTION:\n2 + 3 = 5", "no_final_answer"),
    ],
)
def test_build_problem_rejects_with_reason(make_point, content, reason):
    result = build_problem(eid(9), [make_point(eid(9), content=content) | {"content": content}])
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert result.entry_id == eid(9)


def test_build_problem_missing_content_key_is_rejected():
    result = build_problem(eid(9), [{"entry_id": eid(9), "type": "exam"}])
    assert isinstance(result, Rejected) and result.reason == "content_not_string"


def test_build_problem_one_bad_chunk_rejects_the_entry(make_point, make_content):
    content = make_content("Tính 2 + 3.", "2 + 3 = 5\nĐáp số: 5")
    points = [
        make_point(eid(4), content=content[:30], chunk_id=f"{eid(4)}_0"),
        make_point(eid(4), chunk_id=f"{eid(4)}_1") | {"content": None},
    ]
    result = build_problem(eid(4), points)
    assert isinstance(result, Rejected) and result.reason == "content_not_string"


def test_build_problem_bad_chunk_id_is_rejected(make_point):
    point = make_point(eid(5), "Tính 2 + 3.", "Đáp số: 5", chunk_id="no-suffix")
    result = build_problem(eid(5), [point])
    assert isinstance(result, Rejected) and result.reason == "bad_chunk_id"


def test_build_problem_non_string_chunk_id_is_rejected_not_raised(make_point):
    # Rejects are counted, never raised: a chunk_id stored as a number must not crash the export.
    point = make_point(eid(6), "Tính 2 + 3.", "Đáp số: 5") | {"chunk_id": 3}
    result = build_problem(eid(6), [point])
    assert isinstance(result, Rejected)
    assert result.reason == "bad_chunk_id"
