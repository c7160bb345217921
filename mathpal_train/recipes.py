"""A recipe as ``mathpal train`` runs it: the YAML file, the user's overrides, the resolved copy.

The recipe stays the single source of truth: overrides (environment variables, ``--set``,
``--quick-test``) are applied to a copy that is written into the run's ``output_dir``
(through ``pending/``, see ``mathpal_train.run_folder``), and that file is what gets
launched, so ``accelerate launch -m axolotl.cli.train <output_dir>/recipe.resolved.yml``
reproduces the run by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RESOLVED_RECIPE_NAME = "recipe.resolved.yml"
# The recipes of this checkout (also found when mathpal runs from another folder).
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
# `--quick-test` applies these keys of recipes/quick_test.yml over any recipe: the seed's quick test.
QUICK_TEST_RECIPE = RECIPES_DIR / "quick_test.yml"
QUICK_TEST_KEYS = (
    "max_steps",
    "sequence_len",
    "learning_rate",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "save_strategy",
    "save_steps",
    "eval_steps",
    "warmup_steps",
)

# Environment variables the seed documented, mapped to the Axolotl keys they set.
ENV_OVERRIDES: dict[str, str] = {
    "MODEL_ID": "base_model",
    "LEARNING_RATE": "learning_rate",
    "BATCH_SIZE": "micro_batch_size",
    "GRADIENT_ACCUMULATION_STEPS": "gradient_accumulation_steps",
    "MAX_STEPS": "max_steps",
    "WARMUP_STEPS": "warmup_steps",
    "MAX_INPUT_TOKENS": "sequence_len",
}


def load_recipe(path: Path) -> dict[str, Any]:
    """Parse a recipe file, with a one-line error naming it when it is not a YAML mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"recipe {path} does not exist: pass a file under recipes/") from None
    except IsADirectoryError:
        raise ValueError(f"recipe {path} is a folder: pass a recipe file such as recipes/production.yml") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"recipe {path} is not UTF-8 text (byte {err.start}): pass a YAML recipe file") from None
    except OSError as err:
        raise ValueError(f"recipe {path} cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"recipe {path} is not valid YAML{where}: fix the syntax and retry") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of Axolotl keys")
    return data


def parse_value(text: str) -> Any:
    """A command-line value typed as YAML would type it (``2e-4`` → float, ``true`` → bool).

    Except YAML 1.1's other booleans: ``no``/``yes``/``on``/``off`` stay strings, because
    Axolotl keys such as ``save_strategy=no`` and ``eval_strategy=no`` want the word.
    """
    if text.strip().lower() in ("no", "yes", "on", "off", "n", "y"):
        return text.strip()
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs from ``--set key=value``; a malformed one is a one-line error."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} is not key=value: write e.g. --set learning_rate=1e-4")
        pairs.append((key.strip(), parse_value(value)))
    return pairs


def resolve_recipe(
    recipe: dict[str, Any], env: dict[str, str], flags: list[tuple]
) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """Apply overrides with precedence recipe < environment < flags.

    ``flags`` are ``(key, value)`` or ``(key, value, source)``: the option that set it
    (``--max-steps``, ``--set``); the source defaults to "flag". Returns the new recipe and the
    list of ``(key, value, source)`` applied, so the caller can print every change it made to
    what the user wrote, and an error can name the variable or flag a bad value came from.
    """
    resolved = dict(recipe)
    applied: list[tuple[str, Any, str]] = []
    for var, key in ENV_OVERRIDES.items():
        if env.get(var):
            resolved[key] = parse_value(env[var])
            applied.append((key, resolved[key], f"${var}"))
    for key, value, *source in flags:
        set_key(resolved, key, value)
        applied.append((key, value, source[0] if source else "flag"))
    return resolved, applied


def origins(applied: list[tuple[str, Any, str]]) -> dict[str, str]:
    """Top-level key → the override that set it last, as the user wrote it: ``$BATCH_SIZE=0``,
    ``--set lora_r=abc``, ``--learning-rate -1``. Keys not in it come from the recipe file."""
    found: dict[str, str] = {}
    for key, value, source in applied:
        shown = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
        shown = shown.removesuffix("\n...").strip()
        if source.startswith("$"):
            found[key.split(".")[0]] = f"{source.removeprefix('$')}={shown}"
        elif source == "--set":
            found[key.split(".")[0]] = f"--set {key}={shown}"
        else:
            found[key.split(".")[0]] = f"{source} {shown}" if source.startswith("--") else source
    return found


def set_key(recipe: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` in place; ``a.b`` sets ``b`` inside mapping ``a``, keeping a's other keys.

    So ``--set bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16`` adds one setting
    without restating the skip list beside it. Nested mappings are copied, never
    shared with the loaded recipe.
    """
    *parents, last = key.split(".")
    node = recipe
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ValueError(f"--set {key}: {where} is {child!r}, not a mapping; set {where} itself")
        node[part] = dict(child)
        node = node[part]
    node[last] = value


def resolved_recipe_text(recipe: dict[str, Any], output_dir: Path) -> str:
    """The recipe that will run, as the YAML file ``mathpal train`` keeps in ``output_dir``."""
    target = Path(output_dir) / RESOLVED_RECIPE_NAME
    header = f"# Resolved by `mathpal train`: launch again with\n# accelerate launch -m axolotl.cli.train {target}\n"
    return header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)


def quick_test_overrides(path: Path = QUICK_TEST_RECIPE) -> list[tuple[str, Any, str]]:
    """``(key, value, "--quick-test")`` of ``QUICK_TEST_KEYS`` as recipes/quick_test.yml sets them."""
    recipe = load_recipe(path)
    missing = [key for key in QUICK_TEST_KEYS if key not in recipe]
    if missing:
        raise ValueError(f"recipe {path} lacks {', '.join(missing)}: --quick-test applies these keys from it")
    return [(key, recipe[key], "--quick-test") for key in QUICK_TEST_KEYS]
