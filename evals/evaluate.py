"""Evaluate a model (and optionally its base) on a test split, or grade predictions someone
already has, and write the report.

``mathpal eval`` generates answers (``run_eval``); ``mathpal score`` reads them from a JSONL
file (``run_score``).  From there both take the same path, ``report_predictions``: grade every
answer, aggregate per model, compare base and tuned, write the report, log to Comet.  So the
same predictions always get the same grades, whichever command produced them.

Kept apart from training on purpose: checkpoints are loaded with plain transformers and PEFT,
exactly as a user of the fine-tuned model would.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.chart import CHART_FILE
from evals.comet_log import log_to_comet
from evals.generate import Decoding, Generation, generate_answers, load_model
from evals.metrics import METRICS, aggregate, score_answer
from evals.report import write_report
from evals.stats import compare_paired
from mathpal_common.atomic_files import WriteError, check_writable, sweep_killed

# The fields of one prediction (the input of ``mathpal score``, and what ``eval`` produces).
REQUIRED_FIELDS = ("question", "answer", "prediction")
OPTIONAL_TEXT_FIELDS = ("reference", "grade_id", "topic", "model", "id")


@dataclass
class EvalSettings:
    """What to evaluate and how. For a trained run the command fills ``model``, ``adapter``,
    ``tokenizer`` and ``experiment_key`` from the run's one loader
    (``mathpal_train.trained_run.load_trained``, which also checks the adapter)."""

    model: str
    data: Path
    adapter: str | None = None
    tokenizer: str | None = None  # the tokenizer training used (beside the adapter); None: the model's
    experiment_key: str | None = None  # the training run's Comet experiment: the eval's log joins it
    baseline: bool = False
    limit: int | None = None
    batch_size: int = 32
    max_new_tokens: int = 256
    # "static": static KV cache, compiled on CUDA; "continuous": slots refilled as answers end (evals/generate.py)
    decoding: Decoding = "generate"
    report_dir: Path | None = None
    comet: bool = True


# --------------------------------------------------------------------------- inputs


def report_path(report_dir: Path | None, run: str = "<time>") -> Path:
    """Where a report goes: ``report_dir``, or ``reports/<run>`` by default (a run is named by its time)."""
    return Path(report_dir or Path("reports") / run)


def check_settings(settings: EvalSettings) -> None:
    """Refuse, in one line and before any model loads, what cannot be evaluated."""
    data, adapter = Path(settings.data), settings.adapter
    if not data.is_file():
        raise ValueError(f"{data} does not exist: run `mathpal prepare-data` first")
    if settings.baseline and adapter is None:
        raise ValueError("--baseline compares the model with and without its adapter: pass --adapter too")
    if not Path(settings.model).exists() and "/" not in settings.model:
        raise ValueError(
            f"--model {settings.model} is neither a folder nor a hub id: run `mathpal tiny-model` or pass org/name"
        )
    check_writable(report_path(settings.report_dir))


def check_predictions_file(path: Path) -> None:
    """``mathpal score`` needs an existing JSONL file."""
    if not Path(path).is_file():
        raise ValueError(f"{path} does not exist: pass a JSONL file with question, answer and prediction on each line")


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
            if not isinstance(row, dict) or "messages" not in row or "answer" not in row:
                raise ValueError(
                    f"{path}:{number} has no 'messages'/'answer': regenerate it with `mathpal prepare-data`"
                )
            if not any(m.get("role") == "user" for m in row["messages"] if isinstance(m, dict)):
                raise ValueError(f"{path}:{number} has no user message: regenerate it with `mathpal prepare-data`")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path} has no examples: run `mathpal prepare-data` first")
    return rows


def reference_solution(example: dict[str, Any]) -> str | None:
    """The assistant turn of a prepared example: the worked solution the tutor should give."""
    return next((m["content"] for m in example["messages"] if m["role"] == "assistant"), None)


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Rows of a predictions JSONL for ``mathpal score``, checked and normalised.

    Each line needs ``question``, ``answer`` (the gold final answer) and ``prediction`` (the
    model's whole response; null counts as an empty, hence wrong, response).  Optional:
    ``reference``, ``grade_id``, ``topic``, ``id``, ``model`` (default: the file's stem) and
    ``hit_limit``.  A samples.jsonl written by ``eval`` or ``score`` is valid input, so a report
    can be regraded.  Any bad line is a one-line ValueError naming file, line and field.
    """
    rows = []
    default_model = Path(path).stem
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{where} is not JSON: write one JSON object per line") from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{where} is not a JSON object: write one object per line with question, answer, prediction"
                )
            rows.append(_prediction_row(row, where, default_model))
    if not rows:
        raise ValueError(f"{path} has no predictions: write one JSON object per line with question, answer, prediction")
    return rows


def _prediction_row(row: dict[str, Any], where: str, default_model: str) -> dict[str, Any]:
    """One validated prediction; numbers are accepted where text is expected (a gold 72)."""
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise ValueError(
            f"{where} has no {', '.join(repr(m) for m in missing)}: each line needs question, answer and prediction"
        )
    clean: dict[str, Any] = {}
    for name in (*REQUIRED_FIELDS, *OPTIONAL_TEXT_FIELDS):
        value = row.get(name)
        if value is None:
            if name in ("question", "answer"):
                raise ValueError(f"{where} has a null '{name}': give the {name} as text")
            clean[name] = "" if name == "prediction" else None
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"{where} has a {type(value).__name__} '{name}': give it as text")
        else:
            clean[name] = str(value)
    if not clean["answer"].strip():
        raise ValueError(f"{where} has an empty 'answer': give the gold final answer")
    clean["model"] = clean["model"] or default_model
    hit_limit = row.get("hit_limit", False)
    if not isinstance(hit_limit, bool):
        raise ValueError(f"{where} has a non-boolean 'hit_limit': use true or false")
    clean["hit_limit"] = hit_limit
    new_tokens = row.get("new_tokens")
    clean["new_tokens"] = new_tokens if isinstance(new_tokens, int) and not isinstance(new_tokens, bool) else None
    return clean


def _text_or_none(value: Any) -> str | None:
    """Ids, grades and topics as text, as ``read_predictions`` gives them, so that regrading an
    eval's samples.jsonl reproduces it byte for byte."""
    return None if value is None else str(value)


def prediction_rows(name: str, examples: list[dict[str, Any]], generations: list[Generation]) -> list[dict[str, Any]]:
    """Generated answers in the predictions format that ``mathpal score`` reads."""
    rows = []
    for example, gen in zip(examples, generations):
        rows.append(
            {
                "question": next(m["content"] for m in example["messages"] if m["role"] == "user"),
                "answer": str(example["answer"]),
                "prediction": gen.text,
                "reference": reference_solution(example),
                "grade_id": _text_or_none(example.get("grade_id")),
                "topic": _text_or_none(example.get("topic")),
                "model": name,
                "id": _text_or_none(example.get("id")),
                "hit_limit": gen.hit_limit,
                "new_tokens": gen.new_tokens,
            }
        )
    return rows


# --------------------------------------------------------------------------- grading


def score_predictions(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One sample row per prediction, in order: the prediction, the extracted answer, ``correct``
    as a boolean and each metric (the rows of samples.jsonl)."""
    samples = []
    for row in predictions:
        scored = score_answer(row["prediction"], row["answer"], row.get("reference"), row.get("hit_limit", False))
        samples.append(
            {
                "model": row["model"],
                "id": row.get("id"),
                "grade_id": row.get("grade_id"),
                "topic": row.get("topic"),
                "question": row["question"],
                "answer": row["answer"],
                "prediction": row["prediction"],
                **scored,
                "hit_limit": row.get("hit_limit", False),
                "new_tokens": row.get("new_tokens"),
                "reference": row.get("reference"),
            }
        )
    return samples


def pair_rows(
    base: list[dict[str, Any]], tuned: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Base and tuned rows of the same problems, in the base order.

    A problem is its ``id`` (else its question) and its occurrence number, so repeated
    questions pair up in order.  Different problem sets are an error: a comparison on
    different problems would not be paired.
    """

    def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
        seen: Counter[str] = Counter()
        out = {}
        for row in rows:
            key = row.get("id") or row["question"]
            out[(key, seen[key])] = row
            seen[key] += 1
        return out

    by_base, by_tuned = keyed(base), keyed(tuned)
    unmatched = by_base.keys() ^ by_tuned.keys()
    if unmatched:
        raise ValueError(
            f"models 'base' and 'tuned' answer different problems ({len(unmatched)} unmatched): "
            "give both models the same problems to compare them"
        )
    return list(by_base.values()), [by_tuned[key] for key in by_base]


def summarise(samples: list[dict[str, Any]], run: str, header: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: the header, each model's means (overall, per grade, per topic) and, when
    both a 'base' and a 'tuned' model are present, their paired comparison."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_model.setdefault(sample["model"], []).append(sample)
    models = {}
    for name, rows in by_model.items():
        groups = [{"grade_id": r.get("grade_id") or "", "topic": r.get("topic") or ""} for r in rows]
        models[name] = aggregate(rows, groups)
    metrics: dict[str, Any] = {"run": run, **header, "n": max(s["n"] for s in models.values()), "models": models}
    if "base" in models and "tuned" in models:
        base, tuned = pair_rows(by_model["base"], by_model["tuned"])
        metrics["comparison"] = {"baseline": "base", "candidate": "tuned", **compare_paired(base, tuned, METRICS)}
    return metrics


# --------------------------------------------------------------------------- the shared path


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def report_predictions(
    predictions: list[dict[str, Any]],
    header: dict[str, Any],
    report_dir: Path | None = None,
    comet: bool = True,
    params: dict[str, Any] | None = None,
    notify: Callable[[str], None] = print,
    warn: Callable[[str], None] = _warn,
    experiment_key: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Grade, aggregate, compare, write the report directory and log it to Comet.

    Both commands end here.  Comet is a side channel: whatever goes wrong with it, the report
    is still written whole, and ``warn`` says so in one line.  ``experiment_key``: add the log
    to that (training) experiment instead of starting one.
    """
    run = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    samples = score_predictions(predictions)
    metrics = summarise(samples, run, header)
    if report_dir is None:  # reports/<time>: no later write has this name, so tidy after killed ones here
        sweep_killed(report_path(None, run), every_name=True)
    report_dir = report_path(report_dir, run)
    comet_params = {"command": header.get("command", ""), "data": header.get("data", ""), **(params or {})}

    def add_comet(staging: Path) -> None:
        if not comet:
            return
        try:
            result = log_to_comet(
                f"{header.get('command', 'eval')}-{run}",
                metrics,
                comet_params,
                staging / "comet",
                samples=samples,
                assets=[staging / "metrics.json", staging / "samples.jsonl", staging / "report.md"],
                chart=staging / CHART_FILE,
                experiment_key=experiment_key,
            )
        except WriteError as error:  # the disk, not Comet: the report cannot be written whole either
            raise WriteError(f"cannot write {report_dir}: {error}") from None
        except Exception as error:  # a broken Comet must not cost the report
            shutil.rmtree(staging / "comet", ignore_errors=True)
            warn(f"CometML logging failed ({type(error).__name__}: {error}); the report is written without it")
            return
        if result.mode == "online":
            notify(f"CometML: {result.url}")
            return
        archive = report_dir / "comet" / result.archive.name if result.archive else report_dir / "comet"
        if experiment_key:
            archive = f"{archive}, adding to the training run's experiment {experiment_key}"
        if result.fallback:
            warn(f"CometML {result.fallback}; report kept, logged offline to {archive} (upload with `comet upload`)")
        else:
            notify(f"CometML offline archive: {archive} (upload with `comet upload`)")

    write_report(report_dir, metrics, samples, extra=add_comet)
    return report_dir, metrics


def run_eval(settings: EvalSettings, progress=None) -> tuple[Path, dict[str, Any]]:
    """Generate answers (base and/or tuned), then grade and report them like ``run_score``.

    ``progress`` is a rich Progress; each model gets a task whose ``rate`` field shows problems/s.
    """
    check_settings(settings)
    examples = read_examples(settings.data, settings.limit)
    tokenizer, model = load_model(settings.model, settings.adapter, settings.tokenizer)
    variants: list[tuple[str, Any]] = []
    if settings.adapter:
        if settings.baseline:
            variants.append(("base", model.disable_adapter))
        variants.append(("tuned", nullcontext))
    else:
        variants.append(("base", nullcontext))

    predictions: list[dict[str, Any]] = []
    speed: dict[str, float] = {}
    for name, context in variants:
        started = time.perf_counter()
        task = progress.add_task(name, total=len(examples), rate="") if progress else None
        done = 0

        def advance(count: int, task=task, started=started) -> None:
            nonlocal done
            done += count
            if progress is not None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=count, rate=f"{rate:.2f} problems/s")

        with context():
            generations = generate_answers(
                model,
                tokenizer,
                examples,
                batch_size=settings.batch_size,
                max_new_tokens=settings.max_new_tokens,
                on_batch=advance,
                decoding=settings.decoding,
            )
        speed[name] = round(len(examples) / (time.perf_counter() - started), 4)
        predictions.extend(prediction_rows(name, examples, generations))

    header = {
        "command": "eval",
        "model": settings.model,
        "adapter": settings.adapter,
        "data": str(settings.data),
        "generation": {
            "batch_size": settings.batch_size,
            "max_new_tokens": settings.max_new_tokens,
            "decoding": settings.decoding,
            "problems_per_s": speed,
        },
    }
    params = {
        "model": settings.model,
        "adapter": settings.adapter or "",
        "batch_size": settings.batch_size,
        "max_new_tokens": settings.max_new_tokens,
        "limit": settings.limit or 0,
    }
    return report_predictions(
        predictions, header, settings.report_dir, settings.comet, params, experiment_key=settings.experiment_key
    )


def run_score(path: Path, report_dir: Path | None = None, comet: bool = True) -> tuple[Path, dict[str, Any]]:
    """Grade the predictions in a JSONL file exactly as ``run_eval`` grades generated ones."""
    check_predictions_file(path)
    check_writable(report_path(report_dir))
    predictions = read_predictions(path)
    header = {"command": "score", "model": None, "adapter": None, "data": str(path)}
    return report_predictions(predictions, header, report_dir, comet)
