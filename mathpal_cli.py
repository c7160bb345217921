"""``mathpal``: a thin command line over the recipe repository.

Each command is one stage of the pipeline; the work itself lives in ``dataprep``,
``training`` and ``evals``, and training is Axolotl's, launched with
``accelerate launch -m axolotl.cli.train``. Errors the user can fix are printed
as one line starting with ``error:`` and exit with status 2.
"""

from __future__ import annotations

import os

# Axolotl sends telemetry unless told not to; set before anything imports it.
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from dataprep.qdrant_source import DEFAULT_COLLECTION, DEFAULT_QDRANT_PATH
from mathpal_train.tiny_model import DEFAULT_TINY_MODEL_DIR

app = typer.Typer(
    help="MathPal Train: fine-tune Gemma-3n into a Vietnamese math tutor with Axolotl recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_DATA_DIR = Path("data")
DEEPSPEED_PRESETS = {
    "zero1": Path("deepspeed_configs/zero1.json"),
    "zero2": Path("deepspeed_configs/zero2.json"),
    "zero3": Path("deepspeed_configs/zero3_bf16.json"),
}


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (status 2, like a usage error)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


# --------------------------------------------------------------------------- data


@app.command("seed-qdrant")
def seed_qdrant(
    qdrant_path: Annotated[Path, typer.Option(help="Folder of the embedded Qdrant store.")] = DEFAULT_QDRANT_PATH,
    qdrant_url: Annotated[Optional[str], typer.Option(help="Qdrant server URL (key from QDRANT_API_KEY).")] = None,
    collection: Annotated[str, typer.Option(help="Collection to (re)create.")] = DEFAULT_COLLECTION,
    problems: Annotated[int, typer.Option(min=1, help="Number of distinct sample problems.")] = 1200,
    seed: Annotated[int, typer.Option(help="Seed of the sample corpus generator.")] = 5,
) -> None:
    """Load the bundled sample corpus into Qdrant as MathPal feature-pipeline points."""
    from dataprep.qdrant_source import SourceError, describe_source, open_client, recreate_collection, upsert_payloads
    from mathpal_train.demo.points import point_id, point_vector, sample_points

    points = sample_points(problems, seed)
    try:
        client = open_client(qdrant_path, qdrant_url)
    except SourceError as err:
        raise fail(str(err)) from None
    try:
        vectors = [point_vector(p) for p in points]
        recreate_collection(client, collection, len(vectors[0]))
        upsert_payloads(client, collection, [point_id(p) for p in points], points, vectors)
    finally:
        client.close()
    entries = len({p["entry_id"] for p in points})
    where = describe_source(qdrant_path, qdrant_url)
    console.print(f"Seeded {len(points)} points ({entries} entries) into '{collection}' at {where}")


@app.command("prepare-data")
def prepare_data(
    collection: Annotated[str, typer.Option(help="Qdrant collection to export.")] = DEFAULT_COLLECTION,
    qdrant_path: Annotated[Path, typer.Option(help="Folder of the embedded Qdrant store.")] = DEFAULT_QDRANT_PATH,
    qdrant_url: Annotated[Optional[str], typer.Option(help="Qdrant server URL (key from QDRANT_API_KEY).")] = None,
    type_: Annotated[list[str], typer.Option("--type", help="Keep points of this payload type.")] = ["exam"],
    grade: Annotated[Optional[list[str]], typer.Option(help="Keep this grade_id (repeatable); default all.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for the splits and manifest.")] = DEFAULT_DATA_DIR,
    val_fraction: Annotated[float, typer.Option(help="Share of problems for validation.")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="Share of problems for test.")] = 0.05,
    system_prompt_file: Annotated[Optional[Path], typer.Option(help="File with the system prompt to use.")] = None,
    near_dup_threshold: Annotated[float, typer.Option(
        help="Move validation/test problems to train when a training problem's vector has at least this cosine.",
    )] = 0.97,
    near_dup: Annotated[bool, typer.Option(
        "--near-dup/--no-near-dup", help="Search Qdrant for near-duplicates (needs stored cosine vectors).",
    )] = True,
    strict: Annotated[bool, typer.Option(help="Fail, writing nothing, if any entry is rejected.")] = False,
    log_artifact: Annotated[bool, typer.Option(
        help="Log the files and manifest as a CometML dataset artifact (offline archive without COMET_API_KEY).",
    )] = False,
) -> None:
    """Export a Qdrant collection to chat JSONL train/validation/test splits and a manifest."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dataprep.export import DEFAULT_SYSTEM_PROMPT
    from dataprep.pipeline import ExportError, ExportSettings, run_export
    from dataprep.qdrant_source import SourceError, describe_source, open_source

    system_prompt = DEFAULT_SYSTEM_PROMPT
    if system_prompt_file is not None:
        if not system_prompt_file.is_file():
            raise fail(f"--system-prompt-file {system_prompt_file} does not exist: pass a text file")
        system_prompt = system_prompt_file.read_text(encoding="utf-8").strip()
        if not system_prompt:
            raise fail(f"--system-prompt-file {system_prompt_file} is empty: write the system prompt into it")
    settings = ExportSettings(
        collection=collection, types=list(type_ or []), grades=list(grade or []), val_fraction=val_fraction,
        test_fraction=test_fraction, system_prompt=system_prompt, near_dup=near_dup,
        near_dup_threshold=near_dup_threshold, strict=strict, local=not qdrant_url,
    )
    where = describe_source(qdrant_path, qdrant_url)
    source = {"qdrant": where, "mode": "server" if qdrant_url else "local"}
    notes: list[str] = []

    def artifact(staging: Path, manifest: dict) -> None:
        from dataprep.artifact import log_dataset_artifact

        notes.append(log_dataset_artifact(staging, manifest))

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    started = time.perf_counter()
    read = 0
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        tasks: dict[str, int] = {}

        stages = {"open": f"opening {where}", "scroll": f"reading {collection}", "finish": "splitting",
                  "near_dup": "near-duplicate search", "write": f"writing {out}"}

        def report(kind: str, n: int, total: int) -> None:
            """One bar per stage; the reading and search bars count points (problems) per second."""
            nonlocal read
            if kind in stages:
                for task_id in tasks.values():
                    progress.update(task_id, visible=False)
                tasks.clear()
                tasks["current"] = progress.add_task(stages[kind], total=total or None, rate="")
                return
            task = progress.tasks[tasks["current"]]
            done = task.completed + n
            unit = "points/s" if kind == "read" else "problems/s"
            progress.update(tasks["current"], completed=done, rate=f"{done / max(task.elapsed or 0, 1e-6):,.0f} {unit}")
            if kind == "read":
                read = done

        try:
            manifest = run_export(lambda: open_source(qdrant_path, qdrant_url), settings, out, source, report,
                                  artifact if log_artifact else None)
        except (SourceError, ExportError) as err:
            progress.stop()
            raise fail(str(err)) from None
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    rejected = counts["rejected"]
    near = manifest["near_duplicates"]
    console.print(f"Exported {read:,} points of '{collection}' at {where} in {seconds:.1f} s "
                  f"({read / max(seconds, 1e-6):,.0f} points/s overall)", highlight=False, soft_wrap=True)
    if "skipped" in near:
        console.print(f"near-duplicate check skipped: {near['skipped']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"near-duplicates: {len(near['moved'])} of {near['checked']} validation/test problems "
                      f"moved to train (cosine >= {near['threshold']})", highlight=False, soft_wrap=True)
    console.print(
        f"Wrote {out}/: train {counts['splits']['train']}, validation {counts['splits']['validation']}, "
        f"test {counts['splits']['test']} (kept {counts['kept']} of {counts['entries']} entries; "
        f"{counts['duplicates']} duplicates, {counts['filtered_out']} points filtered out, rejected "
        f"{sum(rejected.values())}{' (' + ', '.join(f'{k}: {v}' for k, v in rejected.items()) + ')' if rejected else ''})",
        highlight=False,
        soft_wrap=True,
    )
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- model


def corpus_texts(data_dir: Path) -> list[str]:
    """Every message of the training split: the text the tiny tokenizer is trained on."""
    train = data_dir / "train.jsonl"
    if not train.is_file():
        raise fail(f"{train} does not exist: run `mathpal prepare-data` first")
    texts = []
    for line in train.read_text(encoding="utf-8").splitlines():
        texts.extend(m["content"] for m in json.loads(line)["messages"])
    return texts


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Option(help="Folder to write the checkpoint to.")] = DEFAULT_TINY_MODEL_DIR,
    data: Annotated[Path, typer.Option(help="Prepared data folder (tokenizer corpus).")] = DEFAULT_DATA_DIR,
    vocab_size: Annotated[int, typer.Option(min=256, help="Tokenizer vocabulary size.")] = 2048,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build a tiny random-weight Gemma-3n with a tokenizer trained on the data (for CPU runs)."""
    from mathpal_train.tiny_model import write_tiny_model

    path = write_tiny_model(corpus_texts(data), out, vocab_size=vocab_size, seed=seed)
    console.print(f"Tiny Gemma-3n written to {path}")


# --------------------------------------------------------------------------- train

# `--quick-test`: the seed's quick test, applied over any recipe.
QUICK_TEST = [("max_steps", 20), ("sequence_len", 1024), ("learning_rate", 1e-4), ("micro_batch_size", 1),
              ("gradient_accumulation_steps", 2), ("save_strategy", "steps"), ("save_steps", 10), ("eval_steps", 10),
              ("warmup_steps", 5)]


def resolve(recipe: Path, sets: list[str], extra: list[tuple[str, object]]) -> dict:
    """The recipe with environment and flag overrides applied, each override printed."""
    from mathpal_train.launcher import load_recipe, parse_set, resolve_recipe

    try:
        base = load_recipe(recipe)
        flags = [*extra, *parse_set(sets)]
        resolved, applied = resolve_recipe(base, dict(os.environ), flags)
    except ValueError as err:
        raise fail(str(err)) from None
    for key, value, source in applied:
        console.print(f"override {key} = {value!r} (from {source})", highlight=False)
    return resolved


def check_recipe(resolved: dict, recipe: Path, gpus: int):
    """Run every recipe check; a problem becomes a one-line error (exit 2)."""
    from mathpal_train.validate import RecipeError, validate_recipe

    try:
        return validate_recipe(resolved, recipe, max(gpus, 1))
    except RecipeError as err:
        raise fail(str(err)) from None


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Axolotl recipe to check.")],
    num_gpus: Annotated[int, typer.Option(min=1, help="GPUs the run will use (for the effective batch).")] = 1,
    set_: Annotated[list[str], typer.Option("--set", help="Override any recipe key: key=value (repeatable).")] = [],
) -> None:
    """Check a recipe offline (Axolotl's schema, unknown keys, files, secrets) and summarise the run."""
    resolved = resolve(recipe, set_, [])
    summary = check_recipe(resolved, recipe, num_gpus)
    console.print(f"[green]ok[/] {recipe}")
    for line in summary.lines():
        console.print("  " + line, highlight=False)


def prepare_launch(
    recipe: Path,
    num_gpus: Optional[int],
    deepspeed: Optional[str],
    flags: list[tuple[str, object]],
    sets: list[str],
    nodes: tuple[int, Optional[int], Optional[str], Optional[int]] = (1, None, None, None),
) -> tuple[list[str], Path, dict]:
    """Resolve, validate, write the resolved recipe into output_dir and build the launch argv."""
    from mathpal_train.launcher import build_launch_argv, visible_gpus, write_resolved_recipe

    gpus = visible_gpus(dict(os.environ)) if num_gpus is None else num_gpus
    if gpus > 1 and not deepspeed:
        deepspeed = "zero2"  # several GPUs and no choice made: ZeRO-2 shards optimizer state and gradients
    if deepspeed:
        ds_path = DEEPSPEED_PRESETS.get(deepspeed, Path(deepspeed))
        if deepspeed in DEEPSPEED_PRESETS and not ds_path.is_file():
            ds_path = Path(__file__).resolve().parent / ds_path  # run from outside the checkout
        if deepspeed not in DEEPSPEED_PRESETS and ds_path.suffix != ".json":
            raise fail(f"--deepspeed {deepspeed}: unknown ZeRO stage; use zero1, zero2, zero3 or a JSON file")
        if not ds_path.is_file():
            raise fail(f"--deepspeed {deepspeed}: {ds_path} not found; use zero1, zero2, zero3 or a JSON file")
        flags = [("deepspeed", str(ds_path)), *flags]
    resolved = resolve(recipe, sets, flags)
    if "output_dir" not in resolved:
        raise fail(f"recipe {recipe}: output_dir is missing: add one so checkpoints have a home")
    num_machines, machine_rank, main_ip, _ = nodes
    if num_machines > 1 and (machine_rank is None or not main_ip):
        raise fail(f"--num-machines {num_machines} needs --machine-rank and --main-process-ip")
    check_recipe(resolved, recipe, gpus)
    resolved_path = write_resolved_recipe(resolved, Path(resolved["output_dir"]))
    return build_launch_argv(resolved_path, gpus, *nodes), resolved_path, resolved


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Axolotl recipe, e.g. recipes/production.yml.")],
    num_gpus: Annotated[Optional[int], typer.Option(min=0, help="GPUs per machine (default: CUDA_VISIBLE_DEVICES or all); 0 = CPU.")] = None,
    deepspeed: Annotated[Optional[str], typer.Option(help="zero1, zero2, zero3 or a DeepSpeed JSON file (default zero2 on > 1 GPU).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Override max_steps.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Override learning_rate.")] = None,
    experiment_name: Annotated[Optional[str], typer.Option(help="CometML experiment name.")] = None,
    quick_test: Annotated[bool, typer.Option(help="The seed's quick test: 20 steps, sequence 1024, lr 1e-4.")] = False,
    debug: Annotated[bool, typer.Option(help="Axolotl debug logging (prints tokenised samples).")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="Override any recipe key: key=value (repeatable).")] = [],
    num_machines: Annotated[int, typer.Option(min=1, help="Machines (nodes) in the run.")] = 1,
    machine_rank: Annotated[Optional[int], typer.Option(min=0, help="This machine's rank (several nodes).")] = None,
    main_process_ip: Annotated[Optional[str], typer.Option(help="Address of rank 0 (several nodes).")] = None,
    main_process_port: Annotated[Optional[int], typer.Option(help="Port of rank 0 (several nodes).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the command and write the resolved recipe only.")] = False,
) -> None:
    """Train with Axolotl: validate, apply overrides, then run `accelerate launch -m axolotl.cli.train`."""
    from mathpal_train.launcher import TRAINING_LOG, job_env, run_logged, visible_gpus

    if num_gpus and not dry_run and num_gpus > (seen := visible_gpus(dict(os.environ))):
        raise fail(f"--num-gpus {num_gpus} asked for, but {seen} GPU(s) visible: lower it, or --num-gpus 0 for the CPU")
    flags: list[tuple[str, object]] = list(QUICK_TEST) if quick_test else []
    if max_steps is not None:
        flags.append(("max_steps", max_steps))
    if learning_rate is not None:
        flags.append(("learning_rate", learning_rate))
    if experiment_name:
        flags.append(("comet_experiment_config", {"name": experiment_name}))
    nodes = (num_machines, machine_rank, main_process_ip, main_process_port)
    argv, resolved_path, resolved = prepare_launch(recipe, num_gpus, deepspeed, flags, set_, nodes)
    env = job_env(Path(resolved["output_dir"]), debug)
    log_path = Path(resolved["output_dir"]) / TRAINING_LOG
    console.print(f"resolved recipe: {resolved_path}", highlight=False)
    console.print(" ".join(argv), highlight=False, soft_wrap=True)
    if dry_run:
        return
    console.print(f"log: {log_path}", highlight=False)
    code = run_logged(argv, env, log_path)
    raise typer.Exit(code=code)


def eval_loss_history(output_dir: Path) -> list[tuple[float, float]]:
    """(epoch, eval_loss) pairs that the trainer logged to ``output_dir/debug.log``, in order."""
    from mathpal_train.train_log import eval_losses

    log = output_dir / "debug.log"
    if not log.is_file():
        return []
    return eval_losses(log.read_text(encoding="utf-8", errors="replace"))


# --------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Base model folder or hub id.")] = str(DEFAULT_TINY_MODEL_DIR),
    adapter: Annotated[Optional[Path], typer.Option(help="LoRA adapter folder (a recipe's output_dir).")] = None,
    baseline: Annotated[bool, typer.Option(help="Also evaluate the base model without the adapter.")] = False,
    data: Annotated[Path, typer.Option(help="Prepared JSONL split.")] = DEFAULT_DATA_DIR / "test.jsonl",
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N problems.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generate call (see docs/performance.md).")] = 32,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit of each answer.")] = 256,
    report_dir: Annotated[Optional[Path], typer.Option(help="Report folder (default reports/<run>).")] = None,
    no_comet: Annotated[bool, typer.Option("--no-comet", help="Do not log to CometML.")] = False,
) -> None:
    """Answer a test split, grade the final answers and write a report (and a CometML log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evals.evaluate import EvalSettings, run_eval

    data, adapter = Path(data), Path(adapter) if adapter is not None else None
    if not data.is_file():
        raise fail(f"{data} does not exist: run `mathpal prepare-data` first")
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise fail(f"--adapter {adapter} has no adapter_config.json: pass the output_dir of a finished LoRA run")
    if baseline and adapter is None:
        raise fail("--baseline compares the model with and without its adapter: pass --adapter too")
    if Path(model).exists() is False and "/" not in model:
        raise fail(f"--model {model} is neither a folder nor a hub id: run `mathpal tiny-model` or pass org/name")
    settings = EvalSettings(
        model=model, data=data, adapter=str(adapter) if adapter else None, baseline=baseline, limit=limit,
        batch_size=batch_size, max_new_tokens=max_new_tokens, report_dir=report_dir, comet=not no_comet,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            path, metrics = run_eval(settings, progress)
    except ValueError as err:
        raise fail(str(err)) from None
    print_report_summary(path, metrics)


def print_report_summary(path: Path, metrics: dict) -> None:
    """The metric table, the base-vs-tuned verdict (when there is one) and where the report is."""
    from evals.report import console_summary, verdict

    console.print(console_summary(metrics))
    sentence = verdict(metrics)
    if sentence:
        console.print(sentence, highlight=False, soft_wrap=True)
    console.print(f"report: {path}", highlight=False)


@app.command()
def score(
    predictions: Annotated[Path, typer.Argument(help="JSONL, one object a line: question, answer (gold final answer), prediction (whole response); optional reference, grade_id, topic, id, model.")],
    report_dir: Annotated[Optional[Path], typer.Option(help="Report folder (default reports/<run>).")] = None,
    no_comet: Annotated[bool, typer.Option("--no-comet", help="Do not log to CometML.")] = False,
) -> None:
    """Grade answers you already have, exactly as eval does, and write the same report."""
    from evals.evaluate import run_score

    predictions = Path(predictions)
    if not predictions.is_file():
        raise fail(f"{predictions} does not exist: pass a JSONL file with question, answer and prediction on each line")
    try:
        path, metrics = run_score(predictions, report_dir, comet=not no_comet)
    except ValueError as err:
        raise fail(str(err)) from None
    print_report_summary(path, metrics)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Training steps (default: the recipe's).")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only N test problems.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit of each eval answer.")] = 160,
    recipe: Annotated[Path, typer.Option(help="CPU recipe to train.")] = Path("recipes/smoke.yml"),
) -> None:
    """Run the whole pipeline on a CPU: seed Qdrant, prepare data, tiny model, train, eval."""
    from mathpal_train.launcher import TRAINING_LOG, job_env, run_logged

    timings: list[tuple[str, float]] = []

    def stage(name: str, fn, *args, **kwargs):
        console.rule(f"[bold]{name}")
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        timings.append((name, time.perf_counter() - started))
        return result

    stage("seed-qdrant", seed_qdrant)
    stage("prepare-data", prepare_data)
    stage("tiny-model", tiny_model)

    def run_training() -> Path:
        flags = [("max_steps", max_steps)] if max_steps else []
        argv, _, resolved = prepare_launch(recipe, 0, None, flags, [])
        output = Path(resolved["output_dir"])
        console.print(" ".join(argv), highlight=False, soft_wrap=True)
        code = run_logged(argv, job_env(output), output / TRAINING_LOG)
        if code != 0:
            raise fail(f"training exited with status {code}: see the Axolotl log above")
        return output

    output_dir = stage("train", run_training)
    losses = eval_loss_history(output_dir)
    report_dir = Path("reports") / "demo"
    stage(
        "eval",
        eval_,
        adapter=output_dir,
        baseline=True,
        limit=eval_limit,
        max_new_tokens=max_new_tokens,
        report_dir=report_dir,
    )

    table = Table(title="mathpal demo")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in timings:
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("total", f"{sum(s for _, s in timings):.1f}")
    console.print(table)
    if losses:
        console.print(f"eval loss: start {losses[0][1]:.4f} → end {losses[-1][1]:.4f} ({len(losses)} evaluations)")
    console.print(f"adapter: {output_dir}   report: {report_dir}/report.md", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
