"""``mathpal``: a thin command line over the recipe repository.

Each command parses its options, calls one function of ``dataprep``, ``evals`` or
``mathpal_train`` and prints what it returned; training is Axolotl's, launched with
``accelerate launch -m axolotl.cli.train``. Errors the user can fix are printed as one
line starting with ``error:`` and exit with status 2.
"""

from __future__ import annotations

import os
import sys

# Axolotl sends telemetry unless told not to; set before anything imports it.
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
# comet_ml reads its console level once, when first imported (transformers imports it early): its
# messages name staging folders that are renamed later; the commands print where things went.
os.environ.setdefault("COMET_LOGGING_CONSOLE", "error")

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dataprep.qdrant_source import DEFAULT_COLLECTION, DEFAULT_QDRANT_PATH
from evals.generate import DECODINGS
from mathpal_common.terminal import echo, outlive_closed_pipe
from mathpal_train import launch
from mathpal_train.tiny_model import DEFAULT_TINY_MODEL_DIR

app = typer.Typer(
    help="MathPal Train: fine-tune Gemma-3n into a Vietnamese math tutor with Axolotl recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = outlive_closed_pipe(Console())
err_console = outlive_closed_pipe(Console(stderr=True))

DEFAULT_DATA_DIR = Path("data")
QdrantPath = Annotated[Path, typer.Option(help="Folder of the embedded Qdrant store.")]
QdrantUrl = Annotated[str | None, typer.Option(help="Qdrant server URL (key from QDRANT_API_KEY).")]
Sets = Annotated[list[str], typer.Option("--set", help="Override any recipe key: key=value (repeatable).")]
NoComet = Annotated[bool, typer.Option("--no-comet", help="Do not log to CometML.")]
ReportDir = Annotated[Path | None, typer.Option(help="Report folder (default reports/<run>).")]
Debug = Annotated[bool, typer.Option(help="Also show the libraries' log messages and warnings.")]
AllowUnfinished = Annotated[
    bool, typer.Option(help="Use an adapter whose run was not marked finished (an interrupted run's weights).")
]
AllowOtherBase = Annotated[
    bool, typer.Option(help="Load the adapter on --model although it names another base model (a copy of it).")
]
Decoding = Enum("Decoding", {name: name for name in DECODINGS}, type=str)  # typer's choices, from evals.generate


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (status 2, like a usage error)."""
    print_error(message)
    return typer.Exit(code=2)


def print_error(message: str) -> None:
    try:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    except OSError:  # nowhere to say it: the exit status still does
        pass


# --------------------------------------------------------------------------- data


@app.command("seed-qdrant")
def seed_qdrant(
    qdrant_path: QdrantPath = DEFAULT_QDRANT_PATH,
    qdrant_url: QdrantUrl = None,
    collection: Annotated[str, typer.Option(help="Collection to (re)create.")] = DEFAULT_COLLECTION,
    problems: Annotated[int, typer.Option(min=1, help="Number of distinct sample problems.")] = 1200,
    seed: Annotated[int, typer.Option(help="Seed of the sample corpus generator.")] = 5,
) -> None:
    """Load the bundled sample corpus into Qdrant as MathPal feature-pipeline points."""
    from mathpal_commands.demo.points import seed_collection

    try:
        echo(console, seed_collection(qdrant_path, qdrant_url, collection, problems, seed))
    except ValueError as err:
        raise fail(str(err)) from None


@app.command("prepare-data")
def prepare_data(
    collection: Annotated[str, typer.Option(help="Qdrant collection to export.")] = DEFAULT_COLLECTION,
    qdrant_path: QdrantPath = DEFAULT_QDRANT_PATH,
    qdrant_url: QdrantUrl = None,
    type_: Annotated[list[str], typer.Option("--type", help="Keep points of this payload type.")] = ["exam"],
    grade: Annotated[list[str] | None, typer.Option(help="Keep this grade_id (repeatable); default all.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for the splits and manifest.")] = DEFAULT_DATA_DIR,
    val_fraction: Annotated[float, typer.Option(help="Share of problems for validation.")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="Share of problems for test.")] = 0.05,
    system_prompt_file: Annotated[Path | None, typer.Option(help="File with the system prompt to use.")] = None,
    near_dup_threshold: Annotated[
        float,
        typer.Option(
            help="Move validation/test problems to train when a training problem's vector has at least this cosine."
        ),
    ] = 0.97,
    near_dup: Annotated[
        bool,
        typer.Option(
            "--near-dup/--no-near-dup", help="Search Qdrant for near-duplicates (needs stored cosine vectors)."
        ),
    ] = True,
    strict: Annotated[bool, typer.Option(help="Fail, writing nothing, if any entry is rejected.")] = False,
    log_artifact: Annotated[
        bool,
        typer.Option(
            help="Log the files and manifest as a CometML dataset artifact (offline archive without COMET_API_KEY)."
        ),
    ] = False,
) -> None:
    """Export a Qdrant collection to chat JSONL train/validation/test splits and a manifest."""
    from dataprep.pipeline import ExportSettings, export_collection, read_system_prompt
    from mathpal_common.terminal import progress_display

    try:
        settings = ExportSettings(
            collection=collection,
            types=list(type_ or []),
            grades=list(grade or []),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            system_prompt=read_system_prompt(system_prompt_file),
            near_dup=near_dup,
            near_dup_threshold=near_dup_threshold,
            strict=strict,
            local=not qdrant_url,
        )
        with progress_display(console) as progress:
            lines = export_collection(settings, qdrant_path, qdrant_url, out, progress, log_artifact)
    except ValueError as err:  # SourceError, ExportError
        raise fail(str(err)) from None
    echo(console, *lines)


# --------------------------------------------------------------------------- model


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Option(help="Folder to write the checkpoint to.")] = DEFAULT_TINY_MODEL_DIR,
    data: Annotated[Path, typer.Option(help="Prepared data folder (tokenizer corpus).")] = DEFAULT_DATA_DIR,
    vocab_size: Annotated[int, typer.Option(min=256, help="Tokenizer vocabulary size.")] = 2048,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    debug: Debug = False,
) -> None:
    """Build a tiny random-weight Gemma-3n with a tokenizer trained on the data (for CPU runs)."""
    from mathpal_common.terminal import library_noise
    from mathpal_train.tiny_model import corpus_texts, write_tiny_model

    try:
        with library_noise(debug):
            path = write_tiny_model(corpus_texts(data), out, vocab_size=vocab_size, seed=seed)
    except ValueError as err:  # no data, an output that cannot be written
        raise fail(str(err)) from None
    echo(console, f"Tiny Gemma-3n written to {path}")


# --------------------------------------------------------------------------- train


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Axolotl recipe to check.")],
    num_gpus: Annotated[int, typer.Option(min=1, help="GPUs the run will use (for the effective batch).")] = 1,
    set_: Sets = [],
    gpu_memory: Annotated[
        float | None,
        typer.Option(min=0.1, help="GiB of the card to check the memory estimate against (default: the visible GPU)."),
    ] = None,
    debug: Debug = False,
) -> None:
    """Check a recipe offline (Axolotl's schema, unknown keys, files, secrets); summarise the run and its memory."""
    from mathpal_common.terminal import library_noise
    from mathpal_train.memory import memory_lines
    from mathpal_train.recipes import origins
    from mathpal_train.validate import validate_recipe

    try:
        resolved, applied = launch.resolve(recipe, set_, [])
        print_overrides(applied)
        with library_noise(debug):
            summary = validate_recipe(resolved, recipe, num_gpus, origins(applied))
            memory, warning = memory_lines(resolved, num_gpus, gpu_memory)
    except ValueError as err:
        raise fail(str(err)) from None
    console.print(f"[green]ok[/] {recipe}")
    echo(console, *("  " + line for line in [*summary.lines(), *memory]))
    for note in [*summary.notes, warning]:
        print_warning(note)


def print_warning(warning: str | None) -> None:
    if warning:
        try:
            err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        except OSError:  # a closed terminal: the work goes on without its warnings
            pass


def print_overrides(applied: list[tuple[str, object, str]]) -> None:
    echo(console, *(f"override {key} = {value!r} (from {source})" for key, value, source in applied))


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Axolotl recipe, e.g. recipes/production.yml.")],
    num_gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs per machine (default: CUDA_VISIBLE_DEVICES or all); 0 = CPU.")
    ] = None,
    deepspeed: Annotated[
        str | None,
        typer.Option(help="zero1, zero2, zero3, none (plain DDP) or a DeepSpeed JSON (default zero2 on > 1 GPU)."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override max_steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Override learning_rate.")] = None,
    experiment_name: Annotated[str | None, typer.Option(help="CometML experiment name.")] = None,
    quick_test: Annotated[
        bool,
        typer.Option(
            help="Apply recipes/quick_test.yml's short-run values (the seed's quick test: 20 steps, sequence 1024)."
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(help="Show the job's whole output (the log has it anyway) with Axolotl's debug logging."),
    ] = False,
    set_: Sets = [],
    num_machines: Annotated[int, typer.Option(min=1, help="Machines (nodes) in the run.")] = 1,
    machine_rank: Annotated[int | None, typer.Option(min=0, help="This machine's rank (several nodes).")] = None,
    main_process_ip: Annotated[str | None, typer.Option(help="Address of rank 0 (several nodes).")] = None,
    main_process_port: Annotated[int | None, typer.Option(help="Port of rank 0 (several nodes).")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the command and the resolved recipe; write nothing, launch nothing.")
    ] = False,
) -> None:
    """Train with Axolotl: validate, apply overrides, then run `accelerate launch -m axolotl.cli.train`."""
    from mathpal_train.train_job import Say, TrainOptions
    from mathpal_train.train_job import train as train_run

    options = TrainOptions(
        num_gpus=num_gpus,
        deepspeed=deepspeed,
        max_steps=max_steps,
        learning_rate=learning_rate,
        experiment_name=experiment_name,
        quick_test=quick_test,
        debug=debug,
        sets=set_,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
        dry_run=dry_run,
    )
    say = Say(lambda *lines: echo(console, *lines), print_warning, print_overrides, print_error)
    try:
        code = train_run(recipe, options, say)
    except ValueError as err:  # LaunchError, RecipeError, a bad recipe file or --set, the folder in use
        raise fail(str(err)) from None
    raise typer.Exit(code=code)


# --------------------------------------------------------------------------- after training


@app.command()
def ask(
    question: Annotated[
        str | None, typer.Argument(help="The question (none: --file, else one a line from stdin).", show_default=False)
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="A finished run's output_dir (or its recipe): its base model plus adapter.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="A merged model folder (`mathpal merge`), or another base for --adapter.")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="Questions: a text file, one a line, or a JSONL split.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N questions of --file.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit of each answer.")] = 512,
    allow_unfinished: AllowUnfinished = False,
    allow_other_base: AllowOtherBase = False,
    debug: Debug = False,
) -> None:
    """Ask the trained tutor: the answer streams as it is generated, then the final answer it gives."""
    from mathpal_commands import ask as tutor
    from mathpal_common.terminal import library_noise, stream_writer

    write = stream_writer(console)
    try:
        if question is not None and file:
            raise ValueError("pass a question or --file, not both")
        if question is not None and any("\udc80" <= c <= "\udcff" for c in question):  # undecodable argv bytes
            raise ValueError("the question is not UTF-8 text: pass it as text")
        if question is not None and not question.strip():
            raise ValueError('the question is empty: ask something, e.g. mathpal ask --adapter RUN "Tính 12 + 30."')
        questions = [question] if question else tutor.questions_from_file(file, limit) if file else None
        with library_noise(debug):
            loaded = tutor.load_tutor(adapter, model, allow_unfinished, allow_other_base)
    except ValueError as err:
        raise fail(str(err)) from None
    echo(console, f"tutor: {loaded.description}")
    typed = questions is None and sys.stdin.isatty()
    if questions is None:
        questions = tutor.questions_from_stdin(sys.stdin, (lambda: write("question> ")) if typed else None)
    try:
        with library_noise(debug):
            asked = tutor.ask_all(loaded, questions, max_new_tokens, write, numbered=not typed and question is None)
    except ValueError as err:  # input that is not text
        raise fail(str(err)) from None
    if not asked and not typed:
        raise fail("no question on standard input: pass one as an argument, with --file, or one a line on stdin")


@app.command()
def merge(
    run: Annotated[Path, typer.Argument(help="A finished run's output_dir, or its recipe.")],
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: <output_dir>/merged).")] = None,
    model: Annotated[str | None, typer.Option(help="Base model to merge into (default: the run's).")] = None,
    allow_unfinished: AllowUnfinished = False,
    allow_other_base: AllowOtherBase = False,
    debug: Debug = False,
) -> None:
    """Merge a run's LoRA adapter into its base model: one folder of weights, tokenizer and chat template."""
    from mathpal_common.terminal import library_noise
    from mathpal_train.merge import merge_adapter

    try:
        with library_noise(debug):
            path = merge_adapter(run, out, model, allow_unfinished, allow_other_base)
    except ValueError as err:
        raise fail(str(err)) from None
    echo(console, f"Merged model written to {path} (ask it: mathpal ask --model {path})")


# --------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    model: Annotated[
        str | None,
        typer.Option(
            help="Base model folder or hub id (default: the --adapter run's own base model, else the tiny demo model)."
        ),
    ] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder (a recipe's output_dir).")] = None,
    baseline: Annotated[bool, typer.Option(help="Also evaluate the base model without the adapter.")] = False,
    data: Annotated[Path, typer.Option(help="Prepared JSONL split.")] = DEFAULT_DATA_DIR / "test.jsonl",
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N problems.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generate call (see docs/performance.md).")] = 32,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit of each answer.")] = 256,
    decoding: Annotated[
        Decoding,
        typer.Option(
            help="generate: one generate call a batch; static: the same with a static KV cache, compiled on CUDA "
            "(slower on a CPU); continuous: a finished answer frees its slot at once."
        ),
    ] = Decoding.generate,
    report_dir: ReportDir = None,
    no_comet: NoComet = False,
    allow_unfinished: AllowUnfinished = False,
    allow_other_base: AllowOtherBase = False,
    debug: Debug = False,
) -> None:
    """Answer a test split, grade the final answers and write a report (and a CometML log)."""
    from evals.evaluate import EvalSettings, run_eval
    from evals.report import summary_items
    from mathpal_commands.evaluate import eval_settings
    from mathpal_common.terminal import library_noise, progress_display

    settings = EvalSettings(
        model=model or "",
        data=Path(data),
        adapter=str(adapter) if adapter else None,
        baseline=baseline,
        limit=limit,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        decoding=decoding.value,
        report_dir=report_dir,
        comet=not no_comet,
    )
    try:
        settings = eval_settings(settings, model, allow_unfinished, allow_other_base)
        with library_noise(debug), progress_display(console) as progress:
            path, metrics = run_eval(settings, progress)
    except ValueError as err:
        raise fail(str(err)) from None
    echo(console, *summary_items(path, metrics))


@app.command()
def score(
    predictions: Annotated[
        Path,
        typer.Argument(
            help="JSONL, one object a line: question, answer (gold final answer), prediction (whole response); "
            "optional reference, grade_id, topic, id, model."
        ),
    ],
    report_dir: ReportDir = None,
    no_comet: NoComet = False,
) -> None:
    """Grade answers you already have, exactly as eval does, and write the same report."""
    from evals.evaluate import run_score
    from evals.report import summary_items

    try:
        path, metrics = run_score(Path(predictions), report_dir, comet=not no_comet)
    except ValueError as err:
        raise fail(str(err)) from None
    echo(console, *summary_items(path, metrics))


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    max_steps: Annotated[int | None, typer.Option(min=1, help="Training steps (default: the recipe's).")] = None,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only N test problems.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit of each eval answer.")] = 160,
    recipe: Annotated[Path, typer.Option(help="CPU recipe to train.")] = Path("recipes/smoke.yml"),
    debug: Debug = False,
) -> None:
    """Run the whole pipeline on a CPU: seed Qdrant, prepare data, tiny model, train, eval."""
    from mathpal_commands.demo.run import run_demo

    try:
        run_demo(console, max_steps, eval_limit, max_new_tokens, recipe, debug)
    except ValueError as err:
        raise fail(str(err)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
