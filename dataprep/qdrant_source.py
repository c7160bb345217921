"""Read MathPal payloads from Qdrant, embedded (``path``) or server (``url``), with one code path.

qdrant-client's local mode stores the collection in a folder and speaks the same
API as a server, so the demo, the tests and a production crawl all go through
``open_client`` and ``scroll_payloads``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

DEFAULT_QDRANT_PATH = Path(".mathpal/qdrant")
DEFAULT_COLLECTION = "vector_exams"
SCROLL_PAGE = 256


def open_client(path: Path | str | None = None, url: str | None = None) -> QdrantClient:
    """A client for a server at ``url`` (key from ``QDRANT_API_KEY``) or a local folder ``path``."""
    if url:
        return QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY") or None, timeout=30)
    folder = Path(path or DEFAULT_QDRANT_PATH)
    folder.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(folder))


def describe_source(path: Path | str | None, url: str | None) -> str:
    """Where the data came from, for logs and the manifest: never includes credentials."""
    if url:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    return str(path or DEFAULT_QDRANT_PATH)


def scroll_payloads(client: QdrantClient, collection: str) -> Iterator[dict[str, Any]]:
    """Every point's payload, page by page (vectors are not fetched: they are not needed here)."""
    offset = None
    while True:
        points, offset = client.scroll(
            collection_name=collection,
            limit=SCROLL_PAGE,
            offset=offset,
            with_payload=True,
            with_vectors=False,
        )
        for point in points:
            yield dict(point.payload or {})
        if offset is None:
            return


def recreate_collection(client: QdrantClient, collection: str, vector_size: int) -> None:
    """Drop and create ``collection`` with cosine vectors, so seeding twice gives the same data."""
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(
        collection_name=collection,
        vectors_config=models.VectorParams(size=vector_size, distance=models.Distance.COSINE),
    )


def upsert_payloads(
    client: QdrantClient,
    collection: str,
    ids: list[str],
    payloads: list[dict[str, Any]],
    vectors: list[list[float]],
    batch: int = 256,
) -> None:
    """Write points in batches (one call per batch keeps the local store fast)."""
    for start in range(0, len(ids), batch):
        client.upsert(
            collection_name=collection,
            points=[
                models.PointStruct(id=pid, vector=vec, payload=payload)
                for pid, vec, payload in zip(
                    ids[start:start + batch], vectors[start:start + batch], payloads[start:start + batch]
                )
            ],
            wait=True,
        )
