"""Check a recipe before a long run: Axolotl's own schema, plus what it lets through.

Axolotl validates types and combinations, but silently drops keys it does not
know (``sample_pakcing: true`` trains without packing), takes numbers that make no
run (``max_steps: 0`` trains a whole epoch, ``micro_batch_size: 0`` fails after
start-up), and only discovers a missing or broken dataset, an empty model folder or
a bad DeepSpeed file after half a minute, as a traceback. Everything here runs
offline: hub models are not fetched, and a CPU machine checks a GPU recipe against
the GPU it is written for.

Every error is one line that starts with where the bad value came from: the recipe
file, or the environment variable or flag that overrode it (``origins``).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_train.training_data import DataError, DataFile, read_data_files, tokenizer_source

# The GPU a recipe is checked against when this machine has none: bf16-capable
# (Ampere or newer), as every GPU recipe here requires.
ASSUMED_GPU = {"bf16": True, "fp8": False, "tf32": True, "compute_capability": "sm_90"}

# Keys that hold credentials (not `pad_token`: special tokens are text, not secrets).
SECRET_KEYS = re.compile(r"(api_key|access_token|auth_token|hf_token|hub_token|secret|password)$", re.IGNORECASE)
SECRET_VALUES = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})\b")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLUGIN_EXAMPLE = "mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"
# What a local base model folder holds when `save_pretrained` wrote it.
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def _whole(least: int) -> tuple[Callable[[Any], bool], str]:
    test = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least  # noqa: E731
    return test, f"a whole number of at least {least}"


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _steps(v: Any) -> bool:
    """HF's save/eval/logging steps: a whole number of steps, or a fraction of the run below 1."""
    return _whole(1)[0](v) or (isinstance(v, float) and 0 < v < 1)


# The numbers a run is made of, with what each must be: Axolotl takes 0 and negatives here and then
# fails after start-up (a batch of 0), trains something else (max_steps 0 or -5: whole epochs) or
# drops every row (a sequence length shorter than any).
NUMBER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_steps": _whole(1),
    "micro_batch_size": _whole(1),
    "eval_batch_size": _whole(1),
    "gradient_accumulation_steps": _whole(1),
    "sequence_len": _whole(1),
    "warmup_steps": _whole(0),
    "learning_rate": (_positive, "a number above 0"),
    "num_epochs": (_positive, "a number above 0"),
    "save_steps": (_steps, "a whole number of at least 1 (or a fraction of the run below 1)"),
    "eval_steps": (_steps, "a whole number of at least 1 (or a fraction of the run below 1)"),
    "logging_steps": (_steps, "a whole number of at least 1 (or a fraction of the run below 1)"),
}
NUMBER_HINTS = {"max_steps": " (0 or less would train whole epochs: to do that, leave max_steps out)"}


class RecipeError(ValueError):
    """A recipe problem, worded as one line that names the key or file and the fix."""


def blame(key: str, path: Path, origins: Mapping[str, str] | None) -> str:
    """Where the value of ``key`` came from, to start an error line: the environment variable or flag
    that set it (``$BATCH_SIZE=0``, ``--set lora_r=abc``), else the recipe file."""
    return (origins or {}).get(key.split(".")[0]) or str(path)


@dataclass(frozen=True)
class RecipeSummary:
    """What a run of this recipe will do, in the numbers a user plans with."""

    model: str
    adapter: str
    gpus: int
    micro_batch: int
    accumulation: int
    effective_batch: int
    tokens_per_step: int
    total_steps: int
    train_examples: int | None
    epochs: float | None
    packed: bool
    checkpoints: str
    notes: tuple[str, ...] = field(default=())  # what the user should know before launching (one line each)

    def lines(self) -> list[str]:
        epochs = f"{self.epochs:.2f}" if self.epochs is not None else "unknown (dataset not local)"
        if self.packed and self.epochs is not None:
            epochs = f"at least {epochs} (sample packing puts several examples in one sequence)"
        examples = self.train_examples if self.train_examples is not None else "?"
        return [
            f"model:            {self.model}",
            f"adapter:          {self.adapter}",
            f"effective batch:  {self.effective_batch} = {self.micro_batch} micro batch x "
            f"{self.accumulation} accumulation x {self.gpus} GPU(s)",
            f"tokens per step:  up to {self.tokens_per_step:,} (effective batch x sequence_len)",
            f"total steps:      {self.total_steps}",
            f"epochs over data: {epochs}; {examples} training examples",
            f"checkpoints:      {self.checkpoints}",
        ]


def known_keys(cfg: dict[str, Any]) -> set[str]:
    """Every top-level key Axolotl's schema accepts (field names and aliases, plugins included)."""
    from axolotl.utils.config import merge_input_args
    from axolotl.utils.schemas.config import AxolotlConfigWCapabilities

    model = AxolotlConfigWCapabilities
    if cfg.get("plugins"):
        from axolotl.utils.config import prepare_plugins
        from axolotl.utils.dict import DictDefault

        prepare_plugins(DictDefault(dict(cfg)))
        model, _ = merge_input_args()
    keys = set(model.model_fields)
    keys.update(f.alias for f in model.model_fields.values() if f.alias)
    return keys


def check_unknown_keys(cfg: dict[str, Any], path: Path) -> None:
    """Unknown top-level keys are errors with a 'did you mean' (Axolotl would drop them)."""
    keys = known_keys(cfg)
    for key in cfg:
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.75)
            hint = f"did you mean '{close[0]}'?" if close else "remove it or check Axolotl's config reference"
            raise RecipeError(f"{path}: unknown key '{key}' (Axolotl would silently ignore it): {hint}")


def check_plugins(cfg: dict[str, Any], path: Path) -> None:
    """Every plugin the recipe names imports and is a class: Axolotl skips one that does not with one log
    line and trains without it (and, later, rejects its keys as unknown)."""
    import importlib

    for name in cfg.get("plugins") or []:
        module_name, _, class_name = str(name).rpartition(".")
        if not module_name:
            raise RecipeError(f"{path}: plugin {name!r} is not module.Class: write e.g. {PLUGIN_EXAMPLE}")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            try:  # as Axolotl does, short names are looked up among its integrations too
                module = importlib.import_module(f"axolotl.integrations.{module_name}")
            except ModuleNotFoundError:
                raise RecipeError(
                    f"{path}: plugin {name} cannot be imported ({err}): install its package or fix the name"
                ) from None
        except Exception as err:  # noqa: BLE001 - whatever the module raised, one line naming it
            first = str(err).splitlines()[0] if str(err) else ""
            raise RecipeError(
                f"{path}: plugin {name} fails to import ({type(err).__name__}: {first}): fix or remove it"
            ) from None
        if not isinstance(getattr(module, class_name, None), type):
            raise RecipeError(f"{path}: plugin {name}: {module.__name__} has no class {class_name}: fix the name")


def check_secrets(cfg: dict[str, Any], path: Path) -> None:
    """No credentials in a file that gets copied, committed and logged: they belong in the environment."""

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                name = f"{where}.{key}" if where else str(key)
                if SECRET_KEYS.search(str(key)) and isinstance(value, str) and value.strip():
                    raise RecipeError(f"{path}: '{name}' holds a secret: remove it and set it in the environment")
                walk(value, name)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str) and SECRET_VALUES.search(node):
            raise RecipeError(f"{path}: '{where}' looks like a secret token: move it to the environment")

    walk(cfg, "")


def check_files(cfg: dict[str, Any], path: Path, origins: Mapping[str, str] | None = None) -> list[DataFile]:
    """Local files the run needs are there and usable: every line of every dataset file, the
    DeepSpeed config, a local base model folder. Returns the data files read."""
    try:
        files = read_data_files(cfg)
    except DataError as err:
        raise RecipeError(f"{path}: {err}") from None
    deepspeed = cfg.get("deepspeed")
    if deepspeed:
        ds_file = Path(str(deepspeed))
        if not ds_file.is_file():
            raise RecipeError(f"{path}: deepspeed file {ds_file} does not exist: use deepspeed_configs/zero2.json")
        try:
            json.loads(ds_file.read_text())
        except json.JSONDecodeError as err:
            raise RecipeError(f"{path}: deepspeed file {ds_file} is not valid JSON (line {err.lineno})") from None
    check_base_model(cfg, path, origins)
    return files


def check_base_model(cfg: dict[str, Any], path: Path, origins: Mapping[str, str] | None = None) -> None:
    """``base_model`` is a hub id, or a folder that ``save_pretrained`` wrote: config, weights, tokenizer."""
    model = str(cfg.get("base_model") or "")
    where = blame("base_model", path, origins)
    if not model:
        raise RecipeError(f"{where}: base_model is missing: name a hub model or a local folder")
    folder = Path(model)
    if not folder.exists():
        if HUB_ID.match(model):
            return
        raise RecipeError(
            f"{where}: base_model {model} is not a local folder nor an org/name hub id: "
            "run `mathpal tiny-model` or fix the path"
        )
    fix = "run `mathpal tiny-model`, or name a folder that save_pretrained wrote"
    if not folder.is_dir():
        raise RecipeError(f"{where}: base_model {model} is a file, not a model folder: {fix}")
    if not (folder / "config.json").is_file():
        raise RecipeError(f"{where}: base_model {model} has no config.json (an empty or unfinished folder): {fix}")
    if not any((folder / name).is_file() for name in MODEL_WEIGHTS):
        raise RecipeError(f"{where}: base_model {model} has config.json but no weights ({MODEL_WEIGHTS[0]}): {fix}")
    if not cfg.get("tokenizer_config") and not any((folder / name).is_file() for name in TOKENIZER_MARKERS):
        raise RecipeError(f"{where}: base_model {model} has no tokenizer (tokenizer.json): {fix}")


def check_numbers(cfg: dict[str, Any], path: Path, origins: Mapping[str, str] | None = None) -> None:
    """Steps, batch, accumulation, learning rate and lengths are numbers a run can be made of."""
    for key, (test, rule) in NUMBER_RULES.items():
        value = cfg.get(key)
        if value is not None and not test(value):
            raise RecipeError(
                f"{blame(key, path, origins)}: {key} is {value!r}; it must be {rule}{NUMBER_HINTS.get(key, '')}"
            )


def check_lengths(
    cfg: dict[str, Any], path: Path, files: list[DataFile], origins: Mapping[str, str] | None = None
) -> list[str]:
    """Training rows must fit ``sequence_len``: Axolotl drops longer ones, and fails after start-up when it
    drops them all. Counted with the run's tokenizer when it is on this machine (the message contents
    alone: the chat template adds a few tokens more); returns a note when some rows will be dropped."""
    limit = cfg.get("sequence_len")
    train = [text for f in files if f.group == "datasets" for text in f.texts if text]
    if not isinstance(limit, int) or not train:
        return []
    tokenizer = local_tokenizer(tokenizer_source(cfg))
    if tokenizer is None:
        return []
    lengths = [len(ids) for ids in tokenizer(train, add_special_tokens=False)["input_ids"]]
    dropped = sum(1 for n in lengths if n > limit)
    if dropped == len(lengths):
        raise RecipeError(
            f"{blame('sequence_len', path, origins)}: sequence_len {limit} is shorter than every training row "
            f"(the shortest has {min(lengths)} tokens before the chat template): raise it"
        )
    if dropped:
        return [f"{dropped} of {len(lengths)} training rows are longer than sequence_len {limit}: Axolotl drops them"]
    return []


def local_tokenizer(source: str):
    """The tokenizer at ``source`` when it is on this machine (a folder, or the hub cache); None otherwise."""
    if not source:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception:  # not cached, not a tokenizer: the length check is skipped, never a failure
        return None


def check_zero3_qlora(cfg: dict[str, Any], path: Path) -> None:
    """QLoRA under ZeRO-3 shards the 4-bit weights only when they are stored as bf16."""
    deepspeed = cfg.get("deepspeed")
    if not deepspeed or not cfg.get("load_in_4bit") or not Path(str(deepspeed)).is_file():
        return
    stage = json.loads(Path(str(deepspeed)).read_text()).get("zero_optimization", {}).get("stage")
    storage = (cfg.get("bnb_config_kwargs") or {}).get("bnb_4bit_quant_storage")
    if stage == 3 and storage not in {"bfloat16", "bf16"}:
        raise RecipeError(
            f"{path}: ZeRO-3 with load_in_4bit needs bnb_config_kwargs.bnb_4bit_quant_storage: bfloat16 "
            "(in the recipe, or --set bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16)"
        )


def schema_error_line(err: Exception, path: Path, origins: Mapping[str, str] | None = None) -> str:
    """The first pydantic error as one line: where the value came from, key, message, bad value."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or "recipe"
        value = first.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        return f"{blame(key, path, origins)}: {key}: {first.get('msg', str(err)).splitlines()[0]}{shown}"
    return f"{path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


def check_schema(cfg: dict[str, Any], path: Path, gpus: int, origins: Mapping[str, str] | None = None) -> dict:
    """Axolotl's own validation (types, combinations), against a bf16 GPU when the recipe wants one."""
    import copy

    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    cpu_recipe = not cfg.get("bf16") and not cfg.get("load_in_4bit")
    capabilities = {
        "bf16": not cpu_recipe,
        "fp8": False,
        "tf32": not cpu_recipe,
        "n_gpu": gpus,
        "compute_capability": None if cpu_recipe else ASSUMED_GPU["compute_capability"],
    }
    try:
        import torch

        env = {"torch_version": torch.__version__.split("+", 1)[0]}
        return dict(validate_config(DictDefault(copy.deepcopy(cfg)), capabilities=capabilities, env_capabilities=env))
    except Exception as err:  # pydantic.ValidationError or Axolotl's ValueError
        raise RecipeError(schema_error_line(err, path, origins)) from None


def summarise(
    cfg: dict[str, Any], gpus: int, files: list[DataFile] | None = None, notes: list[str] | None = None
) -> RecipeSummary:
    """The numbers of a run: effective batch, tokens per step, steps, epochs, checkpoint place."""
    micro = int(cfg.get("micro_batch_size") or 1)
    accumulation = int(cfg.get("gradient_accumulation_steps") or 1)
    effective = micro * accumulation * gpus
    train = [f.rows for f in files or [] if f.group == "datasets"]
    examples = sum(train) if train else None
    steps = cfg.get("max_steps")
    if not steps and examples:
        steps = int(float(cfg.get("num_epochs") or 1) * examples / effective)
    epochs = steps * effective / examples if steps and examples else None
    save = cfg.get("save_steps")
    output_dir = cfg.get("output_dir", "./model-out")
    where = f"{output_dir}/checkpoint-<step> every {save} steps" if save else f"{output_dir} (end of training)"
    return RecipeSummary(
        model=str(cfg.get("base_model")),
        adapter=f"{cfg.get('adapter') or 'full fine-tune'} r={cfg.get('lora_r')} alpha={cfg.get('lora_alpha')}"
        + (" (4-bit base)" if cfg.get("load_in_4bit") else ""),
        gpus=gpus,
        micro_batch=micro,
        accumulation=accumulation,
        effective_batch=effective,
        tokens_per_step=effective * int(cfg.get("sequence_len") or 2048),
        total_steps=int(steps or 0),
        train_examples=examples,
        epochs=epochs,
        packed=bool(cfg.get("sample_packing")),
        checkpoints=where,
        notes=tuple(notes or ()),
    )


def validate_recipe(
    cfg: dict[str, Any], path: Path, gpus: int = 1, origins: Mapping[str, str] | None = None
) -> RecipeSummary:
    """All checks, cheapest first; raises ``RecipeError`` with one line, else returns the summary.

    ``origins`` maps a top-level key to the override that set it (``recipes.origins``), so that an
    error names the environment variable or flag rather than the recipe file.
    """
    check_secrets(cfg, path)
    check_plugins(cfg, path)
    check_unknown_keys(cfg, path)
    check_numbers(cfg, path, origins)
    files = check_files(cfg, path, origins)
    notes = check_lengths(cfg, path, files, origins)
    check_zero3_qlora(cfg, path)
    check_schema(cfg, path, gpus, origins)
    return summarise(cfg, gpus, files, notes)
