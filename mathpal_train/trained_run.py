"""A training run's folder as the commands after training find it: ask, merge, eval, the model artifact.

``load_trained`` is the one loader they share: the base model, adapter, tokenizer and system
prompt of a run, checked once (``check_adapter``). How a run is launched and recorded is
``mathpal_train.train_job``.

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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import file_sha256
from mathpal_common.prompt import DEFAULT_PROMPT_SOURCE, DEFAULT_SYSTEM_PROMPT
from mathpal_train.recipes import RESOLVED_RECIPE_NAME, load_recipe
from mathpal_train.run_record import RUN_RECORD, RunRecord, read_record
from mathpal_train.run_state import adapter_problem


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
        return [str(name) for name in (self.info.base_model, self.recipe.get("base_model"), peft) if name]

    @property
    def tokenizer_dir(self) -> str:
        """Axolotl saves the tokenizer it trained with (chat template included) beside the adapter."""
        if (self.output_dir / "tokenizer_config.json").is_file():
            return str(self.output_dir)
        return self.base_model

    @property
    def info(self) -> RunRecord:
        """The record, typed."""
        return RunRecord.from_dict(self.record)

    @property
    def experiment_key(self) -> str | None:
        return self.info.experiment_key

    def system_prompt(self) -> tuple[str, str]:
        """The training system prompt and where it came from (the record, the data, or the default)."""
        if self.info.system_prompt:
            return self.info.system_prompt, str(self.output_dir / RUN_RECORD)
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


@dataclass(frozen=True)
class TrainedModel:
    """What eval, ask and merge load from a trained run, decided once: the base model (the run's, or
    an override that passed ``check_adapter``), the adapter folder, the tokenizer it trained with,
    and the system prompt it trained under (with where that came from)."""

    run: TrainedRun
    base_model: str
    tokenizer: str
    system_prompt: str
    prompt_source: str

    @property
    def adapter(self) -> Path:
        return self.run.output_dir

    @property
    def experiment_key(self) -> str | None:
        return self.run.experiment_key


def load_trained(
    path: Path, model: str | None = None, allow_unfinished: bool = False, allow_other_base: bool = False
) -> TrainedModel:
    """The one loader of a trained run for eval, ask and merge (a one-line ``ValueError`` as
    ``check_adapter`` says)."""
    run, base = check_adapter(path, model, allow_unfinished, allow_other_base)
    prompt, source = run.system_prompt()
    return TrainedModel(run, base, run.tokenizer_dir, prompt, source)


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
    return manifest, file_sha256(manifest)


def training_system_prompt(recipe: dict[str, Any]) -> tuple[str, str]:
    """The system message of the recipe's first training row (every row of an export has the same
    one), else ``mathpal_common.prompt.DEFAULT_SYSTEM_PROMPT``; and where it came from."""
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
    return DEFAULT_SYSTEM_PROMPT, DEFAULT_PROMPT_SOURCE
