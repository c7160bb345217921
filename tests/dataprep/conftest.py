"""Tiny, hand-written MathPal feature-pipeline payloads shared by the dataprep tests."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import pytest


def _content(question: str, solution: str) -> str:
    return f"### QUESTION:\n{question}\n\n#### SOLUTION:\n{solution}"


def _point(
    entry_id: str,
    question: str = "",
    solution: str = "",
    *,
    content: Any = None,
    grade_id: str = "grade_5",
    type_: str = "exam",
    topic: str | None = None,
    chunk_id: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "source": "unit-test",
        "url": f"https://mathpal.example/exams/{entry_id}",
        "crawled_at": "2025-06-01T00:00:00Z",
    }
    if topic is not None:
        metadata["topic"] = topic
    payload: dict[str, Any] = {
        "type": type_,
        "entry_id": entry_id,
        "grade_id": grade_id,
        "content": _content(question, solution) if content is None else content,
        "metadata": metadata,
    }
    if chunk_id is not None:
        payload["chunk_id"] = chunk_id
    return payload


@pytest.fixture
def make_content() -> Callable[[str, str], str]:
    """``make_content(question, solution)`` -> the pipeline's ``### QUESTION: … #### SOLUTION: …``."""
    return _content


@pytest.fixture
def make_point() -> Callable[..., dict[str, Any]]:
    """``make_point(entry_id, question, solution, **fields)`` -> one payload dict."""
    return _point


def eid(n: int) -> str:
    """A 24-hex entry id like the pipeline's (Mongo ObjectId width)."""
    return f"{n:024x}"


# A long problem whose text never repeats itself, so chunk overlaps are unambiguous.
LONG_QUESTION = (
    "Một cửa hàng nhập về 3 thùng táo: thùng thứ nhất nặng 27 kg, thùng thứ hai nặng hơn "
    "thùng thứ nhất 8 kg, thùng thứ ba nhẹ hơn tổng hai thùng đầu 19 kg. Hỏi cả ba thùng "
    "nặng bao nhiêu ki-lô-gam?"
)
LONG_SOLUTION = (
    "Thùng thứ hai nặng là: 27 + 8 = 35 (kg)\n"
    "Hai thùng đầu nặng là: 27 + 35 = 62 (kg)\n"
    "Thùng thứ ba nặng là: 62 - 19 = 43 (kg)\n"
    "Cả ba thùng nặng là: 62 + 43 = 105 (kg)\n"
    "Đáp số: 105 kg."
)


def split_with_overlap(text: str, size: int, overlap: int) -> list[str]:
    """Overlapping windows written independently of the code under test."""
    step = size - overlap
    pieces = []
    start = 0
    while True:
        pieces.append(text[start:start + size])
        if start + size >= len(text):
            return pieces
        start += step


@pytest.fixture
def corpus(make_point) -> dict[str, Any]:
    """A handful of entries exercising every rule, plus what each one should become.

    - ``chunked``: one problem stored as 12 overlapping chunks (so chunk 10/11 sort after 9).
    - ``dup_*``: the same question as ``plain`` written in NFD, upper case, with HTML and
      extra spaces (entry ids sort after ``plain`` so ``plain`` is the one kept).
    - ``theory`` / ``grade_4``: removed by the type / grade filters.
    - ``no_answer``, ``no_solution``: rejects.
    """
    plain_q = "Tính diện tích hình chữ nhật có chiều dài 12 cm, chiều rộng 5 cm."
    plain_s = "Diện tích hình chữ nhật là:\n12 × 5 = 60 (cm²)\nĐáp số: 60 cm²."
    content = _content(LONG_QUESTION, LONG_SOLUTION)
    chunks = split_with_overlap(content, 40, 12)
    assert len(chunks) >= 12
    ids = {
        "plain": eid(1),
        "chunked": eid(2),
        "grade6": eid(3),
        "dup_nfd": eid(4),
        "dup_html": eid(5),
        "theory": eid(6),
        "grade_4": eid(7),
        "no_answer": eid(8),
        "no_solution": eid(9),
    }
    chunk_points = [
        make_point(ids["chunked"], content=piece, chunk_id=f"{ids['chunked']}_{i}", topic="cộng trừ")
        for i, piece in enumerate(chunks)
    ]
    # Arrive in a scrambled order: reversed, then the two halves swapped.
    scrambled = chunk_points[::-1]
    scrambled = scrambled[5:] + scrambled[:5]
    points = [
        make_point(ids["dup_html"], "<p>TÍNH   diện tích&nbsp;hình chữ nhật có chiều dài <b>12 cm</b>, "
                   "chiều rộng 5 cm.</p>", plain_s),
        *scrambled[:6],
        make_point(ids["plain"], plain_q, plain_s, topic="hình học"),
        make_point(ids["grade6"], "Tìm x, biết: x + 15 = 42.", "x = 42 - 15\nx = 27\nĐáp số: x = 27.",
                   grade_id="grade_6"),
        make_point(ids["dup_nfd"], unicodedata.normalize("NFD", plain_q), plain_s),
        *scrambled[6:],
        make_point(ids["theory"], "Phân số là gì?", "Phân số gồm tử số và mẫu số.\nĐáp án: định nghĩa",
                   type_="theory"),
        make_point(ids["grade_4"], "Tính 7 × 8.", "7 × 8 = 56\nĐáp số: 56", grade_id="grade_4"),
        make_point(ids["no_answer"], "Tính 9 + 10.", "9 + 10 = 19"),
        make_point(ids["no_solution"], "Tính 11 + 12.", ""),
    ]
    return {
        "points": points,
        "ids": ids,
        "chunks": chunks,
        "plain_question": plain_q,
        "plain_solution": plain_s,
        "long_content": content,
    }
