"""Turn the generated sample corpus into points shaped like the MathPal feature pipeline's.

Real crawls are messy, and ``prepare-data`` must cope with that, so the sample
collection is too, deterministically: some problems are split into overlapping
chunks, some carry HTML entities and tags, some are stored in NFD, and a few
problems were crawled twice under different ``entry_id`` s.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from typing import Any

from mathpal_commands.demo.corpus import Problem, generate_problems, to_content
from mathpal_commands.demo.embedding import hash_embedding
from mathpal_common.notation import ANSWER_LABEL

SOURCE = "mathpal-sample-corpus"
CRAWLED_AT = "2025-06-01T00:00:00Z"
CHUNK_SIZE = 260
CHUNK_OVERLAP = 40


def entry_id_for(key: str) -> str:
    """A 24-hex id like the pipeline's (Mongo ObjectId width), stable for the same key."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:24]


def chunk_text(text: str, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Fixed-width windows that repeat ``overlap`` characters, as the pipeline's chunker does."""
    step = size - overlap
    return [text[start : start + size] for start in range(0, max(len(text) - overlap, 1), step)]


def _messy(content: str, n: int) -> str:
    """Make every 7th entry NFD and every 11th carry HTML, the way crawled pages do."""
    if n % 7 == 3:
        content = unicodedata.normalize("NFD", content)
    if n % 11 == 5:
        content = content.replace(" là:", "&nbsp;là:", 1).replace("\n", "<br>\n", 1)
        content = content.replace(f"{ANSWER_LABEL}:", f"<b>{ANSWER_LABEL}:</b>", 1)
    return content


def problem_points(problem: Problem, n: int, entry_id: str) -> list[dict[str, Any]]:
    """The payload(s) of one problem: one point, or several overlapping chunks (every 9th)."""
    content = _messy(to_content(problem), n)
    base = {
        "type": "exam",
        "entry_id": entry_id,
        "grade_id": problem.grade_id,
        "metadata": {
            "source": SOURCE,
            "url": f"https://mathpal.example/exams/{entry_id}",
            "crawled_at": CRAWLED_AT,
            "topic": problem.topic,
        },
    }
    if n % 9 != 4 or len(content) <= CHUNK_SIZE:
        return [{**base, "content": content}]
    return [{**base, "content": piece, "chunk_id": f"{entry_id}_{i}"} for i, piece in enumerate(chunk_text(content))]


def sample_points(n_problems: int = 1200, seed: int = 5, duplicates_every: int = 50) -> list[dict[str, Any]]:
    """All payloads of the sample collection (with re-crawled duplicates) in a fixed order."""
    points: list[dict[str, Any]] = []
    for n, problem in enumerate(generate_problems(n_problems, seed)):
        points.extend(problem_points(problem, n, entry_id_for(f"{seed}:{n}")))
        if duplicates_every and n % duplicates_every == 0:
            points.extend(problem_points(problem, n + 1, entry_id_for(f"{seed}:{n}:recrawl")))
    return points


def point_id(payload: dict[str, Any]) -> str:
    """A stable UUID for a point (Qdrant ids are ints or UUIDs), from its chunk or entry id."""
    key = payload.get("chunk_id") or payload["entry_id"]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mathpal:{key}"))


def point_vector(payload: dict[str, Any]) -> list[float]:
    """The point's embedding, computed from its own content as the pipeline embeds each chunk."""
    return hash_embedding(payload["content"])


def seed_collection(qdrant_path, qdrant_url: str | None, collection: str, problems: int = 1200, seed: int = 5) -> str:
    """(Re)create ``collection`` with the sample corpus's points and vectors; returns what was done, in one line.

    A Qdrant that cannot be opened raises ``dataprep.qdrant_source.SourceError`` (one line).
    """
    from dataprep.qdrant_source import describe_source, open_client, recreate_collection, upsert_payloads

    points = sample_points(problems, seed)
    client = open_client(qdrant_path, qdrant_url)
    try:
        vectors = [point_vector(p) for p in points]
        recreate_collection(client, collection, len(vectors[0]))
        upsert_payloads(client, collection, [point_id(p) for p in points], points, vectors)
    finally:
        client.close()
    entries = len({p["entry_id"] for p in points})
    where = describe_source(qdrant_path, qdrant_url)
    return f"Seeded {len(points)} points ({entries} entries) into '{collection}' at {where}"
