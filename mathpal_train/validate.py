"""Check a recipe before a long run: Axolotl's own schema, plus what it lets through.

Axolotl validates types and combinations, but silently drops keys it does not
know (``sample_pakcing: true`` trains without packing), and only discovers a
missing dataset or DeepSpeed file after minutes of start-up. Everything here
runs offline: hub models are not fetched, and a CPU machine checks a GPU
recipe against the GPU it is written for.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The GPU a recipe is checked against when this machine has none: bf16-capable
# (Ampere or newer), as every GPU recipe here requires.
ASSUMED_GPU = {"bf16": True, "fp8": False, "tf32": True, "compute_capability": "sm_90"}

# Keys that hold credentials (not `pad_token`: special tokens are text, not secrets).
SECRET_KEYS = re.compile(r"(api_key|access_token|auth_token|hf_token|hub_token|secret|password)$", re.IGNORECASE)
SECRET_VALUES = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})\b")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLUGIN_EXAMPLE = "mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"


class RecipeError(ValueError):
    """A recipe problem, worded as one line that names the key or file and the fix."""


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


def check_files(cfg: dict[str, Any], path: Path) -> None:
    """Local files the run needs exist: datasets, the DeepSpeed config, a local base model."""
    for group in ("datasets", "test_datasets"):
        for i, ds in enumerate(cfg.get(group) or []):
            ds_path = str(ds.get("path", "")) if isinstance(ds, dict) else ""
            local = ds.get("ds_type") in {"json", "csv", "parquet", "text"} or ds_path.endswith((".jsonl", ".json"))
            if local and not Path(ds_path).exists():
                raise RecipeError(
                    f"{path}: {group}[{i}].path {ds_path} does not exist: run `mathpal prepare-data` (or fix the path)"
                )
    deepspeed = cfg.get("deepspeed")
    if deepspeed:
        ds_file = Path(str(deepspeed))
        if not ds_file.is_file():
            raise RecipeError(f"{path}: deepspeed file {ds_file} does not exist: use deepspeed_configs/zero2.json")
        try:
            json.loads(ds_file.read_text())
        except json.JSONDecodeError as err:
            raise RecipeError(f"{path}: deepspeed file {ds_file} is not valid JSON (line {err.lineno})") from None
    model = str(cfg.get("base_model", ""))
    if not model:
        raise RecipeError(f"{path}: base_model is missing: name a hub model or a local folder")
    if not Path(model).exists() and not HUB_ID.match(model):
        raise RecipeError(
            f"{path}: base_model {model} is not a local folder nor an org/name hub id: "
            "run `mathpal tiny-model` or fix the path"
        )


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


def schema_error_line(err: Exception, path: Path) -> str:
    """The first pydantic error as one line: key, message, bad value."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or "recipe"
        value = first.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        return f"{path}: {key}: {first.get('msg', str(err)).splitlines()[0]}{shown}"
    return f"{path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


def check_schema(cfg: dict[str, Any], path: Path, gpus: int) -> dict[str, Any]:
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
        raise RecipeError(schema_error_line(err, path)) from None


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def summarise(cfg: dict[str, Any], gpus: int) -> RecipeSummary:
    """The numbers of a run: effective batch, tokens per step, steps, epochs, checkpoint place."""
    micro = int(cfg.get("micro_batch_size") or 1)
    accumulation = int(cfg.get("gradient_accumulation_steps") or 1)
    effective = micro * accumulation * gpus
    examples = None
    for ds in cfg.get("datasets") or []:
        ds_path = Path(str(ds.get("path", "")))
        if ds_path.is_file():
            examples = (examples or 0) + count_lines(ds_path)
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
    )


def validate_recipe(cfg: dict[str, Any], path: Path, gpus: int = 1) -> RecipeSummary:
    """All checks, cheapest first; raises ``RecipeError`` with one line, else returns the summary."""
    check_secrets(cfg, path)
    check_plugins(cfg, path)
    check_unknown_keys(cfg, path)
    check_files(cfg, path)
    check_zero3_qlora(cfg, path)
    check_schema(cfg, path, gpus)
    return summarise(cfg, gpus)
