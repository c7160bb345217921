"""Grade a model's response against the gold final answer of a Vietnamese math word problem.

Vietnamese pupils (and the gold answers of our data) write numbers in Vietnamese notation:
decimal comma (``12,5``), dot or space thousands separators (``1.200``, ``1 200``) and a unit
after the number (``72 học sinh``, ``2,75 m²``).  Off-the-shelf graders such as math-verify read
``1.200`` as 1.2 and ``\\boxed{12,5}`` as the set {12, 5}, so we normalise first and compare
numbers ourselves; math-verify is only used for answers that are expressions, not plain numbers.
The label and the number notation are ``mathpal_common.notation``'s, shared with data prep.

Typical use::

    predicted = extract_final_answer(response)
    correct = answers_match(predicted, gold)
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata

from mathpal_common.notation import (
    VALUE_RE,
    Number,
    find_labelled_answer,
    find_numbers,
    literal_to_float,
    normalise_symbols,
)

__all__ = ["extract_final_answer", "parse_number", "answers_match"]

_REL_TOL = 1e-6
_ABS_TOL = 1e-9

# LaTeX commands whose argument is plain text to keep (units, bold answers).
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SHORT_FRAC_RE = re.compile(r"\\[dt]?frac\s*([0-9])\s*([0-9])")
_SIMPLE_NUMBER_RE = re.compile(r"\s*-?\s*[0-9][0-9., ]*")

# Characters that, next to a number, mean it is part of an expression rather than a plain
# answer: "\sqrt{4}", "2\pi", "3 × 4", "2^3".
_EXPR_BEFORE = set("\\{}^√π*×·+/")
_EXPR_AFTER = set("\\^√π*×·+")


# --------------------------------------------------------------------------- extraction


def extract_final_answer(response: str) -> str | None:
    """Return the final answer of a model response, or None for an empty response.

    The tutor is trained to end with an "Đáp số: …" line, so the last such line wins (a model
    may restate a wrong intermediate "Đáp số" before correcting itself).  Models trained on
    English data may use ``\\boxed{…}`` instead; failing both, the last number is the best guess.
    """
    if not response or not response.strip():
        return None
    text = unicodedata.normalize("NFC", response)
    for extract in (find_labelled_answer, _last_boxed, _last_number):
        answer = extract(text)
        if answer:
            return answer
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` with balanced braces, if any."""
    contents = [content for _, _, content in _boxed_spans(text)]
    return contents[-1].strip() if contents else None


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed{…}`` / ``\\fbox{…}``; nested braces
    such as ``\\boxed{\\frac{3}{4}}`` are why a regex is not enough."""
    spans = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, position = 1, match.end()
        while position < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            position += 1
        if depth == 0:
            spans.append((match.start(), position, text[match.end() : position - 1]))
    return spans


def _last_number(text: str) -> str | None:
    """The last number literal of the response (fraction included)."""
    normalised = normalise_symbols(text)
    matches = list(VALUE_RE.finditer(normalised))
    return matches[-1].group(0).strip() if matches else None


# --------------------------------------------------------------------------- normalisation


def _normalise(text: str) -> str:
    """Reduce an answer string to plain text that the number regex can read."""
    text = unicodedata.normalize("NFC", text).replace("**", "")
    labelled = find_labelled_answer(text)
    if labelled is not None:
        text = labelled
    text = normalise_symbols(_unwrap_latex(text))
    text = _take_right_hand_side(text)
    return re.sub(r"\s+", " ", text).strip().rstrip(".;").strip()


def _unwrap_latex(text: str) -> str:
    """Remove LaTeX wrappers that do not change the value: ``$…$``, ``\\(…\\)``, ``\\boxed``,
    ``\\text``, spacing commands; turn numeric ``\\frac{a}{b}`` into ``a/b``."""
    for start, end, content in reversed(_boxed_spans(text)):
        text = text[:start] + content + text[end:]
    previous = None
    while previous != text:  # nested \text{\textbf{…}}
        previous, text = text, _TEXT_CMD_RE.sub(r"\1", text)
    text = _FRAC_RE.sub(_frac_to_slash, text)
    text = _SHORT_FRAC_RE.sub(r" \1/\2", text)
    text = re.sub(r"\{([,.])\}", r"\1", text)  # 12{,}5
    text = re.sub(r"\^\s*\{?\\circ\}?", "°", text)
    text = text.replace("\\%", "%").replace("\\!", "")
    text = re.sub(r"\\[,;: ]|~", " ", text)
    text = re.sub(r"\\(?:left|right|displaystyle)\b|\\[()\[\]]|\$", "", text)
    return text


def _frac_to_slash(match: re.Match[str]) -> str:
    """``\\frac{3}{4}`` → `` 3/4`` (leading space keeps ``2\\frac{1}{2}`` a mixed number);
    non-numeric fractions stay LaTeX for math-verify, since ``x+1/2`` would change meaning."""
    numerator, denominator = match.group(1), match.group(2)
    if _SIMPLE_NUMBER_RE.fullmatch(numerator) and _SIMPLE_NUMBER_RE.fullmatch(denominator):
        return f" {numerator.strip()}/{denominator.strip()}"
    return match.group(0)


def _take_right_hand_side(text: str) -> str:
    """Keep what follows the last '=' or '≈' ("x = 9", "S = 12 × 5 = 60 cm²" → the result)."""
    parts = re.split(r"[=≈]", text)
    return parts[-1] if parts[-1].strip() else text


def _normalise_text(text: str) -> str:
    """NFC, casefold, collapsed whitespace: the last-resort comparison for non-numeric golds."""
    text = unicodedata.normalize("NFC", text).casefold()
    return re.sub(r"\s+", " ", text).strip().rstrip(".;").strip()


# --------------------------------------------------------------------------- numbers


def parse_number(text: str) -> float | None:
    """Numeric value of an answer written in Vietnamese notation, or None without a number.

    Units and other words after the number are ignored, whatever they are, since a fixed unit
    list would never be complete.  For compound answers ("2 giờ 30 phút") this is the first
    number only; ``answers_match`` compares all of them.  Percent signs are dropped: a
    percentage is compared with a percentage, so "25%" is 25, not 0.25.
    """
    numbers = find_numbers(_normalise(text))
    return numbers[0].value if numbers else None


def _is_plain(text: str, number: Number) -> bool:
    """Whether the first number stands alone (with words/units around it) rather than being
    part of an expression such as ``\\sqrt{4}`` or ``2\\pi``, which needs math-verify."""
    before = text[: number.start]
    after = text[number.end :].lstrip()
    if any(char in _EXPR_BEFORE for char in before):
        return False
    return not after or after[0] not in _EXPR_AFTER


def _numbers_close(predicted: Number, gold: Number) -> bool:
    """Equal values; or equal numbers where only one side says nghìn/triệu/tỉ, because a gold
    "100" to "bao nhiêu nghìn đồng?" is right when the pupil writes "100 nghìn đồng"."""
    if math.isclose(predicted.value, gold.value, rel_tol=_REL_TOL, abs_tol=_ABS_TOL):
        return True
    one_scaled = predicted.multiplier != gold.multiplier and 1.0 in (predicted.multiplier, gold.multiplier)
    return one_scaled and math.isclose(predicted.raw, gold.raw, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def _number_lists_match(predicted: list[Number], gold: list[Number]) -> bool:
    """The prediction's leading numbers equal all the gold's numbers, so compound golds
    ("2 giờ 30 phút") need every part, and a restated form after the answer
    ("12,5 kg (12 500 g)") does not hurt."""
    return len(predicted) >= len(gold) and all(_numbers_close(p, g) for p, g in zip(predicted, gold))


# --------------------------------------------------------------------------- matching


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted final answer (see ``extract_final_answer``) equals the gold answer.

    Plain numbers are compared numerically after Vietnamese normalisation (relative tolerance
    1e-6), units ignored.  Expressions go to math-verify, fed the normalised text so that it
    never sees a decimal comma or a thousands dot.  Identical normalised text always matches,
    which covers golds without numbers ("tam giác đều").
    """
    if predicted is None or not predicted.strip():
        return False
    pred_norm, gold_norm = _normalise(predicted), _normalise(gold)
    pred_text, gold_text = _normalise_text(pred_norm), _normalise_text(gold_norm)
    if pred_text and pred_text == gold_text:
        return True
    pred_numbers, gold_numbers = find_numbers(pred_norm), find_numbers(gold_norm)
    if (
        pred_numbers
        and gold_numbers
        and _is_plain(pred_norm, pred_numbers[0])
        and _is_plain(gold_norm, gold_numbers[0])
    ):
        return _number_lists_match(pred_numbers, gold_numbers)
    return _symbolically_equal(pred_norm, gold_norm)


def _to_verifiable(text: str) -> str:
    """Normalised answer with every number in Python float syntax, in ``$…$`` when it holds
    LaTeX, so math-verify reads "12,5" as 12.5 and not as a set."""
    pieces, position = [], 0
    for match in VALUE_RE.finditer(text):
        pieces.append(text[position : match.start()])
        pieces.append(_verifiable_number(match))
        position = match.end()
    pieces.append(text[position:])
    result = "".join(pieces).strip()
    return f"${result}$" if "\\" in result and "$" not in result else result


def _verifiable_number(match: re.Match[str]) -> str:
    """One number as math-verify should see it; fractions stay fractions (exact rationals)."""
    sign = "-" if match.group("sign") else ""
    number = _format_float(literal_to_float(match.group("num")))
    if match.group("den") is not None:
        number = f"{number}/{_format_float(literal_to_float(match.group('den')))}"
    if match.group("whole") is not None:
        return f"{sign}({match.group('whole')}+{number})"
    return f"{sign}{number}"


def _format_float(value: float) -> str:
    """'12' for integral values (math-verify then compares exact integers), else repr."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns on every call made with timeouts disabled; we disable them on purpose
    (its SIGALRM timeouts fail outside the main thread), so that warning is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _symbolically_equal(predicted: str, gold: str) -> bool:
    """math-verify equivalence of two normalised answers; False when it cannot parse them.

    Imported lazily: most answers are plain numbers, and importing sympy is slow.
    Timeouts are disabled (``parsing_timeout=None``, ``timeout_seconds=None``) because they use
    signal.alarm, which raises outside the main thread (thread-pool evaluation).
    """
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    for name in ("math_verify.parser", "math_verify.grader"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropDisabledTimeoutWarning) for f in logger.filters):
            logger.addFilter(_DropDisabledTimeoutWarning())
    try:
        gold_parsed = parse(_to_verifiable(gold), parsing_timeout=None)
        pred_parsed = parse(_to_verifiable(predicted), parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # math-verify/sympy can raise on odd input; that is not a match
        return False
