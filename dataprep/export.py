"""Export problems as chat JSONL splits plus a manifest, atomically.

The output directory is written in a sibling temporary folder and renamed into
place, so a crash or kill at any moment leaves the previous export whole.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atomic_files import staged_dir
from dataprep.payloads import Problem, Rejected, build_problem, normalise_question
from dataprep.splits import SPLITS, assign_split

DEFAULT_SYSTEM_PROMPT = (
    "Bạn là MathPal, gia sư toán thân thiện cho học sinh lớp 5 và lớp 6. "
    "Hãy giải bài toán từng bước bằng tiếng Việt, giải thích ngắn gọn, dễ hiểu, "
    "và kết thúc bằng một dòng 'Đáp số: ...'."
)


@dataclass
class ExportResult:
    """What one export produced: the per-split rows and the counts for the manifest."""

    splits: dict[str, list[dict[str, Any]]]
    counts: dict[str, Any]
    rejected_examples: list[Rejected] = field(default_factory=list)


def to_example(problem: Problem, system_prompt: str) -> dict[str, Any]:
    """One JSONL row: ids and answer for evaluation, ``messages`` for Axolotl's chat_template."""
    row: dict[str, Any] = {
        "id": hashlib.sha256(normalise_question(problem.question).encode("utf-8")).hexdigest()[:16],
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


def group_entries(
    payloads: Iterable[dict[str, Any]], types: set[str] | None, grades: set[str] | None
) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """Group points by ``entry_id`` after the type/grade filters; returns (groups, read, filtered)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    read = filtered = 0
    for payload in payloads:
        read += 1
        if (types and payload.get("type") not in types) or (grades and payload.get("grade_id") not in grades):
            filtered += 1
            continue
        entry_id = payload.get("entry_id") or payload.get("chunk_id", "").rsplit("_", 1)[0]
        groups[str(entry_id)].append(payload)
    return groups, read, filtered


def build_splits(
    payloads: Iterable[dict[str, Any]],
    *,
    types: set[str] | None = None,
    grades: set[str] | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> ExportResult:
    """Clean, deduplicate and split the payloads of a collection (pure: no I/O)."""
    groups, read, filtered = group_entries(payloads, types, grades)
    rejected: Counter[str] = Counter()
    rejected_examples: list[Rejected] = []
    kept: dict[str, Problem] = {}
    duplicates = 0
    # Sorted entry ids make "which duplicate is kept" independent of scroll order.
    for entry_id in sorted(groups):
        built = build_problem(entry_id, groups[entry_id])
        if isinstance(built, Rejected):
            rejected[built.reason] += 1
            rejected_examples.append(built)
            continue
        key = normalise_question(built.question)
        if key in kept:
            duplicates += 1
            continue
        kept[key] = built
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for key in sorted(kept):
        name = assign_split(key, val_fraction, test_fraction)
        splits[name].append(to_example(kept[key], system_prompt))
    for rows in splits.values():
        rows.sort(key=lambda row: row["id"])
    counts = {
        "points_read": read,
        "entries": len(groups),
        "kept": len(kept),
        "filtered_out": filtered,
        "duplicates": duplicates,
        "near_duplicates_moved": 0,
        "rejected": dict(sorted(rejected.items())),
        "splits": {name: len(rows) for name, rows in splits.items()},
    }
    return ExportResult(splits=splits, counts=counts, rejected_examples=rejected_examples)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Rows as UTF-8 JSON lines with sorted keys, so equal data gives equal bytes."""
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode("utf-8")


def write_export(result: ExportResult, out_dir: Path, source: dict[str, Any]) -> dict[str, Any]:
    """Write the splits and ``manifest.json`` into ``out_dir`` atomically; returns the manifest."""
    with staged_dir(Path(out_dir)) as staging:
        files: dict[str, str] = {}
        for name, rows in result.splits.items():
            data = jsonl_bytes(rows)
            (staging / f"{name}.jsonl").write_bytes(data)
            files[f"{name}.jsonl"] = hashlib.sha256(data).hexdigest()
        manifest = {
            "source": {**source, "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "counts": result.counts,
            "files": files,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return manifest
