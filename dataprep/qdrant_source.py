"""Read MathPal payloads from Qdrant, embedded (``path``) or server (``url``), with one code path.

qdrant-client's local mode stores the collection in a folder and speaks the same
API as a server, so the demo, the tests and a production crawl all go through
``open_source`` / ``open_client`` and the same scroll and search calls.  What
differs is only what each mode is slow at (see ``page_sizes``) and how it fails:
errors a user can fix (no server, no store, store in use, no collection) become a
``SourceError`` with a one-line message that never includes the API key.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # qdrant_client takes 1.5 s to import: only the functions that talk to Qdrant do
    from qdrant_client import QdrantClient

DEFAULT_QDRANT_PATH = Path(".mathpal/qdrant")
DEFAULT_COLLECTION = "vector_exams"
# Qdrant's default REST port, which QdrantClient also assumes when a URL has none.
DEFAULT_SERVER_PORT = 6333
# A server that does not answer the probe within this many seconds counts as unreachable,
# instead of waiting for the client's own (longer) timeout on every call.
PROBE_TIMEOUT_S = 4.0
CLIENT_TIMEOUT_S = 60
# The probe reads at most this much of the reply (a collection list is small).
PROBE_MAX_BYTES = 1 << 20
# The message qdrant-client's local mode raises when another process holds the store's lock.
_LOCKED_MARK = "already accessed by another instance"
# The file a local store keeps its collections' configuration in (qdrant_client.local.qdrant_local).
_META_FILE = "meta.json"

# Scroll pages.  Local mode sorts every point id on each scroll call (0.15-0.25 s per call
# at 100k points, measured in benchmarks/prepare_data.py), so it wants few, large pages;
# the first page is small so that the export's worker starts building problems early.
# A server costs per point, not per call: moderate pages bound the size of one response.
LOCAL_FIRST_PAGE = 4096
LOCAL_PAGE = 32768
SERVER_PAGE = 2048


class SourceError(ValueError):
    """A problem with the Qdrant source that the user can fix; the message is one line."""


def server_url(url: str) -> str:
    """``url`` with a scheme, read the way QdrantClient reads it (``localhost:6333`` is http)."""
    return url if "://" in url else f"http://{url}"


def open_client(path: Path | str | None = None, url: str | None = None) -> QdrantClient:
    """A client for a server at ``url`` (key from ``QDRANT_API_KEY``) or a local folder ``path``.

    The local folder is created if missing (for seeding); ``open_source`` is the reading
    side, which refuses a missing store instead.
    """
    from qdrant_client import QdrantClient

    if url:
        probe_server(url)
        return QdrantClient(
            url=server_url(url),
            api_key=os.environ.get("QDRANT_API_KEY") or None,
            timeout=CLIENT_TIMEOUT_S,
            check_compatibility=False,
        )
    folder = Path(path or DEFAULT_QDRANT_PATH)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(folder))
    except RuntimeError as err:
        if _LOCKED_MARK in str(err):
            raise SourceError(
                f"Qdrant store {folder} is open in another process (a local store allows one process "
                "at a time): stop that process, or serve the collection with a Qdrant server and pass --qdrant-url"
            ) from None
        raise


def open_source(path: Path | str | None = None, url: str | None = None) -> QdrantClient:
    """Open an existing store (local) or a reachable server for reading; ``SourceError`` otherwise."""
    if not url:
        folder = Path(path or DEFAULT_QDRANT_PATH)
        if not folder.is_dir():
            raise SourceError(
                f"Qdrant store {folder} does not exist: run `mathpal seed-qdrant` or pass --qdrant-path/--qdrant-url"
            )
        if not (folder / _META_FILE).is_file():  # opening would write a lock file into someone's folder
            raise SourceError(
                f"{folder} holds no Qdrant collections (no {_META_FILE}): "
                "check --qdrant-path or run `mathpal seed-qdrant`"
            )
    return open_client(path, url)


def server_failure(err: BaseException, where: str) -> SourceError | None:
    """A one-line ``SourceError`` for a failed Qdrant request (HTTP status or connection error), else None."""
    from qdrant_client.http.exceptions import ApiException

    try:
        import grpc

        grpc_error: tuple[type, ...] = (grpc.RpcError,)
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        grpc_error = ()
    import httpx

    if isinstance(err, (ApiException, httpx.HTTPError, *grpc_error)):
        status = getattr(err, "status_code", None)
        if status in (401, 403):
            return SourceError(f"Qdrant server {where} refused the API key (HTTP {status}): set QDRANT_API_KEY")
        return SourceError(f"Qdrant at {where} failed: {_short(err)}")
    return None


def probe_server(url: str, timeout: float | None = None) -> None:
    """Fail fast, with the URL (never the key), if no Qdrant server answers at ``url``.

    qdrant-client would retry and wait for its own timeout on the first call; one HTTP
    request with a short timeout tells an unreachable server apart in seconds.  The request
    is the collection list, so a reply that is not JSON (a web page, a proxy's error page)
    is refused here too, instead of failing deep inside the client.  An HTTP error status
    counts as reachable (the export then names it), except 401/403: the API key is wrong.
    """
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    where = describe_source(None, url)
    parts = urlsplit(server_url(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"--qdrant-url {where} is not an http(s) URL: pass e.g. http://localhost:6333")
    try:
        port = parts.port or DEFAULT_SERVER_PORT
    except ValueError:
        raise SourceError(f"--qdrant-url {where} has a bad port: pass e.g. http://localhost:6333") from None
    root = f"{parts.scheme}://{parts.hostname}:{port}{parts.path.rstrip('/')}/"
    headers = {"api-key": os.environ["QDRANT_API_KEY"]} if os.environ.get("QDRANT_API_KEY") else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(root + "collections", headers=headers), timeout=timeout
        ) as r:
            body = r.read(PROBE_MAX_BYTES)
            kind = r.headers.get_content_type()
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise SourceError(
                f"Qdrant server {where} answered, but not with Qdrant's JSON API (got {kind}): check --qdrant-url"
            )
        return
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise SourceError(
                f"Qdrant server {where} refused the API key (HTTP {err.code}): set QDRANT_API_KEY to a valid key"
            ) from None
        return
    except (TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            why = f"no answer within {timeout:g} s"
        else:
            why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        raise SourceError(f"Qdrant server {where} is unreachable ({why}): start it or check --qdrant-url") from None


def describe_source(path: Path | str | None, url: str | None) -> str:
    """Where the data came from, for logs and the manifest: never includes credentials."""
    if url:
        parts = urlsplit(server_url(url))
        host = parts.hostname or ""
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    return str(path or DEFAULT_QDRANT_PATH)


def require_collection(client: QdrantClient, collection: str, where: str) -> None:
    """``SourceError`` naming the collections that do exist, unless ``collection`` is one of them."""
    try:
        names = sorted(c.name for c in client.get_collections().collections)
    except Exception as err:  # a server that answered the probe but fails the API call
        failure = server_failure(err, where)
        if failure is None:
            raise
        if "API key" in str(failure):
            raise failure from None
        raise SourceError(f"Qdrant at {where} failed to list collections ({_short(err)})") from None
    if collection not in names:
        existing = ", ".join(names) if names else "none"
        raise SourceError(
            f"collection '{collection}' not found in {where} (existing collections: {existing}): "
            "check --collection or run `mathpal seed-qdrant`"
        )


def _short(err: BaseException) -> str:
    """An exception as a short one-line reason (status code where there is one)."""
    status = getattr(err, "status_code", None)
    text = f"HTTP {status}" if status else (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return text[:200]


def dense_vector(client: QdrantClient, collection: str) -> tuple[bool, str | None, str]:
    """Which stored vector the near-duplicate search can use: ``(usable, name, why_not)``.

    Usable means one dense vector per point with cosine distance (the threshold is a
    cosine); ``name`` is None for the unnamed default vector.
    """
    from qdrant_client import models

    vectors = client.get_collection(collection).config.params.vectors
    if isinstance(vectors, models.VectorParams):
        name, params = None, vectors
    elif isinstance(vectors, dict) and len(vectors) == 1:
        name, params = next(iter(vectors.items()))
    elif not vectors:
        return False, None, "the collection stores no dense vectors"
    else:
        return False, None, f"the collection has {len(vectors)} named vectors ({', '.join(sorted(vectors))}), not one"
    if params.distance != models.Distance.COSINE:
        return False, name, f"its vectors use {params.distance.value} distance, not cosine"
    return True, name, ""


def page_sizes(local: bool) -> Iterator[int]:
    """Scroll page sizes: local mode, a small first page and then few large ones; a server, even pages."""
    if not local:
        while True:
            yield SERVER_PAGE
    yield LOCAL_FIRST_PAGE
    while True:
        yield LOCAL_PAGE


def scroll_records(client: QdrantClient, collection: str, sizes: Iterator[int]) -> Iterator[list[Any]]:
    """Every point (id and payload, no vector), one page per ``next(sizes)`` points."""
    offset = None
    while True:
        points, offset = client.scroll(
            collection_name=collection, limit=next(sizes), offset=offset, with_payload=True, with_vectors=False
        )
        yield points
        if offset is None:
            return


def recreate_collection(client: QdrantClient, collection: str, vector_size: int) -> None:
    """Drop and create ``collection`` with cosine vectors, so seeding twice gives the same data."""
    from qdrant_client import models

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
    from qdrant_client import models

    for start in range(0, len(ids), batch):
        client.upsert(
            collection_name=collection,
            points=[
                models.PointStruct(id=pid, vector=vec, payload=payload)
                for pid, vec, payload in zip(
                    ids[start : start + batch], vectors[start : start + batch], payloads[start : start + batch]
                )
            ],
            wait=True,
        )
