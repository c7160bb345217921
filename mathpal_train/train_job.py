"""``mathpal train`` as one call: plan the launch, prepare the run, run the job, record how it ended.

``train_job.train`` is what the command calls, with its options as one ``TrainOptions``:

1. plan: GPUs, DeepSpeed, machines (``launch.plan_launch``);
2. prepare: the recipe with its overrides, validated, and the ``accelerate launch`` argv
   (``launch.prepare_run``), and the peak-memory estimate (``memory.memory_lines``);
3. run: the folder held (``run_folder.lock``), the recipe and record written to ``pending/``
   until the job really trains, the job run with its output copied to the log (``launch.run_logged``);
4. finish: how it ended written into the record (finished, stopped with its signal, failed with
   its exit code), and for a finished run the adapter logged as a Comet model artifact.

A dry run stops after 2 and writes nothing.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mathpal_common.atomic_files import file_sha256, open_to_umask
from mathpal_common.comet import COMET_PROJECT, new_experiment_key
from mathpal_common.terminal import library_noise
from mathpal_train import run_folder
from mathpal_train.launch import JobEnd, PreparedRun, plan_launch, prepare_job, prepare_run, run_logged
from mathpal_train.memory import memory_lines
from mathpal_train.recipes import quick_test_overrides, resolved_recipe_text
from mathpal_train.run_record import RUN_RECORD, RunRecord, read_record, write_record
from mathpal_train.trained_run import dataset_manifest, open_run, training_system_prompt
from mathpal_train.training_data import local_datasets, prepared_path


def absolute(path: Any) -> Any:
    """A local path as an absolute one (the record is read from other folders); anything else unchanged."""
    return os.path.abspath(str(path)) if path and Path(str(path)).exists() else path


def start_record(recipe: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The record of a run about to launch (status "launched"); the job's Comet key is in it.

    Every launch gets a new key, a rerun after a crash too: offline, comet_ml names the
    archive after the key and a suffix drawn after the trainer seeds ``random``, so a
    second launch under the same key would overwrite the first one's archive.
    """
    comet = None
    if recipe.get("use_comet"):
        key = recipe.get("comet_experiment_key") or env.get("COMET_EXPERIMENT_KEY") or new_experiment_key()
        comet = {
            "experiment_key": key,
            "project": recipe.get("comet_project_name") or COMET_PROJECT,
            "online": bool(env.get("COMET_API_KEY")),
        }
    system_prompt, _ = training_system_prompt(recipe)
    manifest = dataset_manifest(recipe)
    files = {
        os.path.abspath(str(entry["path"])): file_sha256(Path(str(entry["path"])))
        for _, _, entry in local_datasets(recipe)
        if Path(str(entry.get("path"))).is_file()
    }
    return {
        "status": "launched",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": run_folder.now(),
        "base_model": absolute(recipe.get("base_model")),
        "model_type": recipe.get("model_type"),
        "chat_template": recipe.get("chat_template"),
        "system_prompt": system_prompt,
        "dataset": {
            "path": absolute((recipe.get("datasets") or [{}])[0].get("path", "")),
            "manifest": os.path.abspath(manifest[0]) if manifest else None,
            "manifest_sha256": manifest[1] if manifest else None,
            "files": files,
            "prepared_path": os.path.abspath(prepared_path(recipe)),
        },
        "comet": comet,
    }


def job_comet_env(record: dict[str, Any]) -> dict[str, str]:
    """What the training job needs to log to the recorded experiment (Axolotl's Comet callback
    reads ``COMET_EXPERIMENT_KEY`` through comet_ml)."""
    key = RunRecord.from_dict(record).experiment_key
    return {"COMET_EXPERIMENT_KEY": key} if key else {}


class Outcome(NamedTuple):
    """How ``mathpal train`` ends: its exit code, the lines to print, and the error line of a failed job."""

    code: int
    lines: list[str]
    error: str | None = None


def run_training(run: PreparedRun, debug: bool = False, note: Callable[[str], None] = print) -> Outcome:
    """Launch a prepared run in its folder and record how it ended.

    The folder is held for the whole job (``run_folder.lock``: a second launch into it is refused
    in one line); the recipe and record go to ``pending/`` until the run trains. After a success
    the model artifact is logged: a side channel, whose failure is a line, never a failed run.
    ``note`` gets each line the user should read before the job's output (and a log that fills up).
    """
    from mathpal_train.train_log import terminal_line

    output_dir = run.output_dir
    first_machine = run.plan is None or not run.plan.machine_rank  # the other machines of a run share its folder
    with run_folder.lock(output_dir) if first_machine else nullcontext(None) as held:
        env, notes = prepare_job(run, debug)
        for line in notes:
            note(line)
        record = start_record(run.resolved, env)
        run_folder.write_pending(output_dir, resolved_recipe_text(run.resolved, output_dir), record)
        end = run_logged(
            run.argv,
            {**env, **job_comet_env(record)},
            run.log_path,
            show=None if debug else terminal_line,
            pass_fds=() if held is None else (held,),
            warn=note,
        )
        return finish_record(output_dir, end, run.log_path)


def ended_status(end: JobEnd) -> dict[str, Any]:
    """How a job ended, for the record: stopped with its signal, failed with its exit code, or exit 0."""
    status: dict[str, Any] = {"exit_code": end.code}
    if end.stop is not None or end.code > 128 and end.code - 128 in signal.valid_signals():
        status.update(status="stopped", signal=signal.Signals(end.stop or end.code - 128).name)
    elif end.code != 0:
        status.update(status="failed", error=end.last_error)
    else:
        status["status"] = "ended"
    if end.log_problem:
        status["log"] = f"incomplete: {end.log_problem}"
    return status


def finish_record(output_dir: Path, end: JobEnd, log_path: Path) -> Outcome:
    """Write how the job ended into the record it ran under, and say it in a few lines.

    A launch that never reached training has its own record in ``pending/`` (the folder's
    finished run, if any, is as it was); a run that trained updates ``mathpal_run.json``.
    """
    status = ended_status(end)
    how = _how(status)
    failed = (
        f"training failed (exit {end.code}): {end.last_error or 'no error line'} (the job's whole output: {log_path})"
        if status["status"] == "failed"
        else None
    )
    pending = run_folder.settle_pending(output_dir, {**status, "status": f"{status['status']} before training"})
    if pending is not None:
        line = f"{how} before training started: {output_dir} is as it was; this launch's record: {pending}"
        return Outcome(end.code, [line], failed)
    open_to_umask(output_dir)  # savers that write through tempfile leave 0600 files (the adapter)
    record = read_record(output_dir)
    recorded = RunRecord.from_dict(record)
    finished = end.code == 0 and recorded.finished
    if end.code == 0:
        status["status"] = "finished" if finished else "ended without its finished mark"
    write_record(output_dir, {**record, **status, "ended_at": run_folder.now()})
    lines = [f"run record: {output_dir / RUN_RECORD} ({status['status'] if end.code == 0 else how})"]
    if end.code != 0:
        return Outcome(end.code, lines, failed)
    if not finished:
        lines.append(
            f"warning: {output_dir} was not marked finished (mathpal_train.run_state.RunStatePlugin found no "
            "adapter saved after the training loop), so no model artifact is logged"
        )
    elif recorded.comet and (output_dir / "adapter_config.json").is_file():
        from mathpal_train.model_artifact import log_model_artifact

        try:
            lines.append(log_model_artifact(open_run(output_dir)))
        except Exception as error:  # the run itself succeeded: say so, keep the exit code
            lines.append(f"warning: the model artifact was not logged ({type(error).__name__}: {error})")
    return Outcome(end.code, lines)


def _how(status: dict[str, Any]) -> str:
    if status["status"] == "stopped":
        return f"stopped by {status['signal']} (exit {status['exit_code']})"
    if status["status"] == "failed":
        return f"failed (exit {status['exit_code']})"
    return f"ended (exit {status['exit_code']})"


# --------------------------------------------------------------------------- the one call


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``mathpal train`` takes besides the recipe (the command's options, typed)."""

    num_gpus: int | None = None
    deepspeed: str | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    experiment_name: str | None = None
    quick_test: bool = False
    debug: bool = False
    sets: list[str] = field(default_factory=list)
    num_machines: int = 1
    machine_rank: int | None = None
    main_process_ip: str | None = None
    main_process_port: int | None = None
    dry_run: bool = False

    def flags(self) -> list[tuple[str, Any, str]]:
        """The recipe keys the options set, with the option that set each (after ``--quick-test``'s)."""
        flags = quick_test_overrides() if self.quick_test else []
        flags += [
            (key, value, option)
            for key, value, option in (
                ("max_steps", self.max_steps, "--max-steps"),
                ("learning_rate", self.learning_rate, "--learning-rate"),
            )
            if value is not None
        ]
        if self.experiment_name:
            flags.append(("comet_experiment_config", {"name": self.experiment_name}, "--experiment-name"))
        return flags


def prepare(recipe: Path, options: TrainOptions) -> tuple[PreparedRun, list[str], str | None]:
    """Steps 1 and 2: the prepared run, the memory estimate's lines and its warning (or None).
    A one-line ``ValueError`` for any problem (launch, recipe, overrides, the folder)."""
    plan = plan_launch(
        options.num_gpus,
        options.deepspeed,
        num_machines=options.num_machines,
        machine_rank=options.machine_rank,
        main_process_ip=options.main_process_ip,
        main_process_port=options.main_process_port,
        check_visible=not options.dry_run,
    )
    with library_noise(options.debug):
        run = prepare_run(recipe, plan, options.flags(), options.sets, check_folder=not options.dry_run)
        memory, warning = memory_lines(run.resolved, plan.processes)
    return run, memory, warning


class Say(NamedTuple):
    """Where ``train`` reports: lines to show, warnings, the overrides applied, and a failed job's error."""

    lines: Callable[..., None]
    warning: Callable[[str | None], None]
    overrides: Callable[[list[tuple[str, Any, str]]], None]
    error: Callable[[str], None]


def train(recipe: Path, options: TrainOptions, say: Say) -> int:
    """``mathpal train``: plan → prepare → (a dry run stops here) → run → finish; the exit code.

    Problems before the job starts are a one-line ``ValueError``; the job's own end is the exit code
    (0 finished, 128 + signal when stopped, the job's code when it failed), said through ``say``.
    """
    run, memory, warning = prepare(recipe, options)
    say.overrides(run.applied)
    say.lines(memory[0], f"resolved recipe: {run.resolved_path}", " ".join(run.argv))
    for note in [*run.summary.notes, warning]:
        say.warning(note)
    if options.dry_run:
        say.lines("dry run: nothing written, nothing launched; the resolved recipe would be:")
        say.lines(resolved_recipe_text(run.resolved, run.output_dir))
        return 0
    say.lines(f"log: {run.log_path}")
    outcome = run_training(run, options.debug, note=say.warning)
    say.lines(*outcome.lines)
    if outcome.error:
        say.error(outcome.error)
    return outcome.code
