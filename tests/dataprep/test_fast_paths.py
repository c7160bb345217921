"""The export's shortcuts give exactly what the plain rules give.

``clean_text`` and ``merge_overlap`` skip work when the text
cannot need it, ``question_key`` does not clean a cleaned question twice, and
``problem_line`` writes JSON by hand.  Any difference would change a problem's text,
answer, id or split, so each is compared with a straightforward reference (the
previous implementation, kept here) on the sample corpus and on random strings made
of the characters that matter (tags, entities, odd spaces, line breaks, NFD accents).
"""

from __future__ import annotations

import html
import json
import random
import re
import unicodedata

import pytest

from dataprep.export import (
    add_points,
    finish_export,
    new_export,
    point_fields,
    problem_line,
    row_line,
    system_message_json,
    to_example,
)
from dataprep.payloads import Problem, clean_text, merge_overlap, normalise_question, question_key, reference_answer
from mathpal_commands.demo.points import sample_points
from tests.dataprep.conftest import eid

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u3000]+")
_ANSWER = re.compile(r"(?:Đáp số|Đáp án)\s*[:：]\s*(.+)", re.IGNORECASE)


def reference_clean(text: str) -> str:
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for line in (_SPACES.sub(" ", line).strip() for line in text.split("\n")):
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).strip()


def reference_answer_of(solution: str) -> str | None:
    found = None
    for line in solution.split("\n"):
        match = _ANSWER.search(line.replace("*", ""))
        if match:
            found = match.group(1).strip().rstrip(".").strip()
    return found or None


def reference_merge(left: str, right: str, min_overlap: int = 8) -> str:
    for size in range(min(len(left), len(right)), min_overlap - 1, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return left + right


PIECES = [
    *'ab Đáp số án:：.*<>&;#/\n\r\t\u00a0\u2028\x0b\x1c\x85é\u0301\u3000\u200a"\\',
    "<br>",
    "</p>",
    "<b>",
    "&nbsp;",
    "&amp;",
    "&#13;",
    "&lt;b&gt;",
    "&amp;lt;",
    "  ",
    "\n\n\n",
    " \n ",
    "Đáp số:",
    "đáp án :",
    "**",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(7)
    made = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    return [p["content"] for p in sample_points(300)] + made


def test_clean_text_equals_the_reference(texts):
    mismatches = [t for t in texts if clean_text(t) != reference_clean(t)]
    assert mismatches == []


def test_question_key_of_a_cleaned_question_equals_normalise_question(texts):
    for text in texts:
        cleaned = clean_text(text)
        assert question_key(cleaned) == normalise_question(cleaned), repr(text)
    # The case that needs the second cleaning: one more unescape turns "&lt;b&gt;" into "<b>".
    cleaned = clean_text("&amp;lt;b&amp;gt;Tính")
    assert cleaned == "&lt;b&gt;Tính"
    assert question_key(cleaned) == normalise_question(cleaned) == "<b>tính"


def test_reference_answer_keeps_the_colon_rule_on_the_corpus(texts):
    """The label rule grew (``mathpal_common.notation``: ``là``, bare and alone forms, ``__``
    emphasis); on the sample corpus, which writes ``Đáp số: …``, it reads what the colon rule read.
    The new forms are tested in tests/mathpal_train/test_notation.py."""
    corpus = texts[:-20_000]
    assert corpus and [t for t in corpus if reference_answer(t) != reference_answer_of(t)] == []


def test_merge_overlap_equals_the_reference(texts):
    rng = random.Random(3)
    for text in texts[:5000]:
        cut, back = rng.randint(0, len(text)), rng.randint(0, 30)
        left, right = text[:cut], text[max(cut - back, 0) :]
        assert merge_overlap(left, right) == reference_merge(left, right), (left, right)


@pytest.mark.parametrize("topic", [None, "hình học", 7, ["a", "b"]])
def test_problem_line_is_json_dumps_byte_for_byte(texts, topic):
    system = 'Bạn là "MathPal"\\ gia sư\n\u2028'
    for n, text in enumerate(texts[::50]):
        problem = Problem(eid(n), "grade_5", text or "q", text[::-1] or "s", text[:9] or "a", topic)
        expected = row_line(to_example(problem, system, f"{n:016x}"))
        assert problem_line(problem, f"{n:016x}", system_message_json(system)) == expected
        json.loads(expected)


# --------------------------------------------------------------------------- building at once vs at the end


def test_a_point_built_early_is_rebuilt_when_more_of_its_entry_arrives(make_point, make_content):
    content = make_content("Tính 12 + 30 rồi nhân với 2.", "12 + 30 = 42\n42 × 2 = 84\nĐáp số: 84")
    whole = make_point(eid(1), content=content[:30])  # no chunk_id: built as soon as read
    rest = make_point(eid(1), content=content[22:], chunk_id=f"{eid(1)}_1")
    state = new_export(None, None)
    add_points(state, [point_fields("p0", whole)])
    assert eid(1) in state.built
    add_points(state, [point_fields("p1", rest)])
    assert eid(1) not in state.built
    finish_export(state, 0.0, 0.0)
    (row,) = [json.loads(state.built[e].line) for _, e in state.rows["train"]]
    assert row["messages"][1]["content"] == "Tính 12 + 30 rồi nhân với 2." and row["answer"] == "84"


def test_the_same_whole_point_stored_twice_counts_once(make_point):
    point = make_point(eid(2), "Tính 5 × 5.", "Đáp số: 25")
    state = new_export(None, None)
    add_points(state, [point_fields("a", point), point_fields("b", dict(point))])
    summary = finish_export(state, 0.0, 0.0)
    assert summary.counts["kept"] == 1 and summary.counts["entries"] == 1 and summary.counts["rejected"] == {}


def test_grade_and_topic_come_from_the_first_chunk_whatever_the_order(make_point, make_content):
    content = make_content("Một bể nước chứa 1200 lít, đã dùng 3/4 số nước.", "1200 × 3/4 = 900\nĐáp số: 900 lít")
    chunks = [
        make_point(eid(3), content=content[:40], chunk_id=f"{eid(3)}_0", grade_id="grade_6", topic="phân số"),
        make_point(eid(3), content=content[30:], chunk_id=f"{eid(3)}_1", grade_id="grade_5", topic="khác"),
    ]
    for order in (chunks, chunks[::-1]):
        state = new_export(None, None)
        add_points(state, [point_fields(n, p) for n, p in enumerate(order)])
        finish_export(state, 0.0, 0.0)
        (row,) = [json.loads(state.built[e].line) for _, e in state.rows["train"]]
        assert (row["grade_id"], row["topic"]) == ("grade_6", "phân số")
