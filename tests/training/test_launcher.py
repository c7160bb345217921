"""The launch command, override precedence and the resolved recipe (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from training.launcher import (
    RESOLVED_RECIPE_NAME,
    build_launch_argv,
    launch_env,
    load_recipe,
    parse_set,
    parse_value,
    resolve_recipe,
    write_resolved_recipe,
)

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def test_cpu_argv_is_exact():
    argv = build_launch_argv(Path("out/recipe.resolved.yml"), 1, cpu=True)
    assert argv == [
        ACCELERATE, "launch", "--num_processes", "1", "--num_machines", "1",
        "--cpu", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "axolotl.cli.train", "out/recipe.resolved.yml",
    ]


def test_multi_gpu_argv_is_exact():
    argv = build_launch_argv(Path("r.yml"), 4)
    assert argv == [
        ACCELERATE, "launch", "--num_processes", "4", "--num_machines", "1",
        "--multi_gpu", "--dynamo_backend", "no", "-m", "axolotl.cli.train", "r.yml",
    ]


def test_single_gpu_argv_has_no_multi_gpu_flag():
    argv = build_launch_argv(Path("r.yml"), 1)
    assert "--multi_gpu" not in argv and "--cpu" not in argv
    assert argv[-3:] == ["-m", "axolotl.cli.train", "r.yml"]


def test_launch_env_turns_telemetry_off_and_keeps_the_rest():
    env = launch_env({"PATH": "/bin", "AXOLOTL_DO_NOT_TRACK": "0"})
    assert env == {"PATH": "/bin", "AXOLOTL_DO_NOT_TRACK": "1"}


@pytest.mark.parametrize(
    "text, expected",
    [("2e-4", 2e-4), ("0.0002", 0.0002), ("100", 100), ("true", True), ("adamw_torch", "adamw_torch"),
     ("data/train.jsonl", "data/train.jsonl"), ("[1, 2]", [1, 2])],
)
def test_parse_value_types_like_yaml(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_set_rejects_missing_equals():
    with pytest.raises(ValueError, match="--set 'lora_r' is not key=value"):
        parse_set(["lora_r"])


def test_precedence_recipe_then_environment_then_flags():
    recipe = {"learning_rate": 1e-4, "max_steps": 1000, "micro_batch_size": 2}
    env = {"LEARNING_RATE": "3e-4", "MAX_STEPS": "50", "UNRELATED": "x"}
    resolved, applied = resolve_recipe(recipe, env, [("max_steps", 7)])
    assert resolved == {"learning_rate": 3e-4, "max_steps": 7, "micro_batch_size": 2}
    assert applied == [("learning_rate", 3e-4, "$LEARNING_RATE"), ("max_steps", 50, "$MAX_STEPS"), ("max_steps", 7, "flag")]
    assert recipe["max_steps"] == 1000  # the loaded recipe is not modified


def test_resolved_recipe_round_trips(tmp_path):
    recipe = {"base_model": "m", "lora_target_modules": r"model.layers.[\d]+.(mlp|self_attn).(q|v)_proj", "max_steps": 3}
    path = write_resolved_recipe(recipe, tmp_path / "out")
    assert path == tmp_path / "out" / RESOLVED_RECIPE_NAME
    assert yaml.safe_load(path.read_text()) == recipe
    assert "accelerate launch -m axolotl.cli.train" in path.read_text().splitlines()[1]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [RESOLVED_RECIPE_NAME]  # no temp file left


def test_load_recipe_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"bad.yml is not valid YAML at line \d"):
        load_recipe(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_recipe(tmp_path / "missing.yml")
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("just text\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_recipe(scalar)
