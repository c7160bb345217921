"""The Vietnamese answer notation: the final-answer label, and numbers read and written as pupils do.

One home for both, because three stages depend on the same decisions and must not disagree:

* ``dataprep`` takes a reference solution's final answer from its labelled line (an entry
  without one is rejected);
* ``evals`` grades a model's labelled final answer, and the clarity metric asks whether
  the response has such a line;
* the sample corpus writes its solutions with the label and its numbers in this notation.

**The label** (``find_labelled_answer``). ``Đáp số`` or ``Đáp án``, any case, with markdown
emphasis (``*``, ``_``) around or inside it, in one of these forms:

* followed by a colon (``:`` or the full-width ``：``), anywhere on a line:
  ``Đáp số: 12``, ``**Đáp số:** 12``, ``__Đáp số__: 12``, ``Tổng là 12. Đáp số: 12``;
* followed by ``là`` (and perhaps a colon), anywhere on a line: ``Vậy đáp số là 12``;
* bare, when it opens the line (after list or quote markers, or ``Vậy``) and the answer
  starts with a number: ``Đáp số 12``, ``- Đáp án 3/4``;
* alone on its line: the answer is the next non-empty line.

The last labelled line of a text wins (a model may restate an answer before correcting it).
Anything else (``đáp số của bài toán ...`` mid-sentence) is not a label.

**Numbers** (``find_numbers``, ``format_number``). Decimal comma (``12,5``), thousands
separated by dots or spaces (``1.200``, ``1 200``; a dot followed by exactly three digits
is a separator, so ``1,200`` is 1.2), ``a/b`` fractions and mixed numbers ``2 1/2``, and
the scale words ``nghìn``/``ngàn``/``triệu``/``tỉ``/``tỷ``.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "ANSWER_LABEL",
    "Number",
    "answer_line",
    "decimal_places",
    "find_labelled_answer",
    "find_numbers",
    "format_fraction",
    "format_number",
    "has_answer_label",
    "literal_to_float",
    "number_at",
    "normalise_symbols",
]

# The label our solutions and prompts use (the others are accepted, never written).
ANSWER_LABEL = "Đáp số"

# --------------------------------------------------------------------------- the label

# "đáp số" / "đáp án" as words: not inside a longer word, but emphasis ("__Đáp số__") may touch it.
_LABEL_RE = re.compile(r"(?<![^\W_])đáp[^\S\n]*(?:số|án)(?![^\W_])", re.IGNORECASE)
# What may follow the label: emphasis and spaces, then "là" and/or a colon.
_AFTER_LABEL_RE = re.compile(r"[*_\s]*(?:(?P<la>là)(?![^\W_])[*_\s]*)?(?P<colon>[:：])?[*_\s]*", re.IGNORECASE)
# What may come before a bare label on its line: list/quote/heading markers, emphasis, "Vậy".
_LINE_OPENING_RE = re.compile(r"[\s>#+\-*_]*(?:vậy[,\s]\s*[*_]*)?", re.IGNORECASE)
# Characters no answer is written with (NUL and the other C0 controls a broken crawl can carry).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A bare label's answer must start like a number: "Đáp số 12", not "Đáp số của bài ...".
_NUMBER_START_RE = re.compile(r"[-\u2212\u2013]?\s*[0-9$\\]")


def _after_label(line: str) -> str | None:
    """Text after the line's last final-answer label ("" when the label ends the line); None without one."""
    for match in reversed(list(_LABEL_RE.finditer(line))):
        after = _AFTER_LABEL_RE.match(line, match.end())
        rest = line[after.end() :]
        if after.group("la") or after.group("colon"):
            return rest
        opens_line = _LINE_OPENING_RE.fullmatch(line, 0, match.start()) is not None
        if opens_line and (not rest.strip() or _NUMBER_START_RE.match(rest)):
            return rest
    return None


def _clean_answer(text: str) -> str:
    """An answer without markdown emphasis, control characters and closing punctuation (``**12 kg**.`` → ``12 kg``)."""
    text = _CONTROL_RE.sub("", text.replace("**", "").replace("__", ""))
    return text.strip().strip("*_").strip().rstrip(".;").strip()


def find_labelled_answer(text: str) -> str | None:
    """The final answer of the last labelled line of ``text`` (forms in the module docstring), or None.

    A label alone on its line takes the next non-empty line as the answer.
    """
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        rest = _after_label(lines[index])
        if rest is None:
            continue
        answer = _clean_answer(rest)
        if answer:
            return answer
        following = (_clean_answer(line) for line in lines[index + 1 :])
        return next((line for line in following if line), None)
    return None


def has_answer_label(text: str) -> bool:
    """Whether some line of ``text`` carries a final-answer label (with or without an answer after it)."""
    return any(_after_label(line) is not None for line in text.splitlines())


def answer_line(answer: str) -> str:
    """The closing line of a solution, as our data writes it: ``Đáp số: <answer>``."""
    return f"{ANSWER_LABEL}: {answer}"


# --------------------------------------------------------------------------- reading numbers

# One unsigned number literal in Vietnamese (or English-style) notation.  Order matters: the
# grouped forms come first so that "1.200" is read as 1200 rather than 1.2.  A group may not
# start with 0, so an English decimal such as "0.125" stays 0.125.
_NUM = (
    r"(?:"
    r"[1-9][0-9]{0,2}(?:\.[0-9]{3})+(?![0-9])(?:,[0-9]+)?"  # 1.234.567,5
    r"|[1-9][0-9]{0,2}(?: [0-9]{3})+(?![0-9])(?:,[0-9]+)?"  # 1 234 567,5
    r"|[1-9][0-9]{0,2}(?:,[0-9]{3})+\.[0-9]+"  # 1,234.5 (English)
    r"|[1-9][0-9]{0,2}(?:,[0-9]{3}){2,}(?![0-9])"  # 1,234,567 (English)
    r"|[0-9]+(?:[.,][0-9]+)?"  # 12 / 12,5 / 3.5
    r")"
)

# A signed number, optionally a fraction "3/4" or a mixed number "2 1/2".  It may not start
# right after a digit, separator or letter, so the "2" of "m2" / "cm2" is part of a unit.
VALUE_RE = re.compile(
    r"(?<![0-9.,])(?<![^\W\d_])"
    r"(?:(?P<sign>-) ?)?"
    r"(?:(?P<whole>[0-9]+) (?=[0-9]+ ?/ ?[0-9]))?"
    rf"(?P<num>{_NUM})"
    rf"(?: ?/ ?(?P<den>{_NUM}))?"
)

# Vietnamese number words that scale the number before them ("1,5 triệu đồng").
_MULTIPLIERS = {"nghìn": 1e3, "ngàn": 1e3, "triệu": 1e6, "tỉ": 1e9, "tỷ": 1e9}
_MULTIPLIER_RE = re.compile(r"\s*(nghìn|ngàn|triệu|tỉ|tỷ)(?!\w)", re.IGNORECASE)


class Number(NamedTuple):
    """A number found in text; ``raw`` is before scaling by nghìn/triệu/tỉ."""

    value: float
    raw: float
    multiplier: float
    start: int
    end: int
    is_fraction: bool


def normalise_symbols(text: str) -> str:
    """Unicode minus and en dash to '-', non-breaking and thin spaces to ' '.

    Every replacement is one character for one, so match positions stay valid."""
    return re.sub("[\u2212\u2013]", "-", re.sub("[\u00a0\u2009\u202f]", " ", text))


def find_numbers(text: str) -> list[Number]:
    """Every number in ``text`` (after ``normalise_symbols``), in order."""
    found = (number_at(text, match.start()) for match in VALUE_RE.finditer(text))
    return [number for number in found if number is not None]


def number_at(text: str, position: int) -> Number | None:
    """The number that starts exactly at ``position`` of ``text`` (after ``normalise_symbols``), if any."""
    match = VALUE_RE.match(text, position)
    raw = _match_to_float(match) if match else None
    if raw is None:
        return None
    multiplier_match = _MULTIPLIER_RE.match(text, match.end())
    multiplier = _MULTIPLIERS[multiplier_match.group(1).lower()] if multiplier_match else 1.0
    return Number(raw * multiplier, raw, multiplier, match.start(), match.end(), match.group("den") is not None)


def _match_to_float(match: re.Match[str]) -> float | None:
    """Value of one ``VALUE_RE`` match; None for a zero denominator."""
    value = literal_to_float(match.group("num"))
    if match.group("den") is not None:
        denominator = literal_to_float(match.group("den"))
        if not denominator:
            return None
        value /= denominator
    if match.group("whole") is not None:
        value += float(match.group("whole"))
    return -value if match.group("sign") else value


def literal_to_float(literal: str) -> float:
    """Float value of one unsigned literal matched by ``VALUE_RE``'s ``num`` group."""
    return float(_normalise_separators(literal))


def _normalise_separators(literal: str) -> str:
    """Vietnamese/English number literal → Python float syntax.

    A comma is a decimal comma (Vietnamese), so the ambiguous "1,200" is 1.2.  A dot is a
    thousands separator only when followed by groups of exactly three digits ("1.200",
    "3.500.000"); "3.5" is an English decimal point, as models trained on English data write.
    When both appear, the last one is the decimal separator.
    """
    literal = literal.replace(" ", "")
    if "," in literal and "." in literal:
        if literal.rfind(",") > literal.rfind("."):
            return literal.replace(".", "").replace(",", ".")
        return literal.replace(",", "")
    if "," in literal:
        if re.fullmatch(r"[1-9][0-9]{0,2}(?:,[0-9]{3}){2,}", literal):
            return literal.replace(",", "")
        return literal.replace(",", ".")
    if re.fullmatch(r"[1-9][0-9]{0,2}(?:\.[0-9]{3})+", literal):
        return literal.replace(".", "")
    return literal


# --------------------------------------------------------------------------- writing numbers

# More decimals than this never appear in a grade 5-6 answer; a value that would need more
# is a bug in whatever computed it, so format_number refuses it.
MAX_DECIMALS = 3


def format_number(x: int | float | Fraction | Decimal) -> str:
    """Vietnamese notation: ``1.234,5`` (dot thousands separator from 1000 up, decimal comma).

    Exact values (int, Fraction, Decimal) must be terminating decimals with at most
    ``MAX_DECIMALS`` places, otherwise ValueError: rounding silently would print a wrong
    number in a solution.  Floats are rounded to ``MAX_DECIMALS`` places first, since their
    binary value is rarely the decimal that was meant (0.1 + 0.2).
    """
    if isinstance(x, bool) or not isinstance(x, (int, float, Fraction, Decimal)):
        raise TypeError(f"format_number needs a number, got {type(x).__name__}")
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"cannot format {x!r}")
        step = Decimal(1).scaleb(-MAX_DECIMALS)
        value = Fraction(Decimal(repr(x)).quantize(step, rounding=ROUND_HALF_UP))
    else:
        if isinstance(x, Decimal) and not x.is_finite():
            raise ValueError(f"cannot format {x!r}")
        value = Fraction(x)
    places = decimal_places(value)
    if places > MAX_DECIMALS:
        raise ValueError(f"{value} needs {places} decimals (at most {MAX_DECIMALS})")
    sign = "-" if value < 0 else ""
    scaled = int(abs(value) * 10**places)
    whole, fraction = divmod(scaled, 10**places)
    text = f"{whole:,}".replace(",", ".")
    if fraction:
        text += "," + str(fraction).rjust(places, "0").rstrip("0")
    return sign + text


def decimal_places(value: Fraction) -> int:
    """Decimal places needed to write ``value`` exactly (ValueError if it never terminates)."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        raise ValueError(f"{value} is not a terminating decimal")
    return max(twos, fives)


def format_fraction(x: int | Fraction) -> str:
    """A reduced fraction as ``a/b`` (``-a/b`` when negative), an integer as a plain number."""
    value = Fraction(x)
    if value.denominator == 1:
        return format_number(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}{format_number(abs(value.numerator))}/{value.denominator}"
