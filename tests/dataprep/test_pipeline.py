"""``run_export`` end to end on real embedded Qdrant stores of crawl-like points.

The store holds the ``corpus`` entries (12 overlapping chunks out of order, HTML, NFD,
duplicates differing in case and spacing, other grades and types), 40 sample-corpus
problems, a near-duplicate pair across splits and one entry per reject reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
import time
import weakref

import numpy as np
import pytest

from dataprep import qdrant_source
from dataprep.export import add_points, new_export, point_fields
from dataprep.payloads import normalise_question
from dataprep.pipeline import ExportError, ExportSettings, run_export
from dataprep.qdrant_source import SourceError, open_client, open_source, page_sizes
from dataprep.splits import SPLITS
from mathpal_commands.demo.embedding import hash_embedding
from tests.dataprep.conftest import (
    CRAWL_FILTERS,
    CRAWL_FRACTIONS,
    LONG_QUESTION,
    LONG_SOLUTION,
    _point,
    assign_split,
    build_corpus,
    crawl_payloads,
    eid,
    seed_store,
)

COLLECTION = "vector_exams"


@pytest.fixture(scope="module")
def crawl():
    return crawl_payloads(build_corpus())


@pytest.fixture(scope="module")
def store(tmp_path_factory, crawl):
    folder = tmp_path_factory.mktemp("crawl") / "qdrant"
    seed_store(folder, crawl["points"])
    return folder


@pytest.fixture(scope="module")
def payload_only_store(tmp_path_factory, crawl):
    folder = tmp_path_factory.mktemp("payload-only") / "qdrant"
    seed_store(folder, crawl["points"], vectors=False)
    return folder


def settings(**changes) -> ExportSettings:
    return ExportSettings(**{"collection": COLLECTION, **CRAWL_FILTERS, **CRAWL_FRACTIONS, **changes})


def export(folder, out, **changes) -> dict:
    return run_export(lambda: open_source(folder, None), settings(**changes), out, {"qdrant": str(folder)})


def read_rows(out) -> dict[str, list[dict]]:
    return {
        name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        for name in SPLITS
    }


def split_bytes(out) -> dict[str, bytes]:
    return {name: (out / f"{name}.jsonl").read_bytes() for name in SPLITS}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, store):
    out = tmp_path_factory.mktemp("export") / "data"
    return out, export(store, out)


# --------------------------------------------------------------------------- counts, texts, splits


def test_counts_are_exact(exported, crawl):
    _, manifest = exported
    counts = manifest["counts"]
    assert {k: counts[k] for k in crawl["counts"]} == crawl["counts"]
    assert counts["near_duplicates_moved"] == 1
    assert sum(counts["splits"].values()) == counts["kept"] == 45


def test_files_match_manifest_and_counts(exported):
    out, manifest = exported
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    for name, data in split_bytes(out).items():
        assert manifest["files"][f"{name}.jsonl"] == hashlib.sha256(data).hexdigest()
        assert len(data.splitlines()) == manifest["counts"]["splits"][name]


def test_manifest_source_and_settings(exported, store):
    _, manifest = exported
    source = manifest["source"]
    assert source["collection"] == COLLECTION and source["qdrant"] == str(store)
    assert source["filters"] == {"type": ["exam"], "grade_id": ["grade_5", "grade_6"]}
    assert source["exported_at"].endswith("+00:00")
    assert manifest["settings"]["split_salt"] == "mathpal-split-v1"


def test_texts_are_joined_cleaned_and_deduplicated(exported, crawl):
    out, _ = exported
    rows = {row["entry_id"]: row for rows in read_rows(out).values() for row in rows}
    ids = crawl["ids"]
    chunked = rows[ids["chunked"]]
    assert chunked["messages"][1]["content"] == LONG_QUESTION
    assert chunked["messages"][2]["content"] == LONG_SOLUTION
    assert chunked["answer"] == "105 kg" and chunked["topic"] == "cộng trừ"
    # Of the three spellings of the rectangle question the smallest entry id is kept, as written.
    plain = rows[ids["plain"]]
    assert plain["messages"][1]["content"] == "Tính diện tích hình chữ nhật có chiều dài 12 cm, chiều rộng 5 cm."
    assert plain["answer"] == "60 cm²"
    assert ids["dup_nfd"] not in rows and ids["dup_html"] not in rows
    assert ids["theory"] not in rows and ids["grade_4"] not in rows
    assert rows[ids["grade6"]]["messages"][2]["content"] == "x = 42 - 15\nx = 27\nĐáp số: x = 27."
    assert {row["grade_id"] for row in rows.values()} == {"grade_5", "grade_6"}
    for row in rows.values():
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["id"] == hashlib.sha256(normalise_question(row["messages"][1]["content"]).encode()).hexdigest()[:16]


def test_rows_are_sorted_and_splits_follow_the_hash(exported):
    out, manifest = exported
    moved = {m["id"] for m in manifest["near_duplicates"]["moved"]}
    for name, rows in read_rows(out).items():
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        assert rows, name
        for row in rows:
            expected = assign_split(normalise_question(row["messages"][1]["content"]), **CRAWL_FRACTIONS)
            assert name == ("train" if row["id"] in moved else expected)


# --------------------------------------------------------------------------- near-duplicates


def test_near_duplicate_is_moved_to_train(exported, crawl):
    out, manifest = exported
    near = manifest["near_duplicates"]
    assert near["threshold"] == 0.97 and near["vector"] == "(default)"
    assert near["checked"] == manifest["counts"]["splits"]["validation"] + manifest["counts"]["splits"]["test"] + 1
    (moved,) = near["moved"]
    assert moved["entry_id"] == crawl["ids"]["near_copy"]
    assert moved["nearest_entry_id"] == crawl["ids"]["near_train"]
    assert moved["from"] == assign_split(normalise_question(crawl["near_questions"][1]), **CRAWL_FRACTIONS)
    assert moved["from"] in ("validation", "test")
    assert moved["cosine"] == pytest.approx(crawl["near_cosine"], abs=1e-5)
    train_ids = {row["entry_id"] for row in read_rows(out)["train"]}
    assert {crawl["ids"]["near_copy"], crawl["ids"]["near_train"]} <= train_ids


def test_near_duplicates_agree_with_a_brute_force_search(exported, crawl):
    """Independent oracle: each problem's first-chunk vector against every training one, in numpy."""
    out, manifest = exported
    first_chunk: dict[str, str] = {}
    for point in crawl["points"]:
        chunk_id = point.get("chunk_id")
        if point.get("entry_id") and (not chunk_id or chunk_id.endswith("_0")):
            first_chunk.setdefault(point["entry_id"], point["content"])
    moved = {m["id"] for m in manifest["near_duplicates"]["moved"]}
    rows = [row for rows_ in read_rows(out).values() for row in rows_]
    by_hash = {
        row["id"]: assign_split(normalise_question(row["messages"][1]["content"]), **CRAWL_FRACTIONS) for row in rows
    }
    train_entries = [row["entry_id"] for row in rows if by_hash[row["id"]] == "train"]
    plain = next(row for row in rows if row["entry_id"] == crawl["ids"]["plain"])
    if by_hash[plain["id"]] == "train":  # its duplicates are training problems too
        train_entries += [crawl["ids"]["dup_nfd"], crawl["ids"]["dup_html"]]
    train = np.array([hash_embedding(first_chunk[e]) for e in train_entries])
    expected = {
        row["id"]
        for row in rows
        if by_hash[row["id"]] != "train"
        and (train @ np.array(hash_embedding(first_chunk[row["entry_id"]]))).max() >= 0.97
    }
    assert moved == expected
    assert len(expected) == 1


def test_higher_threshold_moves_nothing(tmp_path, store, crawl):
    manifest = export(store, tmp_path / "data", near_dup_threshold=0.999)
    assert manifest["near_duplicates"]["moved"] == [] and manifest["counts"]["near_duplicates_moved"] == 0
    rows = read_rows(tmp_path / "data")
    copy = next(r for rs in rows.values() for r in rs if r["entry_id"] == crawl["ids"]["near_copy"])
    assert copy not in rows["train"]


def test_payload_only_collection_skips_the_check_with_the_reason(tmp_path, payload_only_store, crawl):
    manifest = export(payload_only_store, tmp_path / "data")
    assert manifest["near_duplicates"] == {"threshold": 0.97, "skipped": "the collection stores no dense vectors"}
    assert {k: manifest["counts"][k] for k in crawl["counts"]} == crawl["counts"]
    assert manifest["counts"]["near_duplicates_moved"] == 0


def test_no_near_dup_flag_skips_and_changes_only_the_moved_row(tmp_path, store, exported):
    out, with_check = exported
    manifest = export(store, tmp_path / "data", near_dup=False)
    assert manifest["near_duplicates"]["skipped"] == "--no-near-dup"
    (moved,) = with_check["near_duplicates"]["moved"]
    rows, rows_checked = read_rows(tmp_path / "data"), read_rows(out)
    assert [r for r in rows["train"]] == [r for r in rows_checked["train"] if r["id"] != moved["id"]]
    assert moved["id"] in {r["id"] for r in rows[moved["from"]]}


# --------------------------------------------------------------------------- determinism and modes


def test_two_runs_give_byte_identical_jsonl(tmp_path, store, exported):
    out, first = exported
    second = export(store, tmp_path / "again")
    assert split_bytes(tmp_path / "again") == split_bytes(out)
    assert second["files"] == first["files"] and second["counts"] == first["counts"]


def test_in_process_and_any_page_size_give_the_same_bytes(tmp_path, store, exported):
    out, first = exported
    export(store, tmp_path / "inline", worker=False, page_size=3)
    export(store, tmp_path / "pages", page_size=7)
    assert split_bytes(tmp_path / "inline") == split_bytes(out)
    assert split_bytes(tmp_path / "pages") == split_bytes(out)


def test_local_page_schedule():
    local = page_sizes(True)
    assert [next(local) for _ in range(3)] == [
        qdrant_source.LOCAL_FIRST_PAGE,
        qdrant_source.LOCAL_PAGE,
        qdrant_source.LOCAL_PAGE,
    ]
    server = page_sizes(False)
    assert {next(server) for _ in range(3)} == {qdrant_source.SERVER_PAGE}


def test_points_are_not_kept_after_they_are_read(crawl):
    """Streaming: an export keeps fields of a point, never the payload dict itself."""

    class Payload(dict):
        pass

    refs = []

    def payloads():
        for point in crawl["points"]:
            payload = Payload(point)
            refs.append(weakref.ref(payload))
            yield payload

    state = new_export(**CRAWL_FILTERS)
    add_points(state, (point_fields(n, p) for n, p in enumerate(payloads())))
    assert len(refs) == len(crawl["points"])
    assert all(ref() is None for ref in refs)
    assert state.points_read == len(crawl["points"])


# --------------------------------------------------------------------------- refusals: nothing written


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "data").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data")]


def test_strict_refuses_any_reject(tmp_path, store):
    with pytest.raises(ExportError, match=r"^--strict: 10 of 57 entries rejected: bad_chunk_id: 1 \(e\.g\. "):
        export(store, tmp_path / "data", strict=True)
    assert_nothing_written(tmp_path)


def test_strict_passes_a_clean_collection(tmp_path, make_point):
    seed_store(tmp_path / "q", [make_point(eid(i), f"Tính {i} × 3.", f"Đáp số: {3 * i}") for i in range(1, 6)])
    manifest = export(tmp_path / "q", tmp_path / "data", strict=True)
    assert manifest["counts"]["kept"] == 5 and manifest["counts"]["rejected"] == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"types": ["theory_only"]}, "--type theory_only matched none of the "),
        ({"grades": ["grade_9"]}, "--grade grade_9 matched none of the "),
        ({"types": ["theory"], "grades": ["grade_4"]}, "--type theory and --grade grade_4 together matched none"),
    ],
)
def test_filters_that_match_nothing_are_named(tmp_path, store, crawl, changes, message):
    with pytest.raises(ExportError) as err:
        export(store, tmp_path / "data", **changes)
    assert message in str(err.value)
    assert f"of the {len(crawl['points'])} points" in str(err.value)
    assert_nothing_written(tmp_path)


def test_type_filter_message_lists_the_types_found(tmp_path, store):
    with pytest.raises(ExportError, match=r"\(types found: exam, theory\)"):
        export(store, tmp_path / "data", types=["nothing"])


def test_empty_collection(tmp_path):
    seed_store(tmp_path / "q", [])
    with pytest.raises(ExportError, match="collection 'vector_exams' is empty"):
        export(tmp_path / "q", tmp_path / "data")
    assert_nothing_written(tmp_path)


def test_all_rejected_is_refused(tmp_path, make_point):
    seed_store(tmp_path / "q", [make_point(eid(1), "Tính 2 + 2.", "2 + 2 = 4")])
    with pytest.raises(ExportError, match=r"no problem left to export: all 1 entries rejected: no_final_answer: 1"):
        export(tmp_path / "q", tmp_path / "data")
    assert_nothing_written(tmp_path)


def test_missing_collection_lists_the_existing_ones(tmp_path, store):
    with pytest.raises(SourceError, match=r"collection 'nope' not found in .* \(existing collections: vector_exams\)"):
        run_export(lambda: open_source(store, None), settings(collection="nope"), tmp_path / "data", {"qdrant": "x"})
    assert_nothing_written(tmp_path)


def test_store_open_in_another_process_is_named(tmp_path, make_point):
    folder = tmp_path / "q"
    seed_store(folder, [make_point(eid(1), "Tính 2 + 2.", "Đáp số: 4")])
    holder = open_client(folder)  # a second open of the same store, as another process would
    try:
        with pytest.raises(SourceError, match=r"is open in another process .* pass --qdrant-url$"):
            export(folder, tmp_path / "data")
    finally:
        holder.close()
    assert_nothing_written(tmp_path)


def test_unreachable_server_fails_fast_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(SourceError, match=rf"^Qdrant server http://127\.0\.0\.1:{port} is unreachable \("):
        open_source(None, f"http://127.0.0.1:{port}")
    assert time.perf_counter() - started < 10


def test_silent_server_times_out_within_the_probe(monkeypatch):
    """A port that accepts connections but never answers: the probe gives up, not the client."""
    monkeypatch.setattr(qdrant_source, "PROBE_TIMEOUT_S", 0.5)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        started = time.perf_counter()
        with pytest.raises(SourceError, match=r"is unreachable \(no answer within 0\.5 s\)"):
            open_source(None, f"http://127.0.0.1:{port}")
        assert time.perf_counter() - started < 3
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()


def test_api_key_never_appears_in_messages(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "SECRET-KEY-123")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as err:
        open_source(None, f"http://user:SECRET-KEY-123@127.0.0.1:{port}/?api-key=SECRET-KEY-123")
    assert "SECRET" not in str(err.value) and "user" not in str(err.value)


def test_out_folder_that_is_not_an_export_is_refused(tmp_path, store):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="holds no previous export"):
        export(store, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "--val-fraction/--test-fraction"),
        ({"near_dup_threshold": 1.5}, "--near-dup-threshold 1.5 must be a cosine in (0, 1]"),
    ],
)
def test_bad_settings_are_refused_before_reading(tmp_path, changes, message):
    opened = []
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        run_export(lambda: opened.append(1), settings(**changes), tmp_path / "data", {})
    assert opened == []


def test_previous_export_survives_a_failed_one(tmp_path, store, exported):
    out = tmp_path / "data"
    shutil.copytree(exported[0], out)
    before = split_bytes(out)
    with pytest.raises(ExportError):
        export(store, out, strict=True)
    assert split_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_export_leaves_no_worker_behind(tmp_path, store):
    import multiprocessing

    with pytest.raises(ExportError):
        export(store, tmp_path / "data", strict=True)
    assert multiprocessing.active_children() == []


def test_a_folder_that_is_not_a_store_is_refused_untouched(tmp_path):
    folder = tmp_path / "not-a-store"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match=r"holds no Qdrant collections \(no meta\.json\)"):
        export(folder, tmp_path / "data")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


class _Broken:
    """An HTTP server on 127.0.0.1 that answers every request with one status (not a Qdrant)."""

    def __init__(self, status: int):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": {"error": "broken"}}')

            do_POST = do_PUT = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "refused the API key (HTTP 401): set QDRANT_API_KEY"), (500, "failed to list collections (HTTP 500)")],
)
def test_a_server_that_fails_is_one_line(tmp_path, status, message):
    broken = _Broken(status)
    try:
        with pytest.raises(SourceError, match=re.escape(message)):
            run_export(
                lambda: open_source(None, broken.url), settings(local=False), tmp_path / "data", {"qdrant": broken.url}
            )
    finally:
        broken.close()
    assert_nothing_written(tmp_path)


# --------------------------------------------------------------------------- payloads a broken crawl can hold


def test_payloads_a_broken_crawl_can_hold_are_counted_rejects_through_a_real_store(tmp_path):
    """A lone surrogate, ids that are not text, a NUL-only answer: each a counted reject, never a traceback."""
    good = _point(eid(1), "Tính 2 + 3.", "2 + 3 = 5\nĐáp số: 5")
    payloads = [
        good,
        _point(eid(2), "Tính 4 + 4 \udcff.", "4 + 4 = 8\nĐáp số: 8"),  # a lone surrogate from a bad decode
        {**_point("x", "Tính 1 + 6.", "Đáp số: 7"), "entry_id": {"$oid": eid(3)}},
        {**_point("x", "Tính 2 + 6.", "Đáp số: 8"), "entry_id": [eid(4)]},
        _point(eid(5), "Tính 3 + 6.", "Đáp số: 9", grade_id={"grade": 5}),
        _point(eid(6), "Tính 4 + 6.", "Đáp số: 10", grade_id=["grade_5"]),
        _point(eid(7), "Tính 5 + 6.", "5 + 6 = 11\nĐáp số: \x00\x00"),
    ]
    seed_store(tmp_path / "qdrant", payloads, vectors=False)
    manifest = run_export(
        lambda: open_source(tmp_path / "qdrant", None),
        ExportSettings(collection=COLLECTION, grades=[], val_fraction=0.0, test_fraction=0.0),
        tmp_path / "data",
        {"qdrant": "test"},
    )
    assert manifest["counts"]["rejected"] == {
        "bad_entry_id": 2,
        "bad_grade_id": 2,
        "invalid_unicode": 1,
        "no_final_answer": 1,
    }
    rows = read_rows(tmp_path / "data")["train"]
    assert [row["entry_id"] for row in rows] == [eid(1)]
    # the manifest names rejects by point, never by a Python repr of a broken id
    manifest_text = (tmp_path / "data" / "manifest.json").read_text(encoding="utf-8")
    assert "$oid" not in manifest_text and "['" not in manifest_text


def test_a_server_that_answers_with_a_web_page_is_one_line(tmp_path):
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(
            SourceError, match=re.escape(f"Qdrant server {url} answered, but not with Qdrant's JSON API")
        ):
            open_source(None, url)
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "data").exists()
