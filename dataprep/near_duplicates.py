"""Find validation/test problems that a training problem nearly repeats, by searching Qdrant.

Exact duplicates (equal normalised questions) already share a split; this catches
what normalisation cannot: the same problem re-worded a little, or crawled with a
different number in its solution.  Such a problem in validation/test would measure
memory, not skill, so it moves to train (never the other way: train stays train).

What "a problem's vector" is: Qdrant stores one vector per point, and a chunked
problem has one point per chunk.  A problem is represented by the vector of its
first chunk (or of its only point): that chunk starts with the question, where
near-copies show, and the feature pipeline embedded it with the same model as every
other point, so no embedding model is needed here.  Each validation/test problem's
vector is fetched from Qdrant and searched with Qdrant itself (``query_batch_points``):
on a server that is its HNSW index (approximate: a rare miss leaves a problem where the
hash put it; an unchanged collection gives the same answer again); in local mode an
exact scan of every stored vector, whose cost grows with the collection (75 ms a query
at 100k points, see docs/performance.md).  A hit counts only if
it is the first point of a training problem (or of a duplicate of one) with cosine
>= the threshold; hits on the problem's own points, on other validation/test problems,
on filtered-out or rejected entries, and on later chunks are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from dataprep.export import Candidate

# Queries per request (one HTTP call on a server).
QUERY_BATCH = 64
# Points fetched per retrieve call.
RETRIEVE_BATCH = 512
# Hits asked for per query; a query whose hits are all non-training is asked again with
# FIRST_LIMIT * 8, ... up to MAX_LIMIT (many near-identical points of its own split).
FIRST_LIMIT = 10
MAX_LIMIT = 5000
# Scores come back as float32: a hair of slack below the threshold, compared exactly after.
_SLACK = 1e-6


def _vector_of(record: Any, using: str | None) -> list[float] | None:
    vector = record.vector
    if isinstance(vector, dict):
        vector = vector.get(using) if using else vector.get("")
    return vector if isinstance(vector, list) and vector else None


def fetch_vectors(
    client: QdrantClient, collection: str, using: str | None, point_ids: Sequence[Any]
) -> dict[Any, list[float]]:
    """The stored vectors of ``point_ids`` (points without that vector are left out)."""
    found: dict[Any, list[float]] = {}
    for start in range(0, len(point_ids), RETRIEVE_BATCH):
        records = client.retrieve(
            collection_name=collection,
            ids=list(point_ids[start : start + RETRIEVE_BATCH]),
            with_payload=False,
            with_vectors=[using] if using else True,
        )
        for record in records:
            vector = _vector_of(record, using)
            if vector is not None:
                found[record.id] = vector
    return found


def _nearest_training(
    points: Sequence[models.ScoredPoint], train_points: dict[Any, str], threshold: float
) -> models.ScoredPoint | None:
    for point in points:  # best first
        if point.score < threshold:
            return None
        if point.id in train_points:
            return point
    return None


def find_near_duplicates(
    client: QdrantClient,
    collection: str,
    using: str | None,
    candidates: Sequence[Candidate],
    train_points: dict[Any, str],
    threshold: float,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Validation/test problems whose nearest training problem has cosine >= ``threshold``.

    ``train_points`` maps the representative point of every training problem to its
    entry.  Returns the problems to move (sorted by row id) and how many were checked.
    """
    vectors = fetch_vectors(client, collection, using, [c.point_id for c in candidates])
    checkable = [c for c in candidates if c.point_id in vectors]
    moved: list[dict[str, Any]] = []

    def query(vector: list[float], limit: int) -> models.QueryRequest:
        return models.QueryRequest(
            query=vector,
            using=using,
            limit=limit,
            score_threshold=threshold - _SLACK,
            with_payload=False,
            with_vector=False,
        )

    for start in range(0, len(checkable), QUERY_BATCH):
        batch = checkable[start : start + QUERY_BATCH]
        responses = client.query_batch_points(
            collection, requests=[query(vectors[c.point_id], FIRST_LIMIT) for c in batch]
        )
        for candidate, response in zip(batch, responses):
            points, limit = response.points, FIRST_LIMIT
            hit = _nearest_training(points, train_points, threshold)
            while hit is None and len(points) >= limit and limit < MAX_LIMIT:
                limit = min(limit * 8, MAX_LIMIT)
                points = client.query_points(
                    collection,
                    query=vectors[candidate.point_id],
                    using=using,
                    limit=limit,
                    score_threshold=threshold - _SLACK,
                    with_payload=False,
                    with_vectors=False,
                ).points
                hit = _nearest_training(points, train_points, threshold)
            if hit is not None:
                moved.append(
                    {
                        "id": candidate.row_id,
                        "entry_id": candidate.entry_id,
                        "from": candidate.split,
                        "nearest_entry_id": train_points[hit.id],
                        "cosine": round(float(hit.score), 6),
                    }
                )
        if progress is not None:
            progress(len(batch))
    moved.sort(key=lambda m: m["id"])
    return moved, len(checkable)
