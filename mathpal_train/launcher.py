"""Resolve a recipe with overrides and build the exact ``accelerate launch`` command for it.

The recipe stays the single source of truth: overrides are applied to a copy
that is written into the run's ``output_dir``, and that file is what gets
launched, so ``accelerate launch -m axolotl.cli.train <output_dir>/recipe.resolved.yml``
reproduces the run by hand.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from mathpal_train import comet
from mathpal_train.atomic_files import write_text_atomic

RESOLVED_RECIPE_NAME = "recipe.resolved.yml"
# Where `mathpal train` copies the job's output, inside the recipe's output_dir.
TRAINING_LOG = Path("logs") / "training.log"

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

# Environment the launched job always gets: Axolotl sends telemetry unless told not to.
LAUNCH_ENV = {"AXOLOTL_DO_NOT_TRACK": "1"}


def load_recipe(path: Path) -> dict[str, Any]:
    """Parse a recipe file, with a one-line error naming it when it is not a YAML mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"recipe {path} does not exist: pass a file under recipes/") from None
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
    """``key=value`` pairs from ``--set``; a malformed one is a one-line error."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} is not key=value: write e.g. --set learning_rate=1e-4")
        pairs.append((key.strip(), parse_value(value)))
    return pairs


def resolve_recipe(
    recipe: dict[str, Any],
    env: dict[str, str],
    flags: list[tuple[str, Any]],
) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """Apply overrides with precedence recipe < environment < flags.

    Returns the new recipe and the list of ``(key, value, source)`` applied, so the
    caller can print every change it made to what the user wrote.
    """
    resolved = dict(recipe)
    applied: list[tuple[str, Any, str]] = []
    for var, key in ENV_OVERRIDES.items():
        if env.get(var):
            resolved[key] = parse_value(env[var])
            applied.append((key, resolved[key], f"${var}"))
    for key, value in flags:
        set_key(resolved, key, value)
        applied.append((key, value, "flag"))
    return resolved, applied


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


def write_resolved_recipe(recipe: dict[str, Any], output_dir: Path) -> Path:
    """Write the recipe that will run into ``output_dir`` (temp file + rename)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / RESOLVED_RECIPE_NAME
    header = "# Resolved by `mathpal train`: launch again with\n# accelerate launch -m axolotl.cli.train " + str(
        target
    ) + "\n"
    return write_text_atomic(target, header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))


def accelerate_executable() -> str:
    """The ``accelerate`` of this Python's environment, so an unactivated venv still works."""
    sibling = Path(sys.executable).parent / "accelerate"
    return str(sibling) if sibling.exists() else (shutil.which("accelerate") or "accelerate")


def visible_gpus(env: dict[str, str]) -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what torch sees."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        return len(ids)
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_launch_argv(
    recipe_path: Path,
    gpus: int,
    num_machines: int = 1,
    machine_rank: int | None = None,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
) -> list[str]:
    """The ``accelerate launch … -m axolotl.cli.train RECIPE`` argv (a list: no shell involved).

    ``gpus`` is per machine; accelerate wants the total number of processes. Zero
    GPUs means a CPU run.
    """
    processes = max(gpus, 1) * num_machines
    argv = [accelerate_executable(), "launch", "--num_processes", str(processes), "--num_machines", str(num_machines)]
    if num_machines > 1:
        argv += ["--machine_rank", str(machine_rank), "--main_process_ip", main_process_ip,
                 "--main_process_port", str(main_process_port or 29500)]
    if gpus == 0:
        argv += ["--cpu", "--mixed_precision", "no"]
    elif processes > 1:
        argv.append("--multi_gpu")
    argv += ["--dynamo_backend", "no", "-m", "axolotl.cli.train", str(recipe_path)]
    return argv


def run_logged(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``argv``, copying its output to the console and to ``log_path``; return its exit code.

    Ctrl-C and SIGTERM are passed on to the job (accelerate forwards them to the
    workers), so a stopped run stops cleanly and leaves its last checkpoint.
    """
    import signal
    import subprocess

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        previous = {sig: signal.signal(sig, lambda s, _f: proc.send_signal(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
            return proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def launch_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the launched job: the caller's, with telemetry off."""
    env = dict(os.environ if base is None else base)
    env.update(LAUNCH_ENV)
    return env


def job_env(output_dir: Path, debug: bool = False) -> dict[str, str]:
    """The full environment of a training job: telemetry off, Comet offline without a key,
    and Axolotl's debug logging when asked."""
    env = launch_env()
    env.update(comet.job_env(env, Path(output_dir)))
    if debug:
        env["AXOLOTL_LOG_LEVEL"] = "DEBUG"
    return env
