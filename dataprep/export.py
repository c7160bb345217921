"""Turn a stream of Qdrant points into deduplicated, hash-split chat JSONL, one page at a time.

An export reads every point once.  ``add_points`` (``prepare_points`` then
``add_prepared``) keeps of each point only what makes a problem (``Piece``) and, for
a point that is a whole problem (no ``chunk_id``), builds the problem and its JSON
line at once, so that this work overlaps the scroll (see ``dataprep.pipeline``);
chunked problems are built by ``build_pending``, once all their chunks are in.
Results never depend on the order points arrive in, so the work can be split between
processes (``merge_export``).  ``finish_export`` then removes duplicates and assigns
splits, and ``write_splits`` writes the JSONL files.  Nothing here does I/O except
``write_splits``, so every rule can be tested on payload dicts; ``dataprep.pipeline``
writes the output folder (atomically, with its manifest).
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dataprep.payloads import Piece, Problem, Rejected, assemble_problem, chunk_index, question_key
from dataprep.splits import SPLITS, check_fractions, split_bucket, split_for_bucket
from mathpal_common.prompt import DEFAULT_SYSTEM_PROMPT

PointId = int | str


class PointFields(NamedTuple):
    """What an export reads of a point (``point_fields``); the rest of the payload is dropped at once."""

    point_id: Any
    type: Any
    grade_id: Any
    entry_id: Any
    chunk_id: Any
    content: Any
    topic: Any


class PointPiece(NamedTuple):
    """One point of an entry as the export keeps it: its id (for its vector) and its ``Piece``."""

    point_id: PointId
    piece: Piece


# How many distinct type / grade_id values to remember for the "filter matched nothing" message.
_SEEN_LIMIT = 20
# Rejected entries named per reason in a summary (all of them are counted).
_EXAMPLES_PER_REASON = 3
# The string encoder json.dumps uses with ensure_ascii=False (C version where available).
_encode = json.encoder.encode_basestring


class Built(NamedTuple):
    """A problem ready to write: its dedup digest, split bucket, row id and JSON line."""

    digest: bytes
    bucket: float
    row_id: str
    line: bytes


class Orphan(NamedTuple):
    """A point that belongs to no entry, and why: ``no_entry_id``, or ``bad_entry_id`` (not text or a number)."""

    point_id: PointId
    reason: str


class Row(NamedTuple):
    """A kept problem in a split: its row id (the order rows are written in) and its entry."""

    row_id: str
    entry: str


class Candidate(NamedTuple):
    """A validation/test problem the near-duplicate search checks, and the point whose vector stands for it."""

    row_id: str
    entry_id: str
    split: str
    point_id: PointId


@dataclass
class ExportState:
    """What an export holds while points stream in: one piece per point, one line per built problem."""

    types: frozenset[str] | None
    grades: frozenset[str] | None
    system_prompt: str
    system_json: str = ""
    points_read: int = 0
    filtered_out: int = 0
    type_matches: int = 0
    grade_matches: int = 0
    seen_types: set[str] = field(default_factory=set)
    seen_grades: set[str] = field(default_factory=set)
    pieces: dict[str, list[PointPiece]] = field(default_factory=dict)
    built: dict[str, Built | Rejected] = field(default_factory=dict)
    filtered_entries: set[str] = field(default_factory=set)
    orphans: list[Orphan] = field(default_factory=list)
    # Filled by finish_export:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class Summary:
    """What ``finish_export`` tells the caller: counts, and what the near-duplicate check needs."""

    counts: dict[str, Any]
    # The validation/test problems to check against training problems.
    candidates: list[Candidate]
    # Point id -> entry id of every training problem's representative point (duplicates included).
    train_points: dict[PointId, str]
    rejected_examples: dict[str, list[str]]
    filters: dict[str, Any]


def to_example(problem: Problem, system_prompt: str, row_id: str | None = None) -> dict[str, Any]:
    """One JSONL row: ids and answer for evaluation, ``messages`` for Axolotl's chat_template."""
    if row_id is None:
        row_id = hashlib.sha256(question_key(problem.question).encode("utf-8")).hexdigest()[:16]
    row: dict[str, Any] = {
        "id": row_id,
        "entry_id": problem.entry_id,
        "grade_id": problem.grade_id,
        "answer": problem.answer,
    }
    if problem.topic:
        row["topic"] = problem.topic
    row["messages"] = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": problem.question},
        {"role": "assistant", "content": problem.solution},
    ]
    return row


def row_line(row: dict[str, Any]) -> bytes:
    """One row as a UTF-8 JSON line with sorted keys, so equal data gives equal bytes."""
    return (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def problem_line(problem: Problem, row_id: str, system_json: str) -> bytes:
    """``row_line(to_example(problem, …))`` written out by hand, byte for byte the same.

    ``json.dumps`` of a nested row costs more than building the problem; the keys are
    fixed, so the line is assembled from the encoded strings (``system_json`` is the
    system message, encoded once per export).  Falls back to ``json.dumps`` for a topic
    that is not a string.
    """
    if problem.topic and not isinstance(problem.topic, str):
        return row_line(to_example(problem, json.loads(system_json)["content"], row_id))
    topic = f', "topic": {_encode(problem.topic)}' if problem.topic else ""
    return (
        f'{{"answer": {_encode(problem.answer)}, "entry_id": {_encode(problem.entry_id)}, '
        f'"grade_id": {_encode(problem.grade_id)}, "id": {_encode(row_id)}, "messages": [{system_json}, '
        f'{{"content": {_encode(problem.question)}, "role": "user"}}, '
        f'{{"content": {_encode(problem.solution)}, "role": "assistant"}}]{topic}}}\n'
    ).encode()


def system_message_json(system_prompt: str) -> str:
    """The system message as ``json.dumps`` writes it inside a row."""
    return json.dumps({"role": "system", "content": system_prompt}, ensure_ascii=False, sort_keys=True)


def point_fields(point_id: PointId, payload: dict[str, Any]) -> PointFields:
    """The fields of a point an export uses; the rest of the payload is dropped right away."""
    metadata = payload.get("metadata")
    topic = metadata.get("topic") if isinstance(metadata, dict) else None
    return PointFields(
        point_id,
        payload.get("type"),
        payload.get("grade_id"),
        payload.get("entry_id"),
        payload.get("chunk_id"),
        payload.get("content"),
        topic,
    )


def new_export(
    types: Iterable[str] | None, grades: Iterable[str] | None, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> ExportState:
    """An empty export; an empty or missing filter keeps every type / grade."""
    return ExportState(
        types=frozenset(types) if types else None,
        grades=frozenset(grades) if grades else None,
        system_prompt=system_prompt,
        system_json=system_message_json(system_prompt),
    )


def build_entry(state: ExportState, entry_id: str, points: list[PointPiece]) -> Built | Rejected:
    """Build one entry's problem and its JSON line (or the reason it is rejected)."""
    problem = assemble_problem(entry_id, [point.piece for point in points])
    if isinstance(problem, Rejected):
        return problem
    try:
        key = question_key(problem.question)
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        row_id = digest.hex()[:16]
        return Built(digest, split_bucket(key), row_id, problem_line(problem, row_id, state.system_json))
    except UnicodeEncodeError as err:
        return Rejected(entry_id, "invalid_unicode", f"a character that is not valid UTF-8 ({err.object[err.start]!a})")


def _entry_of(entry_id: Any, chunk_id: Any) -> tuple[str | None, str | None]:
    """The entry a point belongs to (its ``entry_id``, else the ``<entry_id>`` of its ``chunk_id``),
    or None and why not (an ``Orphan`` reason)."""
    if entry_id is not None and entry_id != "":
        if (type(entry_id) is int or type(entry_id) is str) and _is_utf8(str(entry_id)):
            return str(entry_id), None
        return None, "bad_entry_id"
    if isinstance(chunk_id, str) and "_" in chunk_id:
        entry = chunk_id.rsplit("_", 1)[0]
        if entry:
            return (entry, None) if _is_utf8(entry) else (None, "bad_entry_id")
    return None, "no_entry_id"


def _is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a crawl can carry lone surrogates such as \\udcff)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Prepared(NamedTuple):
    """A point after ``prepare_points``: what the filters said, its entry, and for a whole point
    that passed them its problem already built (``built``; else None)."""

    point_id: PointId
    type_ok: bool
    grade_ok: bool
    type: Any
    grade_id: Any
    entry: str | None
    orphan: str | None  # why ``entry`` is None
    piece: Piece
    built: Built | Rejected | None


def prepare_points(state: ExportState, points: Iterable[PointFields]) -> list[Prepared]:
    """The per-point work that needs no other point: filters, entry id, and whole problems built.

    This is most of an export's work, and since it does not touch the state's groups it
    can run in any process (``dataprep.pipeline`` shares it between two).
    """
    types, grades = state.types, state.grades
    prepared: list[Prepared] = []
    append = prepared.append
    for point_id, type_, grade_id, entry_id, chunk_id, content, topic in points:
        type_ok = types is None or (type(type_) is str and type_ in types)
        grade_ok = grades is None or (type(grade_id) is str and grade_id in grades)
        entry, orphan = _entry_of(entry_id, chunk_id)
        piece = Piece(chunk_id, content, grade_id if grade_id is not None else "", topic)
        built = None
        if type_ok and grade_ok and entry is not None and not chunk_id:
            built = build_entry(state, entry, [PointPiece(point_id, piece)])
        append(Prepared(point_id, type_ok, grade_ok, type_, grade_id, entry, orphan, piece, built))
    return prepared


def add_prepared(state: ExportState, prepared: Iterable[Prepared]) -> None:
    """Count and group prepared points; keep a whole point's problem unless its entry has more points."""
    pieces, built = state.pieces, state.built
    for point_id, type_ok, grade_ok, type_, grade_id, entry, orphan, piece, problem in prepared:
        state.points_read += 1
        if type_ok:
            state.type_matches += 1
        elif type(type_) is str and len(state.seen_types) < _SEEN_LIMIT:
            state.seen_types.add(type_)
        if grade_ok:
            state.grade_matches += 1
        elif type(grade_id) is str and len(state.seen_grades) < _SEEN_LIMIT:
            state.seen_grades.add(grade_id)
        if not (type_ok and grade_ok):
            state.filtered_out += 1
            if entry is not None:
                state.filtered_entries.add(entry)
            continue
        if entry is None:
            state.orphans.append(Orphan(point_id, orphan))
            continue
        group = pieces.get(entry)
        if group is None:
            pieces[entry] = [PointPiece(point_id, piece)]
            if problem is not None:
                built[entry] = problem
        else:
            group.append(PointPiece(point_id, piece))
            built.pop(entry, None)  # built from one point too early: rebuilt by finish_export


def add_points(state: ExportState, points: Iterable[PointFields]) -> None:
    """Filter and group a page of points; build whole (unchunked) problems at once."""
    add_prepared(state, prepare_points(state, points))


def _representative(points: list[PointPiece]) -> PointId:
    """The point whose vector stands for the problem: its first chunk (or its only point)."""
    if len(points) == 1:
        return points[0].point_id

    def order(point: PointPiece) -> tuple[int, str]:
        chunk_id = point.piece.chunk_id
        try:
            index = chunk_index(chunk_id) if chunk_id else 0
        except ValueError:
            index = 1 << 62
        return index, str(point.point_id)

    return min(points, key=order).point_id


def build_pending(state: ExportState) -> None:
    """Build every entry not built yet (chunked ones, and whole ones that got more points)."""
    built = state.built
    for entry, group in state.pieces.items():
        if entry not in built:
            built[entry] = build_entry(state, entry, group)


def merge_export(state: ExportState, part: ExportState) -> None:
    """Add what another process grouped and built (``part``) to ``state``, as if read here.

    An entry found in both is joined and built again at the end, like any entry whose
    points arrive in several pages.
    """
    state.points_read += part.points_read
    state.filtered_out += part.filtered_out
    state.type_matches += part.type_matches
    state.grade_matches += part.grade_matches
    for seen, more in ((state.seen_types, part.seen_types), (state.seen_grades, part.seen_grades)):
        for value in sorted(more):
            if len(seen) < _SEEN_LIMIT:
                seen.add(value)
    state.filtered_entries |= part.filtered_entries
    state.orphans += part.orphans
    pieces, built = state.pieces, state.built
    for entry, group in part.pieces.items():
        mine = pieces.get(entry)
        if mine is None:
            pieces[entry] = group
            if entry in part.built:
                built[entry] = part.built[entry]
        else:
            mine.extend(group)
            built.pop(entry, None)


def finish_export(
    state: ExportState, val_fraction: float = 0.05, test_fraction: float = 0.05, near_dup: bool = True
) -> Summary:
    """Build the remaining (chunked) problems, drop duplicates and assign each problem its split.

    Of problems with equal questions the smallest ``entry_id`` is kept, so which copy
    survives does not depend on the order Qdrant returned the points in.  With
    ``near_dup`` the summary also lists what the near-duplicate search needs.
    """
    check_fractions(val_fraction, test_fraction)
    build_pending(state)
    built = state.built
    rejected: Counter[str] = Counter()
    rejects: list[Rejected] = []
    kept: dict[bytes, str] = {}
    duplicates: list[tuple[str, bytes]] = []
    for entry in state.filtered_entries:
        if entry in built:
            # Some of its chunks were filtered out (another grade or type): what is left is
            # not the problem that was crawled, whatever else is wrong with it.
            built[entry] = Rejected(entry, "partly_filtered", "some chunks have another type or grade")
    for entry, result in built.items():
        if type(result) is Rejected:
            rejected[result.reason] += 1
            rejects.append(result)
            continue
        digest = result.digest  # type: ignore[union-attr]
        other = kept.get(digest)
        if other is None:
            kept[digest] = entry
        elif entry < other:
            kept[digest] = entry
            duplicates.append((other, digest))
        else:
            duplicates.append((entry, digest))
    for orphan in state.orphans:
        rejected[orphan.reason] += 1
        rejects.append(Rejected(f"point:{orphan.point_id}", orphan.reason))
    rejects.sort(key=lambda r: r.entry_id)
    rows: dict[str, list[Row]] = {name: [] for name in SPLITS}
    split_of: dict[bytes, str] = {}
    for digest, entry in kept.items():
        problem = built[entry]
        name = split_for_bucket(problem.bucket, val_fraction, test_fraction)  # type: ignore[union-attr]
        split_of[digest] = name
        rows[name].append(Row(problem.row_id, entry))  # type: ignore[union-attr]
    for name in SPLITS:
        rows[name].sort()
    state.rows = rows
    state.rejected = rejects
    state.counts = {
        "points_read": state.points_read,
        "entries": len(built) + len(state.orphans),
        "kept": len(kept),
        "filtered_out": state.filtered_out,
        "duplicates": len(duplicates),
        "near_duplicates_moved": 0,
        "rejected": dict(sorted(rejected.items())),
        "splits": {name: len(rows[name]) for name in SPLITS},
    }
    candidates: list[Candidate] = []
    train_points: dict[PointId, str] = {}
    if near_dup:
        pieces = state.pieces
        candidates = [
            Candidate(row.row_id, row.entry, name, _representative(pieces[row.entry]))
            for name in ("validation", "test")
            for row in rows[name]
        ]
        train_entries = [row.entry for row in rows["train"]]
        train_entries += [entry for entry, digest in duplicates if split_of[digest] == "train"]
        train_points = {_representative(pieces[entry]): entry for entry in train_entries}
    examples: dict[str, list[str]] = {}
    for reject in rejects:
        named = examples.setdefault(reject.reason, [])
        if len(named) < _EXAMPLES_PER_REASON:
            named.append(reject.entry_id)
    filters = {
        "type": sorted(state.types) if state.types else [],
        "grade_id": sorted(state.grades) if state.grades else [],
        "type_matches": state.type_matches,
        "grade_matches": state.grade_matches,
        "matched": state.points_read - state.filtered_out,
        "other_types": sorted(state.seen_types),
        "other_grades": sorted(state.seen_grades),
    }
    return Summary(state.counts, candidates, train_points, examples, filters)


def move_to_train(state: ExportState, row_ids: Iterable[str]) -> None:
    """Move validation/test problems into train (near-duplicates of training problems)."""
    moving = set(row_ids)
    if not moving:
        return
    for name in ("validation", "test"):
        staying = []
        for row in state.rows[name]:
            (state.rows["train"] if row.row_id in moving else staying).append(row)
        state.rows[name] = staying
    state.rows["train"].sort()
    state.counts["near_duplicates_moved"] += len(moving)
    state.counts["splits"] = {name: len(state.rows[name]) for name in SPLITS}


def split_lines(state: ExportState, name: str) -> Iterable[bytes]:
    """The JSON lines of one split, in row-id order."""
    built = state.built
    for row in state.rows[name]:
        yield built[row.entry].line  # type: ignore[union-attr]


def write_splits(state: ExportState, folder: Path) -> dict[str, str]:
    """Write ``<split>.jsonl`` files into ``folder``; returns the sha256 of each."""
    files: dict[str, str] = {}
    for name in SPLITS:
        digest = hashlib.sha256()
        with open(Path(folder) / f"{name}.jsonl", "wb") as fh:
            batch: list[bytes] = []
            for line in split_lines(state, name):
                batch.append(line)
                if len(batch) == 4096:
                    data = b"".join(batch)
                    fh.write(data)
                    digest.update(data)
                    batch = []
            data = b"".join(batch)
            fh.write(data)
            digest.update(data)
        files[f"{name}.jsonl"] = digest.hexdigest()
    return files
