"""A training run's folder as the commands after training find it: ask, merge, eval, the model artifact.

Axolotl leaves the adapter, the tokenizer (with the chat template it trained with) and
``mathpal train``'s ``recipe.resolved.yml`` in ``output_dir``. ``mathpal train`` adds the run
record ``mathpal_run.json`` (``mathpal_train.run_state``) before the job starts;
``RunStatePlugin`` marks it finished as the job's last act, and ``mathpal train`` then
records how the job ended. The record holds the Comet experiment key given to the job (so
the model artifact and later evaluations land in the same experiment), the training system
prompt (read from the training data at launch, before a re-export can change it) and the
sha256 of the data export's ``manifest.json`` (which links the run to its dataset artifact).

A run launched by hand (``accelerate launch -m axolotl.cli.train``) has only the plugin's
finished mark: the commands then fall back to the recipe beside the adapter, the adapter's
own base model and the data the recipe names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_train.recipes import RESOLVED_RECIPE_NAME, load_recipe
from mathpal_train.run_state import RUN_RECORD, read_record, write_record


@dataclass(frozen=True)
class TrainedRun:
    """A finished (LoRA) run: its folder, the recipe it ran and its record ({} without one)."""

    output_dir: Path
    recipe: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def base_model(self) -> str:
        """The model the adapter was trained on: the record's, the recipe's, else PEFT's own note."""
        if self.record.get("base_model"):
            return str(self.record["base_model"])
        if self.recipe.get("base_model"):
            return str(self.recipe["base_model"])
        config = json.loads((self.output_dir / "adapter_config.json").read_text(encoding="utf-8"))
        return str(config.get("base_model_name_or_path") or "")

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


def start_record(recipe: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The record of a run about to launch (status "running"); the job's Comet key is in it.

    Every launch gets a new key, a rerun after a crash too: offline, comet_ml names the
    archive after the key and a suffix drawn after the trainer seeds ``random``, so a
    second launch under the same key would overwrite the first one's archive.
    """
    from mathpal_train.comet import COMET_PROJECT, new_experiment_key

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
    return {
        "status": "running",
        "base_model": recipe.get("base_model"),
        "model_type": recipe.get("model_type"),
        "chat_template": recipe.get("chat_template"),
        "system_prompt": system_prompt,
        "dataset": {
            "path": str((recipe.get("datasets") or [{}])[0].get("path", "")),
            "manifest": str(manifest[0]) if manifest else None,
            "manifest_sha256": manifest[1] if manifest else None,
        },
        "comet": comet,
    }


def job_comet_env(record: dict[str, Any]) -> dict[str, str]:
    """What the training job needs to log to the recorded experiment (Axolotl's Comet callback
    reads ``COMET_EXPERIMENT_KEY`` through comet_ml)."""
    comet = record.get("comet") or {}
    return {"COMET_EXPERIMENT_KEY": comet["experiment_key"]} if comet.get("experiment_key") else {}


def run_training(argv: list[str], env: dict[str, str], log_path: Path, recipe: dict[str, Any]) -> tuple[int, list[str]]:
    """Launch the job with its run record; after a success, finish the record and log the model
    artifact. Returns the job's exit code and the lines to print.

    The artifact is a side channel: a failure there is a line, never a failed run.
    """
    from mathpal_train.launch import run_logged

    output_dir = Path(recipe["output_dir"])
    record = start_record(recipe, env)
    write_record(output_dir, record)
    code = run_logged(argv, {**env, **job_comet_env(record)}, log_path)
    record = read_record(output_dir)  # RunStatePlugin marked it finished, or not, in the job
    if code != 0:
        write_record(output_dir, {**record, "status": f"stopped (exit {code})"})
        return code, []
    finished = record.get("finished") is True
    write_record(output_dir, {**record, "status": "finished" if finished else "ended without its finished mark"})
    lines = [f"run record: {output_dir / RUN_RECORD}"]
    if not finished:
        lines.append(
            f"warning: {output_dir} was not marked finished: its recipe lacks "
            "mathpal_train.run_state.RunStatePlugin, so no model artifact is logged"
        )
    elif record.get("comet") and (output_dir / "adapter_config.json").is_file():
        from mathpal_train.model_artifact import log_model_artifact

        try:
            lines.append(log_model_artifact(open_run(output_dir)))
        except Exception as error:  # the run itself succeeded: say so, keep the exit code
            lines.append(f"warning: the model artifact was not logged ({type(error).__name__}: {error})")
    return code, lines
