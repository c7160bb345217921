"""``mathpal demo``: the whole pipeline on a CPU, stage by stage, with the time of each.

The stages are the commands a user runs by hand (seed-qdrant, prepare-data, tiny-model,
train, eval, ask), with their default paths, calling the same functions those commands call.
The demo ends by asking the trained tutor the first problem of the test split. As those
commands, it keeps library noise off the terminal unless ``debug`` (training's whole output
is in ``outputs/smoke/logs/training.log``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dataprep.pipeline import ExportSettings, export_collection
from dataprep.qdrant_source import DEFAULT_COLLECTION, DEFAULT_QDRANT_PATH
from evals.evaluate import EvalSettings, run_eval
from evals.report import summary_items
from mathpal_commands.ask import ask_all, load_tutor, questions_from_file
from mathpal_commands.demo.points import seed_collection
from mathpal_commands.evaluate import eval_settings
from mathpal_common.terminal import echo, library_noise, progress_display, stream_writer
from mathpal_train.launch import plan_launch, prepare_run
from mathpal_train.tiny_model import DEFAULT_TINY_MODEL_DIR, corpus_texts, write_tiny_model
from mathpal_train.train_job import run_training
from mathpal_train.train_log import eval_loss_history

DEMO_RECIPE = Path("recipes/smoke.yml")
DATA_DIR = Path("data")
REPORT_DIR = Path("reports") / "demo"


class DemoError(ValueError):
    """A stage of the demo failed; the message is one line."""


def run_demo(
    console: Console,
    max_steps: int | None = None,
    eval_limit: int | None = None,
    max_new_tokens: int = 160,
    recipe: Path = DEMO_RECIPE,
    debug: bool = False,
) -> None:
    """Run every stage, print what each did, then the table of stage times and where the results are."""
    timings: list[tuple[str, float]] = []

    def stage(name: str, work: Callable[[], Any]) -> Any:
        console.rule(f"[bold]{name}")
        started = time.perf_counter()
        with library_noise(debug):
            result = work()
        timings.append((name, time.perf_counter() - started))
        return result

    stage("seed-qdrant", lambda: echo(console, seed_collection(DEFAULT_QDRANT_PATH, None, DEFAULT_COLLECTION)))
    stage("prepare-data", lambda: _prepare_data(console))
    stage("tiny-model", lambda: _tiny_model(console))
    output_dir = stage("train", lambda: _train(console, recipe, max_steps, debug))
    losses = eval_loss_history(output_dir)
    settings = EvalSettings(
        model="",
        data=DATA_DIR / "test.jsonl",
        adapter=str(output_dir),
        baseline=True,
        limit=eval_limit,
        max_new_tokens=max_new_tokens,
        report_dir=REPORT_DIR,
    )
    stage("eval", lambda: _evaluate(console, settings))
    stage("ask", lambda: _ask(console, output_dir, max_new_tokens))

    table = Table(title="mathpal demo")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in timings:
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("total", f"{sum(s for _, s in timings):.1f}")
    console.print(table)
    if losses:
        console.print(f"eval loss: start {losses[0][1]:.4f} → end {losses[-1][1]:.4f} ({len(losses)} evaluations)")
    echo(console, f"adapter: {output_dir}   report: {REPORT_DIR}/report.md")


def _prepare_data(console: Console) -> None:
    settings = ExportSettings(collection=DEFAULT_COLLECTION)
    with progress_display(console) as progress:
        echo(console, *export_collection(settings, DEFAULT_QDRANT_PATH, None, DATA_DIR, progress))


def _tiny_model(console: Console) -> None:
    path = write_tiny_model(corpus_texts(DATA_DIR), DEFAULT_TINY_MODEL_DIR)
    echo(console, f"Tiny Gemma-3n written to {path}")


def _train(console: Console, recipe: Path, max_steps: int | None, debug: bool = False) -> Path:
    run = prepare_run(recipe, plan_launch(0), [("max_steps", max_steps, "--max-steps")] if max_steps else [], [])
    echo(console, " ".join(run.argv), f"log: {run.log_path}")
    outcome = run_training(run, debug, note=lambda line: echo(console, f"warning: {line}"))
    echo(console, *outcome.lines)
    if outcome.code != 0:
        raise DemoError(outcome.error or f"training exited with status {outcome.code}: see {run.log_path}")
    return run.output_dir


def _evaluate(console: Console, settings: EvalSettings) -> None:
    """`mathpal eval --adapter OUTPUT_DIR --baseline`: the run's own base model, tokenizer and experiment."""
    with progress_display(console) as progress:
        path, metrics = run_eval(eval_settings(settings), progress)
    echo(console, *summary_items(path, metrics))


def _ask(console: Console, output_dir: Path, max_new_tokens: int) -> None:
    """`mathpal ask --adapter OUTPUT_DIR --file data/test.jsonl --limit 1`, streamed to the console."""
    questions = questions_from_file(DATA_DIR / "test.jsonl", limit=1)
    tutor = load_tutor(output_dir)
    echo(console, f"tutor: {tutor.description}")
    ask_all(tutor, questions, max_new_tokens, stream_writer(console), numbered=True)
