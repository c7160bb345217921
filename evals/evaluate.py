"""Evaluate a model (and optionally its base) on a test split and write the report.

This is ``mathpal eval``: generate, grade, aggregate, report, log to Comet. Kept
apart from training on purpose: it loads checkpoints with plain transformers and
PEFT, exactly as a user of the fine-tuned model would.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evals.comet_log import log_to_comet
from evals.generate import Generation, generate_answers, load_model
from evals.metrics import METRICS, aggregate, score_answer
from evals.report import write_report


@dataclass
class EvalSettings:
    """What to evaluate and how."""

    model: str
    data: Path
    adapter: str | None = None
    baseline: bool = False
    limit: int | None = None
    batch_size: int = 8
    max_new_tokens: int = 256
    report_dir: Path | None = None
    comet: bool = True


def read_examples(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a prepared JSONL split; a row without ``messages`` or ``answer`` is a one-line error."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{number} is not JSON: regenerate it with `mathpal prepare-data`") from None
            if "messages" not in row or "answer" not in row:
                raise ValueError(f"{path}:{number} has no 'messages'/'answer': regenerate it with `mathpal prepare-data`")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path} has no examples: run `mathpal prepare-data` first")
    return rows


def reference_solution(example: dict[str, Any]) -> str:
    return next(m["content"] for m in example["messages"] if m["role"] == "assistant")


def score_generations(
    name: str, examples: list[dict[str, Any]], generations: list[Generation]
) -> list[dict[str, Any]]:
    """One sample row per problem: prediction, extracted answer, correctness and metrics."""
    rows = []
    for example, gen in zip(examples, generations):
        question = next(m["content"] for m in example["messages"] if m["role"] == "user")
        scored = score_answer(gen.text, example["answer"], reference_solution(example), gen.hit_limit)
        rows.append(
            {
                "model": name,
                "id": example.get("id"),
                "grade_id": example.get("grade_id"),
                "topic": example.get("topic"),
                "question": question,
                "answer": example["answer"],
                "prediction": gen.text,
                "new_tokens": gen.new_tokens,
                **scored,
            }
        )
    return rows


def run_eval(settings: EvalSettings, progress=None) -> tuple[Path, dict[str, Any]]:
    """Evaluate, write the report directory and return its path with the metrics."""
    examples = read_examples(settings.data, settings.limit)
    tokenizer, model = load_model(settings.model, settings.adapter)
    variants: list[tuple[str, Any]] = []
    if settings.adapter:
        if settings.baseline:
            variants.append(("base", model.disable_adapter))
        variants.append(("tuned", nullcontext))
    else:
        variants.append(("base", nullcontext))

    models: dict[str, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    speed: dict[str, float] = {}
    groups = [{"grade_id": e.get("grade_id", ""), "topic": e.get("topic", "")} for e in examples]
    for name, context in variants:
        started = time.perf_counter()
        with context():
            task = progress.add_task(f"{name}", total=len(examples)) if progress else None
            generations = generate_answers(
                model,
                tokenizer,
                examples,
                batch_size=settings.batch_size,
                max_new_tokens=settings.max_new_tokens,
                on_batch=(lambda n, t=task: progress.advance(t, n)) if progress else None,
            )
        speed[name] = round(len(examples) / (time.perf_counter() - started), 4)
        rows = score_generations(name, examples, generations)
        samples.extend(rows)
        models[name] = aggregate(rows, groups)

    run = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    metrics: dict[str, Any] = {
        "run": run,
        "model": settings.model,
        "adapter": settings.adapter,
        "data": str(settings.data),
        "n": len(examples),
        "generation": {
            "batch_size": settings.batch_size,
            "max_new_tokens": settings.max_new_tokens,
            "problems_per_s": speed,
        },
        "models": models,
    }
    if "base" in models and "tuned" in models:
        metrics["comparison"] = {m: round(models["tuned"][m] - models["base"][m], 6) for m in METRICS}
    report_dir = Path(settings.report_dir or Path("reports") / run)

    def add_comet(staging: Path) -> None:
        if settings.comet:
            params = {"model": settings.model, "adapter": settings.adapter or "", "data": str(settings.data)}
            archive = log_to_comet(f"eval-{run}", metrics, params, staging / "samples.jsonl", staging / "comet")
            if archive is not None:
                print(f"CometML offline archive: {report_dir / 'comet' / archive.name} (upload with `comet upload`)")

    write_report(report_dir, metrics, samples, extra=add_comet)
    return report_dir, metrics
