"""Tiny, hand-written MathPal feature-pipeline payloads shared by the dataprep tests."""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
        pieces.append(text[start : start + size])
        if start + size >= len(text):
            return pieces
        start += step


@pytest.fixture
def corpus() -> dict[str, Any]:
    """A handful of entries exercising every rule, plus what each one should become (``build_corpus``)."""
    return build_corpus()


def build_corpus() -> dict[str, Any]:
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
        _point(ids["chunked"], content=piece, chunk_id=f"{ids['chunked']}_{i}", topic="cộng trừ")
        for i, piece in enumerate(chunks)
    ]
    # Arrive in a scrambled order: reversed, then the two halves swapped.
    scrambled = chunk_points[::-1]
    scrambled = scrambled[5:] + scrambled[:5]
    points = [
        _point(
            ids["dup_html"],
            "<p>TÍNH   diện tích&nbsp;hình chữ nhật có chiều dài <b>12 cm</b>, chiều rộng 5 cm.</p>",
            plain_s,
        ),
        *scrambled[:6],
        _point(ids["plain"], plain_q, plain_s, topic="hình học"),
        _point(ids["grade6"], "Tìm x, biết: x + 15 = 42.", "x = 42 - 15\nx = 27\nĐáp số: x = 27.", grade_id="grade_6"),
        _point(ids["dup_nfd"], unicodedata.normalize("NFD", plain_q), plain_s),
        *scrambled[6:],
        _point(ids["theory"], "Phân số là gì?", "Phân số gồm tử số và mẫu số.\nĐáp án: định nghĩa", type_="theory"),
        _point(ids["grade_4"], "Tính 7 × 8.", "7 × 8 = 56\nĐáp số: 56", grade_id="grade_4"),
        _point(ids["no_answer"], "Tính 9 + 10.", "9 + 10 = 19"),
        _point(ids["no_solution"], "Tính 11 + 12.", ""),
    ]
    return {
        "points": points,
        "ids": ids,
        "chunks": chunks,
        "plain_question": plain_q,
        "plain_solution": plain_s,
        "long_content": content,
    }


# --------------------------------------------------------------------------- real Qdrant stores


def point_uuid(payload: dict[str, Any], n: int) -> str:
    """A stable point id (Qdrant ids are ints or UUIDs); ``n`` keeps same-chunk copies apart."""
    import uuid

    key = payload.get("chunk_id") or payload.get("entry_id") or "orphan"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"test:{key}:{n}"))


def seed_store(folder, payloads: list[dict[str, Any]], collection: str = "vector_exams", vectors: bool = True) -> None:
    """Write ``payloads`` into a real embedded Qdrant at ``folder`` (closed afterwards).

    With ``vectors`` every point gets the sample collection's 128-d hashed-trigram vector
    of its own content (cosine), as the feature pipeline embeds each chunk; without, the
    collection is payload-only.
    """
    from qdrant_client import QdrantClient, models

    from mathpal_commands.demo.embedding import EMBEDDING_DIM, hash_embedding

    client = QdrantClient(path=str(folder))
    try:
        if client.collection_exists(collection):
            client.delete_collection(collection)
        config = models.VectorParams(size=EMBEDDING_DIM, distance=models.Distance.COSINE) if vectors else {}
        client.create_collection(collection, vectors_config=config)
        points = [
            models.PointStruct(
                id=point_uuid(p, n),
                vector=hash_embedding(p["content"] if isinstance(p.get("content"), str) else "") if vectors else {},
                payload=p,
            )
            for n, p in enumerate(payloads)
        ]
        for start in range(0, len(points), 512):
            client.upsert(collection, points=points[start : start + 512])
    finally:
        client.close()


# --------------------------------------------------------------------------- a crawl-like collection

CRAWL_FILTERS = {"types": ["exam"], "grades": ["grade_5", "grade_6"]}
CRAWL_FRACTIONS = {"val_fraction": 0.3, "test_fraction": 0.3}


def _trees(a: int, b: int) -> tuple[str, str]:
    question = (
        f"Một trường học có {a} học sinh khối 5 và {b} học sinh khối 6 tham gia trồng cây. "
        "Mỗi học sinh khối 5 trồng được 3 cây, mỗi học sinh khối 6 trồng được 4 cây. "
        "Hỏi cả trường trồng được bao nhiêu cây?"
    )
    solution = (
        f"Khối 5 trồng được: {a} × 3 = {3 * a} (cây)\nKhối 6 trồng được: {b} × 4 = {4 * b} (cây)\n"
        f"Cả trường trồng được: {3 * a} + {4 * b} = {3 * a + 4 * b} (cây)\nĐáp số: {3 * a + 4 * b} cây."
    )
    return question, solution


def near_duplicate_pair() -> tuple[tuple[str, str], tuple[str, str], float]:
    """Two problems one number apart: the first hashes into train, the second into validation/test
    (at CRAWL_FRACTIONS), and their stored vectors have cosine >= 0.975; plus that cosine."""
    from dataprep.payloads import normalise_question
    from mathpal_commands.demo.embedding import hash_embedding

    def split(q: str) -> str:
        return assign_split(normalise_question(q), **CRAWL_FRACTIONS)

    for a in range(120, 400):
        first = _trees(a, 135)
        if split(first[0]) != "train":
            continue
        for b in range(136, 160):
            second = _trees(a, b)
            if split(second[0]) == "train":
                continue
            u, v = (hash_embedding(_content(*p)) for p in (first, second))
            cosine = sum(x * y for x, y in zip(u, v))
            if cosine >= 0.975:
                return first, second, cosine
    raise AssertionError("no near-duplicate pair found: change _trees")


def crawl_payloads(corpus: dict[str, Any]) -> dict[str, Any]:
    """The ``corpus`` entries plus 40 sample-corpus problems, a near-duplicate pair and one entry
    per reject reason; with the entry ids and what the export of it must count."""
    from mathpal_commands.demo.corpus import generate_problems

    points = list(corpus["points"])
    fillers = [
        _point(eid(2000 + i), problem.question, problem.solution, grade_id=problem.grade_id, topic=problem.topic)
        for i, problem in enumerate(generate_problems(40, seed=11))
    ]
    points += fillers
    (q_train, s_train), (q_near, s_near), cosine = near_duplicate_pair()
    ids = {**corpus["ids"], "near_train": eid(3001), "near_copy": eid(3002)}
    points += [_point(ids["near_train"], q_train, s_train), _point(ids["near_copy"], q_near, s_near)]
    good = _content("Tính 6 + 7.", "6 + 7 = 13\nĐáp số: 13")
    rejects = {
        "content_not_string": [_point(eid(4001)) | {"content": 42}],
        "empty_content": [_point(eid(4002), content="   \n ")],
        "no_question": [_point(eid(4003), content="#### SOLUTION:\n2 + 2 = 4\nĐáp số: 4")],
        "bad_chunk_id": [_point(eid(4004), content=good, chunk_id="chunk-without-number")],
        "missing_chunk": [
            _point(eid(4005), content=good[:20], chunk_id=f"{eid(4005)}_0"),
            _point(eid(4005), content=good[30:], chunk_id=f"{eid(4005)}_2"),
        ],
        "conflicting_chunks": [
            _point(eid(4006), content=good, chunk_id=f"{eid(4006)}_0"),
            _point(eid(4006), content=good.replace("13", "14"), chunk_id=f"{eid(4006)}_0"),
        ],
        "partly_filtered": [
            _point(eid(4007), content=good[:25], chunk_id=f"{eid(4007)}_0"),
            _point(eid(4007), content=good[15:], chunk_id=f"{eid(4007)}_1", grade_id="grade_4"),
        ],
        "no_entry_id": [{k: v for k, v in _point("x", "Tính 1 + 1.", "Đáp số: 2").items() if k != "entry_id"}],
    }
    for reject_points in rejects.values():
        points += reject_points
    return {
        "points": points,
        "ids": ids,
        "near_cosine": cosine,
        "near_questions": (q_train, q_near),
        "counts": {
            "points_read": len(points),
            "entries": 7 + 40 + 2 + 8,
            "kept": 3 + 40 + 2,
            "filtered_out": 3,
            "duplicates": 2,
            "rejected": {
                "bad_chunk_id": 1,
                "conflicting_chunks": 1,
                "content_not_string": 1,
                "empty_content": 1,
                "missing_chunk": 1,
                "no_entry_id": 1,
                "no_final_answer": 1,
                "no_question": 1,
                "no_solution": 1,
                "partly_filtered": 1,
            },
        },
    }


# --------------------------------------------------------------------------- the export's rules, in memory
# Test helpers over the export's real functions: the command itself streams from Qdrant
# (dataprep.pipeline), these run the same rules on payload dicts held in memory.


def assign_split(key: str, val_fraction: float, test_fraction: float, salt: str | None = None) -> str:
    """The split of the problem whose normalised question is ``key``, by the export's own rules."""
    from dataprep.splits import SPLIT_SALT, check_fractions, split_bucket, split_for_bucket

    check_fractions(val_fraction, test_fraction)
    return split_for_bucket(split_bucket(key, salt or SPLIT_SALT), val_fraction, test_fraction)


def build_problem(entry_id: str, points: list[dict[str, Any]]):
    """Assemble one entry's payloads into a ``Problem`` (or a ``Rejected``), as an export does."""
    from dataprep.payloads import Piece, assemble_problem

    pieces = []
    for payload in points:
        fields = point_fields_of(payload)
        pieces.append(Piece(fields.chunk_id, fields.content, payload.get("grade_id", ""), fields.topic))
    return assemble_problem(entry_id, pieces)


@dataclass
class ExportResult:
    """What ``build_splits`` produced: the rows of each split, the counts, the rejects."""

    splits: dict[str, list[dict[str, Any]]]
    counts: dict[str, Any]
    rejected_examples: list[Any] = field(default_factory=list)


def build_splits(
    payloads: Iterable[dict[str, Any]],
    *,
    types: set[str] | None = None,
    grades: set[str] | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    system_prompt: str | None = None,
) -> ExportResult:
    """Clean, deduplicate and split payloads held in memory (no I/O, no near-duplicate check)."""
    from dataprep.export import DEFAULT_SYSTEM_PROMPT, add_points, finish_export, new_export, split_lines
    from dataprep.splits import SPLITS, check_fractions

    check_fractions(val_fraction, test_fraction)
    state = new_export(types, grades, system_prompt or DEFAULT_SYSTEM_PROMPT)
    add_points(state, (point_fields_of(payload) for payload in payloads))
    finish_export(state, val_fraction, test_fraction)
    splits = {name: [json.loads(line) for line in split_lines(state, name)] for name in SPLITS}
    return ExportResult(splits=splits, counts=state.counts, rejected_examples=state.rejected)


def point_fields_of(payload: dict[str, Any]):
    """The fields an export reads of a payload (a point without an id)."""
    from dataprep.export import point_fields

    return point_fields(None, payload)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Rows as the export writes them: UTF-8 JSON lines with sorted keys."""
    from dataprep.export import row_line

    return b"".join(row_line(row) for row in rows)


def scroll_payloads(client, collection: str, page: int = 256) -> Iterator[dict[str, Any]]:
    """Every point's payload, through the export's own scroll in pages of ``page`` points."""
    from dataprep.qdrant_source import scroll_records

    for records in scroll_records(client, collection, itertools.repeat(page)):
        for record in records:
            yield dict(record.payload or {})
