"""``prepare-data`` end to end: scroll Qdrant here, build problems in a worker process, write atomically.

Reading the points is the floor of an export's cost, so the rest hides behind it.
This process scrolls (the Qdrant client is not shareable, and local mode is pure
Python, so one core is all the scroll can use) and hands each page of whole-problem
points, reduced to the few fields a problem needs, to a worker process that cleans,
builds and serialises them while the next page is read (``dataprep.export``).
Chunks stay here, grouped by entry as they come.  When the scroll ends this process
builds the chunked problems and then takes its share of the pages the worker has not
reached yet, so that both cores finish together; the worker merges it all.  The
worker is forked before the Qdrant client opens, so it never holds the store's lock,
and it exits when this process goes away (its end of the pipe closes).

After that the worker removes duplicates and assigns splits; this process asks Qdrant
for the near-duplicates of validation/test problems (``near_duplicates``); then the
worker writes the JSONL files into a staging folder, this process adds the manifest
(and the Comet artifact) and renames the folder into place.  Any failure before the
rename leaves the previous export untouched.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataprep.export import (
    DEFAULT_SYSTEM_PROMPT,
    ExportState,
    Summary,
    add_points,
    add_prepared,
    build_pending,
    finish_export,
    merge_export,
    move_to_train,
    new_export,
    point_fields,
    prepare_points,
    write_splits,
)
from dataprep.splits import SPLIT_SALT, check_fractions
from mathpal_common.atomic_files import check_writable, staged_dir

# Points per message to the worker: small enough that it starts on a page before the
# page is fully sent, large enough that pickling overhead stays negligible.
MESSAGE_POINTS = 2048
DEFAULT_NEAR_DUP_THRESHOLD = 0.97
# Events reported to the caller's progress callback, ``(kind, n, total)``: a stage starts
# ("open", "scroll" with the number of points, "finish", "near_dup" with the number of
# problems to check, "write"), or work is done within it ("read" n points, "searched" n problems).
Progress = Callable[[str, int, int], None]


class ExportError(ValueError):
    """An export that must not be written (nothing matched, --strict rejects, ...); one line."""


@dataclass
class ExportSettings:
    """Everything an export needs besides the Qdrant client."""

    collection: str
    types: list[str] = field(default_factory=lambda: ["exam"])
    grades: list[str] = field(default_factory=list)
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    near_dup: bool = True
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD
    strict: bool = False
    local: bool = True
    # None: the mode's default schedule (dataprep.qdrant_source.page_sizes); else a fixed page.
    page_size: int | None = None
    # False runs the export's work in this process (no fork): same results, no overlap.
    worker: bool = True


def check_settings(settings: ExportSettings) -> None:
    """Refuse bad settings before anything is read (ExportError, one line)."""
    try:
        check_fractions(settings.val_fraction, settings.test_fraction)
    except ValueError as err:
        raise ExportError(f"--val-fraction/--test-fraction: {err}") from None
    if not 0 < settings.near_dup_threshold <= 1:
        raise ExportError(f"--near-dup-threshold {settings.near_dup_threshold} must be a cosine in (0, 1]: e.g. 0.97")


def check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a previous export (its files would be deleted)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: pass a folder")
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ExportError(
            f"--out {out} is a folder that holds no previous export (no manifest.json), and an export "
            "replaces its folder: pass a new or empty folder"
        )


# --------------------------------------------------------------------------- the worker


def _handle(box: dict[str, Any], message: tuple) -> Any:
    """Apply one message to the export state (in the worker, or in-process)."""
    kind = message[0]
    if kind == "start":
        types, grades, system_prompt = message[1:]
        box["state"] = new_export(types, grades, system_prompt)
        return None
    state = box["state"]
    if kind == "points":
        add_points(state, message[1])
        return None
    if kind == "prepared":
        add_prepared(state, message[1])
        return None
    if kind == "merge":
        merge_export(state, message[1])
        return None
    if kind == "finish":
        return finish_export(state, *message[1:])
    if kind == "write":
        move_to_train(state, message[2])
        files = write_splits(state, Path(message[1]))
        return files, state.counts
    raise ValueError(f"unknown message {kind!r}")


_REPLIES = ("finish", "write")


def _worker_main(inbox: Any, outbox: Any, spare: list[Any]) -> None:
    """The worker's loop: messages in order; replies to ``finish`` and ``write``; exit on EOF."""
    for conn in spare:  # the parent's ends: closed here so that EOF reaches us when it dies
        conn.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    gc.disable()  # no cycles in an export's data, and a collection would walk all of it again and again
    box: dict[str, Any] = {}
    error: tuple | None = None
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return
        if message[0] == "close":
            # Skip the interpreter's teardown: freeing every object of a large export one by
            # one takes a noticeable part of a second, and the parent waits for our exit.
            os._exit(0)
        reply = None
        if error is None:
            try:
                reply = _handle(box, message)
            except OSError as err:  # a full or read-only disk: the parent names the path in one line
                error = ("oserror", err.errno, err.strerror, err.filename)
            except BaseException:  # reported to the parent at the next reply
                error = ("error", traceback.format_exc())
        if message[0] in _REPLIES:
            try:
                outbox.send(error if error else ("ok", reply))
            except (BrokenPipeError, OSError):
                return


class _Engine:
    """The export state, in a forked worker (``worker=True``) or in this process.

    ``start`` sends the first message; ``post`` queues one without waiting (a thread
    does the sending, so the scroll never waits for the worker); ``share_backlog`` lets
    this process prepare queued pages too once it has nothing else to do; ``call`` waits
    for the worker's reply.
    """

    def __init__(self, worker: bool) -> None:
        self.box: dict[str, Any] = {}
        self.process = None
        if worker and sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("fork")
            to_worker_r, self.to_worker = ctx.Pipe(duplex=False)
            self.from_worker, from_worker_w = ctx.Pipe(duplex=False)
            self.process = ctx.Process(
                target=_worker_main,
                args=(to_worker_r, from_worker_w, [self.to_worker, self.from_worker]),
                name="prepare-data-worker",
                daemon=True,
            )
            self.process.start()
            to_worker_r.close()
            from_worker_w.close()
            self.outgoing: queue.Queue = queue.Queue()
            self.send_error: BaseException | None = None
            self.sender = threading.Thread(target=self._send_loop, name="prepare-data-sender", daemon=True)
            self.sender.start()

    def _send_loop(self) -> None:
        while True:
            message = self.outgoing.get()
            if message is None:
                return
            if self.send_error is None:
                try:
                    self.to_worker.send(message)
                except BaseException as err:  # the worker died: call() reports it
                    self.send_error = err

    def start(self, message: tuple) -> None:
        """The ``start`` message, sent before anything is queued (``share_backlog`` needs that)."""
        if self.process is None:
            _handle(self.box, message)
        else:
            self.to_worker.send(message)

    def post(self, message: tuple) -> None:
        if self.process is None:
            _handle(self.box, message)
        else:
            self.outgoing.put(message)

    def share_backlog(self, state: ExportState) -> int:
        """Prepare here the pages the worker has not taken yet; returns how many.

        Once the scroll is over this process would only wait; the worker, which does
        most of the work, is usually behind.  Both now take queued pages first come,
        first served, so the two cores finish together.  Order does not matter: an
        export gives the same result whatever order its points come in.
        """
        if self.process is None:
            return 0
        prepared = []
        while True:
            try:
                message = self.outgoing.get_nowait()
            except queue.Empty:
                break
            prepared.append(prepare_points(state, message[1]))
        for items in prepared:
            self.outgoing.put(("prepared", items))
        return len(prepared)

    def call(self, message: tuple) -> Any:
        if self.process is None:
            return _handle(self.box, message)
        self.outgoing.put(message)
        try:
            status, *reply = self.from_worker.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise RuntimeError(f"the prepare-data worker stopped (exit code {self.process.exitcode})") from None
        if status == "oserror":
            raise OSError(*reply)
        if status == "error":
            raise RuntimeError(f"the prepare-data worker failed:\n{reply[0]}")
        return reply[0]

    def close(self, abort: bool = False) -> None:
        """Stop the worker: politely after a finished export, at once after a failure or Ctrl-C."""
        if self.process is None:
            return
        if abort:
            self.process.kill()
            self.send_error = self.send_error or RuntimeError("aborted")
        self.outgoing.put(("close",))
        self.outgoing.put(None)
        self.sender.join(timeout=10)
        for conn in (self.to_worker, self.from_worker):
            conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# --------------------------------------------------------------------------- checks


def _no_match_message(summary: Summary, collection: str) -> str:
    """Which filter matched nothing, and what the collection holds instead."""
    f = summary.filters
    if summary.counts["points_read"] == 0:
        return f"collection '{collection}' is empty: fill it (e.g. `mathpal seed-qdrant`) or pick another --collection"
    if f["type"] and f["type_matches"] == 0:
        found = ", ".join(f["other_types"]) or "none"
        return (
            f"--type {' '.join(f['type'])} matched none of the {summary.counts['points_read']} points "
            f"(types found: {found})"
        )
    if f["grade_id"] and f["grade_matches"] == 0:
        found = ", ".join(f["other_grades"]) or "none"
        return (
            f"--grade {' '.join(f['grade_id'])} matched none of the {summary.counts['points_read']} points "
            f"(grades found: {found})"
        )
    return (
        f"--type {' '.join(f['type']) or '(any)'} and --grade {' '.join(f['grade_id']) or '(any)'} "
        f"together matched none of the {summary.counts['points_read']} points: loosen one of them"
    )


def _reject_message(summary: Summary) -> str:
    """``reason: n (e.g. id, id)`` for each reject reason."""
    return "; ".join(
        f"{reason}: {n} (e.g. {', '.join(summary.rejected_examples.get(reason, []))})"
        for reason, n in summary.counts["rejected"].items()
    )


def check_summary(summary: Summary, settings: ExportSettings) -> None:
    """Refuse an export with no matching point, no surviving problem, or (``--strict``) any reject."""
    counts = summary.counts
    if summary.filters["matched"] == 0:
        raise ExportError(_no_match_message(summary, settings.collection))
    rejected = sum(counts["rejected"].values())
    if settings.strict and rejected:
        raise ExportError(f"--strict: {rejected} of {counts['entries']} entries rejected: {_reject_message(summary)}")
    if counts["kept"] == 0:
        raise ExportError(
            f"no problem left to export: all {counts['entries']} entries rejected: {_reject_message(summary)}"
        )


# --------------------------------------------------------------------------- the export


def run_export(
    open_client: Callable[[], Any],
    settings: ExportSettings,
    out_dir: Path,
    source: dict[str, Any],
    progress: Progress | None = None,
    artifact: Callable[[Path, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Export ``settings.collection`` to ``out_dir``; returns the manifest.

    ``open_client`` is called after the worker is forked (so the worker never holds the
    store).  ``artifact(staging_dir, manifest)`` runs before the rename, so a failure
    there leaves the previous export in place too.
    """
    from dataprep.near_duplicates import find_near_duplicates
    from dataprep.qdrant_source import dense_vector, page_sizes, require_collection, scroll_records, server_failure

    report = progress or (lambda kind, n, total: None)
    check_settings(settings)
    check_out_dir(out_dir)
    # The local store is millions of small objects; every full collection of Python's
    # cyclic GC walks them all, which costs a third of the scroll (measured: 3.2 s ->
    # 2.0 s for 100k points).  Neither Qdrant's records nor our pieces form cycles, so
    # the collector pauses for the export (and resumes, for `mathpal demo`'s sake).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    engine = _Engine(settings.worker)
    failed = True
    try:
        report("open", 0, 0)
        client = open_client()
        try:
            require_collection(client, settings.collection, source.get("qdrant", ""))
            total = client.count(settings.collection, exact=True).count
            usable, vector_name, why_not = dense_vector(client, settings.collection)
            engine.start(("start", settings.types, settings.grades, settings.system_prompt))
            # Chunks stay here: grouping them is cheap while scrolling, and building them once
            # the scroll is over keeps this process busy while the worker catches up.
            chunks = new_export(settings.types, settings.grades, settings.system_prompt)
            sizes = iter(lambda: settings.page_size, None) if settings.page_size else page_sizes(settings.local)
            report("scroll", 0, total)
            for page in scroll_records(client, settings.collection, sizes):
                whole, chunked = [], []
                for record in page:
                    fields = point_fields(record.id, record.payload or {})
                    (chunked if fields.chunk_id else whole).append(fields)
                for start in range(0, len(whole), MESSAGE_POINTS):
                    engine.post(("points", whole[start : start + MESSAGE_POINTS]))
                add_points(chunks, chunked)
                report("read", len(page), total)
                del page, whole, chunked
            build_pending(chunks)
            engine.share_backlog(chunks)
            engine.post(("merge", chunks))
            del chunks
            report("finish", 0, 0)
            search = settings.near_dup and usable
            summary: Summary = engine.call(("finish", settings.val_fraction, settings.test_fraction, search))
            check_summary(summary, settings)
            near: dict[str, Any] = {"threshold": settings.near_dup_threshold}
            moved: list[dict[str, Any]] = []
            if not settings.near_dup:
                near["skipped"] = "--no-near-dup"
            elif not usable:
                near["skipped"] = why_not
            else:
                report("near_dup", 0, len(summary.candidates))
                moved, checked = find_near_duplicates(
                    client,
                    settings.collection,
                    vector_name,
                    summary.candidates,
                    summary.train_points,
                    settings.near_dup_threshold,
                    lambda n: report("searched", n, len(summary.candidates)),
                )
                near.update({"vector": vector_name or "(default)", "checked": checked, "moved": moved})
        except Exception as err:
            failure = server_failure(err, source.get("qdrant", ""))
            if failure is None:
                raise
            raise failure from None
        finally:
            client.close()
        report("write", 0, 0)
        with staged_dir(Path(out_dir)) as staging:
            files, counts = engine.call(("write", str(staging), [m["id"] for m in moved]))
            manifest = {
                "source": {
                    **source,
                    "collection": settings.collection,
                    "filters": {"type": sorted(settings.types or []), "grade_id": sorted(settings.grades or [])},
                    "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                "settings": {
                    "val_fraction": settings.val_fraction,
                    "test_fraction": settings.test_fraction,
                    "split_salt": SPLIT_SALT,
                    "strict": settings.strict,
                },
                "counts": counts,
                "near_duplicates": near,
                "files": files,
            }
            (staging / "manifest.json").write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            if artifact is not None:
                artifact(staging, manifest)
        failed = False
    finally:
        engine.close(abort=failed)
        if gc_was_enabled:
            gc.enable()
    return manifest


# --------------------------------------------------------------------------- what the user is told

# The stages of ``run_export`` as progress bars show them, and what each counted event counts.
STAGE_UNITS = {"read": "points/s", "searched": "problems/s"}


def stage_names(settings: ExportSettings, where: str, out_dir: Path) -> dict[str, str]:
    """The progress bar title of each stage event of an export."""
    return {
        "open": f"opening {where}",
        "scroll": f"reading {settings.collection}",
        "finish": "splitting",
        "near_dup": "near-duplicate search",
        "write": f"writing {out_dir}",
    }


def read_system_prompt(path: Path | None) -> str:
    """The system prompt of every example: ``DEFAULT_SYSTEM_PROMPT``, or the text of ``path``."""
    if path is None:
        return DEFAULT_SYSTEM_PROMPT
    if not Path(path).is_file():
        raise ExportError(f"--system-prompt-file {path} does not exist: pass a text file")
    prompt = Path(path).read_text(encoding="utf-8").strip()
    if not prompt:
        raise ExportError(f"--system-prompt-file {path} is empty: write the system prompt into it")
    return prompt


def export_summary(manifest: dict[str, Any], out_dir: Path, seconds: float) -> list[str]:
    """The lines ``prepare-data`` ends with: speed, the near-duplicate check, what was written."""
    counts, near, source = manifest["counts"], manifest["near_duplicates"], manifest["source"]
    read, rejected = counts["points_read"], counts["rejected"]
    lines = [
        f"Exported {read:,} points of '{source['collection']}' at {source['qdrant']} in {seconds:.1f} s "
        f"({read / max(seconds, 1e-6):,.0f} points/s overall)"
    ]
    if "skipped" in near:
        lines.append(f"near-duplicate check skipped: {near['skipped']}")
    else:
        lines.append(
            f"near-duplicates: {len(near['moved'])} of {near['checked']} validation/test problems "
            f"moved to train (cosine >= {near['threshold']})"
        )
    reasons = f" ({', '.join(f'{k}: {v}' for k, v in rejected.items())})" if rejected else ""
    splits = counts["splits"]
    lines.append(
        f"Wrote {out_dir}/: train {splits['train']}, validation {splits['validation']}, test {splits['test']} "
        f"(kept {counts['kept']} of {counts['entries']} entries; {counts['duplicates']} duplicates, "
        f"{counts['filtered_out']} points filtered out, rejected {sum(rejected.values())}{reasons})"
    )
    return lines


def export_collection(
    settings: ExportSettings,
    qdrant_path: Path | None,
    qdrant_url: str | None,
    out_dir: Path,
    display: Any = None,
    log_artifact: bool = False,
) -> list[str]:
    """``mathpal prepare-data``: export from a local store or a server into ``out_dir``; returns
    the summary lines to print.

    ``display`` is a ``rich.progress.Progress`` to show the stages on (or None).
    ``log_artifact`` logs the written files as a Comet dataset artifact before the folder
    is renamed into place, so a failure there keeps the previous export.
    """
    from dataprep.qdrant_source import describe_source, open_source
    from mathpal_common.terminal import StageBars

    where = describe_source(qdrant_path, qdrant_url)
    source = {"qdrant": where, "mode": "server" if qdrant_url else "local"}
    bars = StageBars(display, stage_names(settings, where, out_dir), STAGE_UNITS) if display is not None else None
    notes: list[str] = []

    def artifact(staging: Path, manifest: dict[str, Any]) -> None:
        from dataprep.artifact import log_dataset_artifact

        notes.append(log_dataset_artifact(staging, manifest))

    started = time.perf_counter()
    manifest = run_export(
        lambda: open_source(qdrant_path, qdrant_url),
        settings,
        out_dir,
        source,
        bars,
        artifact if log_artifact else None,
    )
    return [*export_summary(manifest, out_dir, time.perf_counter() - started), *notes]
