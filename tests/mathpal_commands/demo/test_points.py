"""Tests for mathpal_commands.demo.points: the messy sample collection and its point ids/vectors."""

from __future__ import annotations

import random
import re
import unicodedata
import uuid
from collections import defaultdict

import pytest

from dataprep.payloads import clean_text, join_chunks, normalise_question, split_content
from dataprep.qdrant_source import open_client, recreate_collection, upsert_payloads
from dataprep.splits import SPLITS
from mathpal_commands.demo.corpus import generate_problems, to_content
from mathpal_commands.demo.embedding import EMBEDDING_DIM, hash_embedding
from mathpal_commands.demo.points import (
    CHUNK_OVERLAP,
    CHUNK_SIZE,
    chunk_text,
    entry_id_for,
    point_id,
    point_vector,
    sample_points,
)
from tests.dataprep.conftest import build_problem, build_splits, jsonl_bytes, scroll_payloads

N_PROBLEMS = 120  # > 100 so the third re-crawl (n=100, written as n=101: NFD) is included
HEX24 = re.compile(r"^[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def points():
    return sample_points(N_PROBLEMS, seed=5)


def by_entry(points):
    groups = defaultdict(list)
    for p in points:
        groups[p["entry_id"]].append(p)
    return groups


def unique_text(n: int) -> str:
    """Text without long repeats, so the only overlap between windows is the chunker's."""
    return " ".join(f"câu {i} có {i * i + 7} quả" for i in range(1000))[:n]


# --------------------------------------------------------------------------- chunk_text


@pytest.mark.parametrize("length", [0, 1, 39, 40, 41, 259, 260, 261, 480, 481, 1000, 2345])
def test_chunk_text_round_trips_through_join_chunks(length):
    text = unique_text(length)
    assert len(text) == length
    pieces = chunk_text(text)
    assert all(len(p) <= CHUNK_SIZE for p in pieces)
    assert join_chunks(list(enumerate(pieces))) == text
    shuffled = list(enumerate(pieces))
    random.Random(length).shuffle(shuffled)
    assert join_chunks(shuffled) == text


def test_chunk_text_windows_repeat_the_overlap():
    text = unique_text(1000)
    pieces = chunk_text(text)
    assert len(pieces) == 5
    assert pieces[0] == text[:CHUNK_SIZE]
    for left, right in zip(pieces, pieces[1:]):
        assert left[-CHUNK_OVERLAP:] == right[:CHUNK_OVERLAP]
    assert all(len(p) > CHUNK_OVERLAP for p in pieces)


def test_chunk_text_short_text_is_one_chunk():
    assert chunk_text("Tính 2 + 3.") == ["Tính 2 + 3."]
    assert chunk_text("abcdefghij" * 10, size=30, overlap=10) == [
        ("abcdefghij" * 10)[s : s + 30] for s in (0, 20, 40, 60, 80)
    ]


# --------------------------------------------------------------------------- point_id / point_vector / entry ids


def test_point_id_is_a_stable_uuid_from_chunk_or_entry_id():
    entry = {"entry_id": entry_id_for("5:0"), "content": "x"}
    pid = point_id(entry)
    assert uuid.UUID(pid).version == 5
    assert pid == point_id(dict(entry))
    chunk0 = {**entry, "chunk_id": f"{entry['entry_id']}_0"}
    chunk1 = {**entry, "chunk_id": f"{entry['entry_id']}_1"}
    assert len({pid, point_id(chunk0), point_id(chunk1)}) == 3
    assert point_id({**chunk0, "content": "something else"}) == point_id(chunk0)


def test_point_ids_unique_across_the_sample(points):
    ids = [point_id(p) for p in points]
    assert len(ids) == len(set(ids))


def test_point_vector_embeds_the_points_own_content(points):
    for p in points[:20]:
        v = point_vector(p)
        assert len(v) == EMBEDDING_DIM
        assert v == hash_embedding(p["content"])


def test_entry_id_for_is_24_hex_and_stable():
    assert HEX24.match(entry_id_for("5:0"))
    assert entry_id_for("5:0") == entry_id_for("5:0") != entry_id_for("5:1")


# --------------------------------------------------------------------------- sample_points


def test_sample_points_deterministic_and_seeded(points):
    assert sample_points(N_PROBLEMS, seed=5) == points
    assert sample_points(N_PROBLEMS, seed=6) != points


def test_sample_points_have_the_pipeline_shape(points):
    for p in points:
        assert p["type"] == "exam"
        assert HEX24.match(p["entry_id"])
        assert p["grade_id"] in {"grade_5", "grade_6"}
        assert isinstance(p["content"], str) and p["content"]
        assert {"source", "url", "crawled_at"} <= set(p["metadata"])
        if "chunk_id" in p:
            assert re.fullmatch(re.escape(p["entry_id"]) + r"_\d+", p["chunk_id"])


def test_sample_points_entries_and_recrawls(points):
    groups = by_entry(points)
    recrawls = len(range(0, N_PROBLEMS, 50))
    assert len(groups) == N_PROBLEMS + recrawls
    assert len(by_entry(sample_points(N_PROBLEMS, seed=5, duplicates_every=0))) == N_PROBLEMS


def test_sample_points_are_messy(points):
    groups = by_entry(points)
    chunked = [g for g in groups.values() if len(g) > 1]
    assert chunked, "some problems must be split into chunks"
    for group in chunked:
        assert sorted(int(p["chunk_id"].rsplit("_", 1)[1]) for p in group) == list(range(len(group)))
    assert any(not unicodedata.is_normalized("NFC", p["content"]) for p in points), "some NFD content"
    assert any("&nbsp;" in p["content"] or "<br>" in p["content"] for p in points), "some HTML"


def test_chunked_entries_rebuild_the_unchunked_problem(points):
    problems = list(generate_problems(N_PROBLEMS, 5))
    groups = by_entry(points)
    checked = 0
    for n, problem in enumerate(problems):
        group = groups[entry_id_for(f"5:{n}")]
        if len(group) == 1:
            continue
        built = build_problem(group[0]["entry_id"], group)
        question, solution = split_content(to_content(problem))
        assert built.question == clean_text(question)
        assert built.solution == clean_text(solution)
        checked += 1
    assert checked >= 3


def test_every_sample_problem_exports_and_recrawls_are_deduplicated(points):
    result = build_splits(points, types={"exam"}, grades={"grade_5", "grade_6"}, val_fraction=0.1, test_fraction=0.1)
    counts = result.counts
    distinct = {normalise_question(split_content(to_content(p))[0]) for p in generate_problems(N_PROBLEMS, 5)}
    assert counts["rejected"] == {}
    assert counts["filtered_out"] == 0
    assert counts["kept"] == len(distinct)
    assert counts["duplicates"] == counts["entries"] - counts["kept"]
    assert counts["duplicates"] >= len(range(0, N_PROBLEMS, 50))
    rows = [r for name in SPLITS for r in result.splits[name]]
    assert all(r["answer"] for r in rows)
    assert all(unicodedata.is_normalized("NFC", r["messages"][1]["content"]) for r in rows)
    assert not any("&nbsp;" in r["messages"][1]["content"] or "<br>" in r["messages"][2]["content"] for r in rows)


def test_sample_through_local_qdrant_exports_identically(tmp_path, points, monkeypatch):
    client = open_client(path=tmp_path / "qdrant")
    try:
        recreate_collection(client, "vector_exams", EMBEDDING_DIM)
        upsert_payloads(
            client, "vector_exams", [point_id(p) for p in points], points, [point_vector(p) for p in points], batch=50
        )
        scrolled = list(scroll_payloads(client, "vector_exams", page=37))
    finally:
        client.close()
    assert len(scrolled) == len(points)
    from_db = build_splits(scrolled)
    direct = build_splits(points)
    assert from_db.counts == direct.counts
    assert {n: jsonl_bytes(from_db.splits[n]) for n in SPLITS} == {n: jsonl_bytes(direct.splits[n]) for n in SPLITS}
