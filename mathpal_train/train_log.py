"""Read the metric dicts that the Hugging Face trainer prints into Axolotl's logs, and pick the lines a user sees.

Each logged step or evaluation is one Python dict literal on a line, values mostly
as strings (``{'loss': '12.88', 'grad_norm': '1.2e+05', ...}``). The demo reads the
eval losses from ``debug.log``; the GPU benchmarks read rates, memory and losses
from a run's output. Both go through ``metric_dicts``.

A training job prints a few hundred lines before its first step (Axolotl's whole config,
the chat template, torchao and torch warnings, progress bars); ``mathpal train`` keeps
them all in the run's log and shows on the terminal only what ``terminal_line`` picks:
the losses, the run's own messages (its tokenised data, a resume), errors, the end.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

_DICT_RE = re.compile(r"\{'(?:eval_)?loss': .*?\}")
# Axolotl's log line: [time] [LEVEL] [logger] message
_AXOLOTL_LINE = re.compile(r"^\[[\d\- :,.]+\] \[(\w+)\] \[([\w.]+)\] (.*)$")
# Messages of the job worth a line on the terminal (whatever their logger).
SHOWN_MESSAGES = ("resume from checkpoint at", "Training completed!")
# The job's own loggers (RunStatePlugin, the speed plugin) whose INFO lines are shown.
SHOWN_LOGGERS = ("axolotl.mathpal.run_state",)
_NUMBER_RE = re.compile(r"[-\d.e+naif]+")


def metric_dicts(text: str) -> list[dict]:
    """Every ``{'loss': …}`` and ``{'eval_loss': …}`` dict in ``text``, in order, numbers as floats.

    Parsed as literals (never evaluated); a truncated or garbled one is skipped.
    """
    found = []
    for match in _DICT_RE.finditer(text):
        try:
            entry = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        found.append({k: _number(v) for k, v in entry.items()})
    return found


def terminal_line(line: str) -> str | None:
    """What the terminal shows of one line of a training job's output (None: the log only).

    A loss or eval-loss dict, without the progress bar it may share a line with; the message
    of an Axolotl error, of RunStatePlugin, of a resume and of the end of training.
    """
    metrics = _DICT_RE.search(line)
    if metrics:
        return metrics.group(0)
    parsed = _AXOLOTL_LINE.match(line.strip())
    if parsed is None:
        return None
    level, logger, message = parsed.groups()
    if level in ("ERROR", "CRITICAL") or logger in SHOWN_LOGGERS or any(s in message for s in SHOWN_MESSAGES):
        return message
    return None


def _number(value):
    """A numeric string as a float (``'nan'`` included); anything else unchanged."""
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def train_steps(text: str) -> list[dict]:
    """The per-step training entries (those with a grad norm)."""
    return [entry for entry in metric_dicts(text) if "grad_norm" in entry]


def eval_losses(text: str) -> list[tuple[float, float]]:
    """``(epoch, eval_loss)`` of every evaluation with a finite loss, in order."""
    return [
        (float(e["epoch"]), e["eval_loss"])
        for e in metric_dicts(text)
        if "eval_loss" in e
        and "epoch" in e
        and isinstance(e["eval_loss"], float)
        and e["eval_loss"] == e["eval_loss"]
        and abs(e["eval_loss"]) != float("inf")
    ]


def eval_loss_history(output_dir: Path) -> list[tuple[float, float]]:
    """``eval_losses`` of the run in ``output_dir``, read from the ``debug.log`` Axolotl writes there."""
    log = Path(output_dir) / "debug.log"
    if not log.is_file():
        return []
    return eval_losses(log.read_text(encoding="utf-8", errors="replace"))
