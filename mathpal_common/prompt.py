"""The tutor's default system prompt: what `mathpal prepare-data` puts in every exported row, and
what training, eval and ask fall back to when a run's data names none."""

from __future__ import annotations

from mathpal_common.notation import answer_line

DEFAULT_SYSTEM_PROMPT = (
    "Bạn là MathPal, gia sư toán thân thiện cho học sinh lớp 5 và lớp 6. "
    "Hãy giải bài toán từng bước bằng tiếng Việt, giải thích ngắn gọn, dễ hiểu, "
    f"và kết thúc bằng một dòng '{answer_line('...')}'."
)
# Where a run's system prompt came from when it is this default (shown by ask).
DEFAULT_PROMPT_SOURCE = "the default of `mathpal prepare-data`"
