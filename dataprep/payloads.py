"""Turn MathPal feature-pipeline payloads into clean (question, solution, answer) problems.

The feature pipeline stores one exam problem per ``entry_id``; long problems are
split into several points whose ``chunk_id`` is ``<entry_id>_<i>``, with the end of
one chunk repeated at the start of the next (the chunker's overlap).  Crawled text
carries HTML tags, entities and NFD-decomposed Vietnamese diacritics.  Everything
here is pure functions so the rules can be tested without a database.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

QUESTION_MARK = "### QUESTION:"
SOLUTION_MARK = "#### SOLUTION:"

# Shortest repeated text we accept as chunk overlap: shorter coincidences (a space,
# a digit) are more likely chance than the chunker's overlap.
MIN_CHUNK_OVERLAP = 8

# A tag starts with a letter (or /letter): "3/4 < 5/6 và 7/8 > 2/3" is mathematics, not HTML.
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
_BREAK_TAG_RE = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u3000]+")
_FINAL_ANSWER_RE = re.compile(r"(?:Đáp số|Đáp án)\s*[:：]\s*(.+)", re.IGNORECASE)
_CHUNK_SUFFIX_RE = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class Problem:
    """One cleaned problem, ready to become a chat example."""

    entry_id: str
    grade_id: str
    question: str
    solution: str
    answer: str
    topic: str | None = None


@dataclass
class Rejected:
    """Why an entry could not become a problem (counted in the manifest, never raised)."""

    entry_id: str
    reason: str
    detail: str = field(default="")


def clean_text(text: str) -> str:
    """Strip HTML, unescape entities, NFC-normalise and collapse spaces; keep line breaks.

    Crawls mix NFD diacritics (``a`` + combining accent) with NFC; without NFC two
    identical questions would not compare equal and the tokenizer would see two
    spellings of every word.
    """
    text = _BREAK_TAG_RE.sub("\n", text)
    text = _TAG_RE.sub("", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    # Collapse runs of blank lines to one, keep single line breaks as written.
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).strip()


def normalise_question(question: str) -> str:
    """The key under which two questions count as the same problem (dedup and split hash)."""
    return " ".join(clean_text(question).casefold().split())


def chunk_index(chunk_id: str) -> int:
    """Numeric position of a chunk from its ``<entry_id>_<i>`` id (so chunk 10 sorts after 9)."""
    match = _CHUNK_SUFFIX_RE.search(chunk_id) if isinstance(chunk_id, str) else None
    if match is None:
        raise ValueError(f"chunk_id {chunk_id!r} has no numeric _<i> suffix")
    return int(match.group(1))


def merge_overlap(left: str, right: str, min_overlap: int = MIN_CHUNK_OVERLAP) -> str:
    """Concatenate two consecutive chunks, keeping text they both repeat only once."""
    longest = min(len(left), len(right))
    for size in range(longest, min_overlap - 1, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return left + right


def join_chunks(chunks: list[tuple[int, str]]) -> str:
    """Join ``(index, text)`` chunks in index order, removing the chunker's overlap."""
    ordered = [text for _, text in sorted(chunks, key=lambda c: c[0])]
    joined = ordered[0] if ordered else ""
    for text in ordered[1:]:
        joined = merge_overlap(joined, text)
    return joined


def split_content(content: str) -> tuple[str, str]:
    """Split ``### QUESTION: … #### SOLUTION: …`` into its two parts (either may be empty)."""
    q_at = content.find(QUESTION_MARK)
    s_at = content.find(SOLUTION_MARK)
    if s_at == -1:
        question = content[q_at + len(QUESTION_MARK):] if q_at != -1 else ""
        return question.strip(), ""
    question = content[q_at + len(QUESTION_MARK):s_at] if q_at != -1 and q_at < s_at else ""
    return question.strip(), content[s_at + len(SOLUTION_MARK):].strip()


def reference_answer(solution: str) -> str | None:
    """The text of the last ``Đáp số:`` (or ``Đáp án:``) line of a reference solution."""
    found = None
    for line in solution.split("\n"):
        match = _FINAL_ANSWER_RE.search(line.replace("*", ""))
        if match:
            found = match.group(1).strip().rstrip(".").strip()
    return found or None


def build_problem(entry_id: str, points: list[dict[str, Any]]) -> Problem | Rejected:
    """Assemble one entry's points into a ``Problem``, or say why it cannot be one."""
    chunks: list[tuple[int, str]] = []
    for payload in points:
        content = payload.get("content")
        if not isinstance(content, str):
            return Rejected(entry_id, "content_not_string", type(content).__name__)
        chunk_id = payload.get("chunk_id")
        try:
            index = chunk_index(chunk_id) if chunk_id else 0
        except ValueError as err:
            return Rejected(entry_id, "bad_chunk_id", str(err))
        chunks.append((index, content))
    content = join_chunks(chunks)
    if not content.strip():
        return Rejected(entry_id, "empty_content")
    raw_question, raw_solution = split_content(content)
    question, solution = clean_text(raw_question), clean_text(raw_solution)
    if not question:
        return Rejected(entry_id, "no_question")
    if not solution:
        return Rejected(entry_id, "no_solution")
    answer = reference_answer(solution)
    if answer is None:
        return Rejected(entry_id, "no_final_answer")
    first = points[0]
    metadata = first.get("metadata") if isinstance(first.get("metadata"), dict) else {}
    return Problem(
        entry_id=entry_id,
        grade_id=str(first.get("grade_id", "")),
        question=question,
        solution=solution,
        answer=answer,
        topic=metadata.get("topic"),
    )
