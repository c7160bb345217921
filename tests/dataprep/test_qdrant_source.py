"""Tests for dataprep.qdrant_source against a real embedded (local-mode) Qdrant, and the embedding."""

from __future__ import annotations

import json
import math
import uuid

import pytest

from dataprep.qdrant_source import (
    DEFAULT_QDRANT_PATH,
    describe_source,
    open_client,
    recreate_collection,
    upsert_payloads,
)
from dataprep.splits import SPLITS
from mathpal_commands.demo.embedding import EMBEDDING_DIM, hash_embedding
from tests.dataprep.conftest import build_splits, eid, jsonl_bytes, scroll_payloads

COLLECTION = "vector_exams_test"


def ids_for(payloads):
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, p.get("chunk_id") or p["entry_id"])) for p in payloads]


def canon(payloads):
    return sorted(json.dumps(p, ensure_ascii=False, sort_keys=True) for p in payloads)


@pytest.fixture
def client(tmp_path):
    c = open_client(path=tmp_path / "qdrant")
    yield c
    c.close()


def seed(client, payloads, batch=256):
    recreate_collection(client, COLLECTION, EMBEDDING_DIM)
    upsert_payloads(
        client, COLLECTION, ids_for(payloads), payloads, [hash_embedding(p["content"]) for p in payloads], batch=batch
    )


@pytest.fixture
def seven_points(make_point):
    return [
        make_point(
            eid(i),
            f"Tính {i} × {i + 3}.",
            f"{i} × {i + 3} = {i * (i + 3)}\nĐáp số: {i * (i + 3)}",
            grade_id="grade_5" if i % 2 else "grade_6",
            topic="nhân" if i % 3 else None,
        )
        for i in range(1, 8)
    ]


# --------------------------------------------------------------------------- open_client / describe_source


def test_open_client_creates_the_local_folder(tmp_path):
    folder = tmp_path / "nested" / "qdrant"
    c = open_client(path=folder)
    try:
        assert folder.is_dir()
        assert c.get_collections().collections == []
    finally:
        c.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://admin:s3cr3t-pass@qdrant.example.com:6333/base?api_key=KEY-123#frag",
            "https://qdrant.example.com:6333/base",
        ),
        ("http://user@localhost:6333", "http://localhost:6333"),
        ("https://qdrant.example.com/?api-key=KEY-123", "https://qdrant.example.com/"),
        ("https://:KEY-123@cluster.cloud.qdrant.io", "https://cluster.cloud.qdrant.io"),
    ],
)
def test_describe_source_never_leaks_credentials(url, expected):
    described = describe_source(None, url)
    assert described == expected
    for secret in ("s3cr3t", "admin", "KEY-123", "user@", "@"):
        assert secret not in described


def test_describe_source_local_path():
    assert describe_source("/data/qdrant", None) == "/data/qdrant"
    assert describe_source(None, None) == str(DEFAULT_QDRANT_PATH)


# --------------------------------------------------------------------------- seeding and scrolling


def test_scroll_returns_every_seeded_payload(client, seven_points):
    seed(client, seven_points)
    got = list(scroll_payloads(client, COLLECTION))
    assert len(got) == 7
    assert canon(got) == canon(seven_points)


def test_scroll_over_several_pages(client, seven_points, monkeypatch):
    seed(client, seven_points)
    calls = []
    real_scroll = client.scroll

    def counting_scroll(**kwargs):
        calls.append(kwargs["limit"])
        return real_scroll(**kwargs)

    monkeypatch.setattr(client, "scroll", counting_scroll)
    got = list(scroll_payloads(client, COLLECTION, page=2))
    assert calls == [2, 2, 2, 2]  # 7 points in pages of 2
    assert len(got) == 7
    assert canon(got) == canon(seven_points)


def test_scroll_page_boundary_exact_multiple(client, seven_points, monkeypatch):
    seed(client, seven_points[:6])
    got = list(scroll_payloads(client, COLLECTION, page=2))
    assert canon(got) == canon(seven_points[:6])


def test_scroll_empty_collection(client):
    recreate_collection(client, COLLECTION, EMBEDDING_DIM)
    assert list(scroll_payloads(client, COLLECTION)) == []


def test_upsert_in_small_batches_writes_all(client, seven_points):
    seed(client, seven_points, batch=3)
    assert client.count(COLLECTION, exact=True).count == 7
    assert canon(scroll_payloads(client, COLLECTION)) == canon(seven_points)


def test_upsert_same_ids_twice_does_not_duplicate(client, seven_points):
    seed(client, seven_points)
    upsert_payloads(
        client, COLLECTION, ids_for(seven_points), seven_points, [hash_embedding(p["content"]) for p in seven_points]
    )
    assert client.count(COLLECTION, exact=True).count == 7


def test_recreate_collection_drops_old_points_and_sets_vectors(client, seven_points):
    seed(client, seven_points)
    recreate_collection(client, COLLECTION, 16)
    assert client.count(COLLECTION, exact=True).count == 0
    params = client.get_collection(COLLECTION).config.params.vectors
    assert params.size == 16
    assert str(params.distance).lower().endswith("cosine")


def test_vectors_are_stored(client, seven_points):
    seed(client, seven_points)
    (point,) = client.retrieve(COLLECTION, ids=ids_for(seven_points[:1]), with_vectors=True)
    assert point.vector == pytest.approx(hash_embedding(seven_points[0]["content"]), abs=1e-6)


def test_collection_persists_after_reopening(tmp_path, seven_points):
    folder = tmp_path / "qdrant"
    c = open_client(path=folder)
    try:
        seed(c, seven_points)
    finally:
        c.close()
    c = open_client(path=folder)
    try:
        assert canon(scroll_payloads(c, COLLECTION)) == canon(seven_points)
    finally:
        c.close()


def test_export_from_qdrant_equals_export_from_payloads(client, corpus, monkeypatch):
    seed(client, corpus["points"])
    from_db = build_splits(scroll_payloads(client, COLLECTION, page=2), types={"exam"}, grades={"grade_5", "grade_6"})
    direct = build_splits(corpus["points"], types={"exam"}, grades={"grade_5", "grade_6"})
    assert from_db.counts == direct.counts
    assert from_db.counts["points_read"] == len(corpus["points"])
    assert {n: jsonl_bytes(from_db.splits[n]) for n in SPLITS} == {n: jsonl_bytes(direct.splits[n]) for n in SPLITS}


# --------------------------------------------------------------------------- hash_embedding


def test_hash_embedding_shape_norm_and_determinism():
    v = hash_embedding("Tính diện tích hình vuông cạnh 4 cm.")
    assert len(v) == EMBEDDING_DIM
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9)
    assert v == hash_embedding("Tính diện tích hình vuông cạnh 4 cm.")
    assert len(hash_embedding("abc", dim=16)) == 16


def test_hash_embedding_ignores_case_and_spacing_and_ranks_similar_texts_closer():
    a = hash_embedding("Tính diện tích hình vuông cạnh 4 cm.")
    assert a == hash_embedding("TÍNH  diện tích\nhình vuông cạnh 4 cm.")
    near = hash_embedding("Tính diện tích hình vuông cạnh 5 cm.")
    far = hash_embedding("Một đoàn tàu chạy 60 km mỗi giờ trong 3 giờ.")
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731
    assert dot(a, near) > dot(a, far)
    assert dot(a, near) > 0.8


def test_hash_embedding_of_empty_text_is_finite():
    v = hash_embedding("")
    assert len(v) == EMBEDDING_DIM and all(math.isfinite(x) for x in v)
