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
from typing import Any, NamedTuple

from mathpal_common.notation import find_labelled_answer

QUESTION_MARK = "### QUESTION:"
SOLUTION_MARK = "#### SOLUTION:"

# Shortest repeated text we accept as chunk overlap: shorter coincidences (a space,
# a digit) are more likely chance than the chunker's overlap.
MIN_CHUNK_OVERLAP = 8

# A tag starts with a letter (or /letter): "3/4 < 5/6 và 7/8 > 2/3" is mathematics, not HTML.
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
_BREAK_TAG_RE = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u3000]+")
# Spaces that _SPACES_RE would change even when alone (a lone " " it would leave as is).
_ODD_SPACE_RE = re.compile(r"[\t\u00a0\u2000-\u200b\u202f\u3000]")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
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
    spellings of every word.  Each step runs only when the text can need it (no ``<``,
    no tag to strip): most crawled text is already clean, and this runs twice per point
    of an export, so the shortcuts are most of ``prepare-data``'s own time.  The result
    is exactly that of applying every step (tests compare against that reference).
    """
    if "<" in text:
        text = _BREAK_TAG_RE.sub("\n", text)
        text = _TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "  " in text or _ODD_SPACE_RE.search(text):
        text = _SPACES_RE.sub(" ", text)
    text = "\n".join([line.strip() for line in text.split("\n")])
    # Collapse runs of blank lines to one, keep single line breaks as written.
    if "\n\n\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


def normalise_question(question: str) -> str:
    """The key under which two questions count as the same problem (dedup and split hash)."""
    return " ".join(clean_text(question).casefold().split())


def question_key(question: str) -> str:
    """``normalise_question`` of a question that ``clean_text`` already cleaned, without cleaning it again.

    Cleaning is idempotent unless the cleaned text still holds ``&`` or ``<`` (``&amp;lt;``
    becomes ``&lt;`` then ``<``): only then is the full normalisation repeated, so the key,
    and with it every problem's split, is the same as ``normalise_question`` gives.
    """
    if "&" in question or "<" in question:
        return normalise_question(question)
    return " ".join(question.casefold().split())


def chunk_index(chunk_id: str) -> int:
    """Numeric position of a chunk from its ``<entry_id>_<i>`` id (so chunk 10 sorts after 9)."""
    match = _CHUNK_SUFFIX_RE.search(chunk_id) if isinstance(chunk_id, str) else None
    if match is None:
        raise ValueError(f"chunk_id {chunk_id!r} has no numeric _<i> suffix")
    return int(match.group(1))


def merge_overlap(left: str, right: str, min_overlap: int = MIN_CHUNK_OVERLAP) -> str:
    """Concatenate two consecutive chunks, keeping text they both repeat only once.

    The longest overlap wins; candidates are only the places where ``right``'s first
    ``min_overlap`` characters occur near the end of ``left`` (found by ``str.find``).
    """
    longest = min(len(left), len(right))
    if longest < max(min_overlap, 1):
        return left + right
    probe = right[: max(min_overlap, 1)]
    at = left.find(probe, len(left) - longest)
    while at != -1 and len(left) - at >= min_overlap:
        if right.startswith(left[at:]):
            return left + right[len(left) - at :]
        at = left.find(probe, at + 1)
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
        question = content[q_at + len(QUESTION_MARK) :] if q_at != -1 else ""
        return question.strip(), ""
    question = content[q_at + len(QUESTION_MARK) : s_at] if q_at != -1 and q_at < s_at else ""
    return question.strip(), content[s_at + len(SOLUTION_MARK) :].strip()


def reference_answer(solution: str) -> str | None:
    """The final answer of a reference solution: its last labelled line (``mathpal_common.notation``)."""
    return find_labelled_answer(solution)


class Piece(NamedTuple):
    """What an export keeps of one point to build its problem; the rest of the payload (url,
    crawl time, ...) is dropped as soon as the point is read.  Values are as stored: a
    broken crawl can hold any type, and ``assemble_problem`` says why it is rejected."""

    chunk_id: Any
    content: Any
    grade_id: Any
    topic: Any


class _Chunk(NamedTuple):
    """A piece and its position in the entry (the ``_<i>`` of its chunk_id; 0 without one)."""

    index: int
    piece: Piece


def _chunk_order(chunk: _Chunk) -> tuple[int, str]:
    return chunk.index, chunk.piece.content


def _meta_order(piece: Piece) -> tuple[str, str]:
    return repr(piece.grade_id), repr(piece.topic)


def assemble_problem(entry_id: str, pieces: list[Piece]) -> Problem | Rejected:
    """Join an entry's chunks in ``_<i>`` order and split, clean and check the problem.

    A point without ``chunk_id`` is chunk 0.  The same chunk stored twice with the same
    text counts once; two different texts for one chunk, or a gap in the numbering,
    reject the entry: joining them would make up a problem that was never crawled.
    Grade and topic come from the first chunk, whatever order Qdrant returned them in.
    """
    if len(pieces) == 1 and not pieces[0].chunk_id and isinstance(pieces[0].content, str):
        return _whole_problem(entry_id, pieces[0])
    not_strings = sorted({type(piece.content).__name__ for piece in pieces if not isinstance(piece.content, str)})
    if not_strings:
        return Rejected(entry_id, "content_not_string", ", ".join(not_strings))
    chunks: list[_Chunk] = []
    bad_ids: list[str] = []
    for piece in pieces:
        try:
            chunks.append(_Chunk(chunk_index(piece.chunk_id) if piece.chunk_id else 0, piece))
        except ValueError as err:
            bad_ids.append(str(err))
    if bad_ids:
        return Rejected(entry_id, "bad_chunk_id", min(bad_ids))
    if len(chunks) > 1:
        chunks.sort(key=_chunk_order)
        unique = [chunks[0]]
        for chunk in chunks[1:]:
            last = unique[-1]
            if chunk.index == last.index:
                if chunk.piece.content != last.piece.content:
                    return Rejected(entry_id, "conflicting_chunks", f"two different texts for chunk {chunk.index}")
                if _meta_order(chunk.piece) < _meta_order(last.piece):  # same chunk twice: the same pick in any order
                    unique[-1] = chunk
                continue
            if chunk.index != last.index + 1:
                return Rejected(entry_id, "missing_chunk", f"chunks {last.index} and {chunk.index} are not consecutive")
            unique.append(chunk)
        chunks = unique
    content = join_chunks([(chunk.index, chunk.piece.content) for chunk in chunks])
    return _whole_problem(entry_id, chunks[0].piece._replace(chunk_id=None, content=content))


def _whole_problem(entry_id: str, piece: Piece) -> Problem | Rejected:
    """Split, clean and check the full text of one problem (its chunks already joined)."""
    content, grade_id = piece.content, piece.grade_id
    if grade_id is not None and type(grade_id) not in (str, int):
        return Rejected(entry_id, "bad_grade_id", f"grade_id is a {type(grade_id).__name__}")
    if not content.strip():
        return Rejected(entry_id, "empty_content")
    raw_question, raw_solution = split_content(content)
    question = clean_text(raw_question)
    if not question:
        return Rejected(entry_id, "no_question")
    solution = clean_text(raw_solution)
    if not solution:
        return Rejected(entry_id, "no_solution")
    answer = reference_answer(solution)
    if answer is None:
        return Rejected(entry_id, "no_final_answer")
    return Problem(
        entry_id=entry_id,
        grade_id=str(grade_id if grade_id is not None else ""),
        question=question,
        solution=solution,
        answer=answer,
        topic=piece.topic,
    )
