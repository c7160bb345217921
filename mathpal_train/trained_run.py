"""A training run's folder as the commands after training find it: ask, merge, eval, the model artifact.

Axolotl leaves the adapter, the tokenizer (with the chat template it trained with) and
``mathpal train``'s ``recipe.resolved.yml`` in ``output_dir``. ``mathpal train`` writes the run
record ``mathpal_run.json`` (``mathpal_train.run_state``) before the job starts, into
``pending/`` until the run really trains (``mathpal_train.run_folder``); ``RunStatePlugin``
marks it finished as the job's last act, and ``mathpal train`` then records how the job
ended: finished, stopped by its signal, or failed with its exit code. The record holds the
Comet experiment key given to the job (so the model artifact and later evaluations land in
the same experiment), the training system prompt (read from the training data at launch,
before a re-export can change it), the base model and the data files as absolute paths
with each file's sha256, the tokenised cache they key (``mathpal_train.training_data``), and
the sha256 of the data export's ``manifest.json`` (which links the run to its dataset artifact).

A run launched by hand (``accelerate launch -m axolotl.cli.train``) has only the plugin's
finished mark: the commands then fall back to the recipe beside the adapter, the adapter's
own base model and the data the recipe names.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mathpal_common.atomic_files import open_to_umask
from mathpal_train import run_folder
from mathpal_train.recipes import RESOLVED_RECIPE_NAME, load_recipe, resolved_recipe_text
from mathpal_train.run_state import RUN_RECORD, adapter_problem, file_sha256, read_record, write_record
from mathpal_train.training_data import local_datasets, prepared_path

if TYPE_CHECKING:
    from mathpal_train.launch import JobEnd, PreparedRun


@dataclass(frozen=True)
class TrainedRun:
    """A finished (LoRA) run: its folder, the recipe it ran and its record ({} without one)."""

    output_dir: Path
    recipe: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def base_model(self) -> str:
        """The model the adapter was trained on: the record's (absolute), the recipe's, else PEFT's own note."""
        return next(iter(self.named_bases), "")

    @property
    def named_bases(self) -> list[str]:
        """Every name the run gives its base model, most trusted first (a relative one may be relative
        to the folder training ran in, which is not this one)."""
        try:
            config = json.loads((self.output_dir / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        peft = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        return [str(name) for name in (self.record.get("base_model"), self.recipe.get("base_model"), peft) if name]

    @property
    def tokenizer_dir(self) -> str:
        """Axolotl saves the tokenizer it trained with (chat template included) beside the adapter."""
        if (self.output_dir / "tokenizer_config.json").is_file():
            return str(self.output_dir)
        return self.base_model

    @property
    def experiment_key(self) -> str | None:
        return (self.record.get("comet") or {}).get("experiment_key")

    def system_prompt(self) -> tuple[str, str]:
        """The training system prompt and where it came from (the record, the data, or the default)."""
        if self.record.get("system_prompt"):
            return self.record["system_prompt"], str(self.output_dir / RUN_RECORD)
        return training_system_prompt(self.recipe)


def open_run(path: Path) -> TrainedRun:
    """The run of ``path``: its output folder, or a recipe whose ``output_dir`` holds the adapter.

    A recipe's resolved copy in ``output_dir`` is preferred to the recipe itself: it has the
    overrides the run ran with. A folder with no adapter is a one-line ``ValueError``.
    """
    path = Path(path)
    if path.is_file():
        recipe = load_recipe(path)
        if "output_dir" not in recipe:
            raise ValueError(f"recipe {path} has no output_dir: pass the run's output folder instead")
        output_dir = Path(recipe["output_dir"])
    elif path.is_dir():
        output_dir, recipe = path, {}
    else:
        raise ValueError(f"{path} does not exist: pass a finished run's output_dir (or its recipe)")
    if not (output_dir / "adapter_config.json").is_file():
        raise ValueError(
            f"{output_dir} has no adapter_config.json: pass the output_dir of a finished LoRA run "
            "(training writes the adapter at its end)"
        )
    if (output_dir / RESOLVED_RECIPE_NAME).is_file():
        recipe = load_recipe(output_dir / RESOLVED_RECIPE_NAME)
    return TrainedRun(output_dir, recipe, read_record(output_dir))


def check_adapter(
    path: Path, model: str | None = None, allow_unfinished: bool = False, allow_other_base: bool = False
) -> tuple[TrainedRun, str]:
    """The one check of an adapter before eval, ask or merge loads it: the run (``open_run``) and the
    base model to load it on (``model``, else the one it was trained on). A ``ValueError`` in one line:

    * not a finished run's adapter (no mark, weights changed since it), unless ``allow_unfinished``;
    * weights missing or cut short (a full disk, a kill during the save);
    * a base model that is not the one the adapter names (PEFT would load it on any model of the
      same shape, and answer), unless ``allow_other_base`` (a local copy of the hub model, say);
    * a base model that is neither a folder here nor a hub id.
    """
    run = open_run(path)
    problem = adapter_problem(run.output_dir, allow_unfinished)
    if problem:
        raise ValueError(problem)
    named = run.named_bases
    base = model or run.base_model
    if not base:
        raise ValueError(f"{run.output_dir} names no base model (no record, no base_model_name_or_path): pass --model")
    if named and not allow_other_base and not any(same_model(base, name) for name in named):
        raise ValueError(
            f"{run.output_dir} was trained on {named[0]}, not {base}: pass --model {named[0]}, "
            f"or --allow-other-base if {base} is a copy of it"
        )
    if not Path(base).exists() and "/" not in base:
        raise ValueError(f"base model {base} of {run.output_dir} is not a folder here nor a hub id: pass --model")
    return run, base


def same_model(a: str, b: str) -> bool:
    """The same name, or two paths to one folder (relative or absolute, through links)."""
    if a == b:
        return True
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- what the run trained on


def dataset_manifest(recipe: dict[str, Any]) -> tuple[Path, str] | None:
    """The ``manifest.json`` of the export the recipe trains on (beside ``datasets[0].path``) and its sha256."""
    datasets = recipe.get("datasets") or []
    if not datasets or not isinstance(datasets[0], dict) or not datasets[0].get("path"):
        return None
    data = Path(str(datasets[0]["path"]))
    manifest = (data if data.is_dir() else data.parent) / "manifest.json"
    if not manifest.is_file():
        return None
    return manifest, hashlib.sha256(manifest.read_bytes()).hexdigest()


def training_system_prompt(recipe: dict[str, Any]) -> tuple[str, str]:
    """The system message of the recipe's first training row (every row of an export has the same
    one), else ``dataprep.export.DEFAULT_SYSTEM_PROMPT``; and where it came from."""
    datasets = recipe.get("datasets") or []
    path = Path(str(datasets[0].get("path", ""))) if datasets and isinstance(datasets[0], dict) else None
    if path is not None and path.is_file():
        with path.open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        try:
            messages = json.loads(first).get("messages") or []
        except (json.JSONDecodeError, AttributeError):
            messages = []
        system = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
        if system:
            return system, str(path)
    from dataprep.export import DEFAULT_SYSTEM_PROMPT

    return DEFAULT_SYSTEM_PROMPT, "the default of `mathpal prepare-data`"


# --------------------------------------------------------------------------- the record


def experiment_key_of(output_dir: Path) -> str | None:
    """The Comet experiment key a run's record names (None for a run without one)."""
    return (read_record(output_dir).get("comet") or {}).get("experiment_key")


def absolute(path: Any) -> Any:
    """A local path as an absolute one (the record is read from other folders); anything else unchanged."""
    return os.path.abspath(str(path)) if path and Path(str(path)).exists() else path


def start_record(recipe: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The record of a run about to launch (status "launched"); the job's Comet key is in it.

    Every launch gets a new key, a rerun after a crash too: offline, comet_ml names the
    archive after the key and a suffix drawn after the trainer seeds ``random``, so a
    second launch under the same key would overwrite the first one's archive.
    """
    from mathpal_common.comet import COMET_PROJECT, new_experiment_key

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
    comet = record.get("comet") or {}
    return {"COMET_EXPERIMENT_KEY": comet["experiment_key"]} if comet.get("experiment_key") else {}


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
    from mathpal_train.launch import prepare_job, run_logged
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
    finished = end.code == 0 and record.get("finished") is True
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
    elif record.get("comet") and (output_dir / "adapter_config.json").is_file():
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
