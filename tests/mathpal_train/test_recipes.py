"""Recipes as `mathpal train` runs them: typed overrides, their precedence, the resolved copy, --quick-test."""

from __future__ import annotations

import pytest
import yaml

from mathpal_train.recipes import (
    QUICK_TEST_KEYS,
    QUICK_TEST_RECIPE,
    RESOLVED_RECIPE_NAME,
    load_recipe,
    origins,
    parse_set,
    parse_value,
    quick_test_overrides,
    resolve_recipe,
    resolved_recipe_text,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2e-4", 2e-4),
        ("0.0002", 0.0002),
        ("100", 100),
        ("true", True),
        ("adamw_torch", "adamw_torch"),
        ("data/train.jsonl", "data/train.jsonl"),
        ("[1, 2]", [1, 2]),
        ("false", False),
        ("no", "no"),
        ("No", "No"),
        ("off", "off"),
        ("yes", "yes"),  # save_strategy=no wants the word
        ("{a: 1}", {"a": 1}),
    ],
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
    assert applied == [
        ("learning_rate", 3e-4, "$LEARNING_RATE"),
        ("max_steps", 50, "$MAX_STEPS"),
        ("max_steps", 7, "flag"),
    ]
    assert recipe["max_steps"] == 1000  # the loaded recipe is not modified


def test_dotted_key_sets_inside_a_mapping_and_keeps_its_other_keys():
    recipe = {"bnb_config_kwargs": {"llm_int8_skip_modules": ["lm_head"]}, "max_steps": 3}
    resolved, applied = resolve_recipe(
        recipe, {}, [("bnb_config_kwargs.bnb_4bit_quant_storage", "bfloat16"), ("new.deep.key", 1)]
    )
    assert resolved["bnb_config_kwargs"] == {"llm_int8_skip_modules": ["lm_head"], "bnb_4bit_quant_storage": "bfloat16"}
    assert resolved["new"] == {"deep": {"key": 1}}
    assert recipe["bnb_config_kwargs"] == {"llm_int8_skip_modules": ["lm_head"]}  # the loaded recipe is untouched
    assert applied[0] == ("bnb_config_kwargs.bnb_4bit_quant_storage", "bfloat16", "flag")


def test_dotted_key_through_a_non_mapping_is_refused():
    with pytest.raises(ValueError, match="--set max_steps.x: max_steps is 3, not a mapping; set max_steps itself"):
        resolve_recipe({"max_steps": 3}, {}, [("max_steps.x", 1)])


def test_resolved_recipe_round_trips(tmp_path):
    recipe = {
        "base_model": "m",
        "lora_target_modules": r"model.layers.[\d]+.(mlp|self_attn).(q|v)_proj",
        "max_steps": 3,
    }
    text = resolved_recipe_text(recipe, tmp_path / "out")
    assert yaml.safe_load(text) == recipe
    assert text.splitlines()[1] == f"# accelerate launch -m axolotl.cli.train {tmp_path / 'out' / RESOLVED_RECIPE_NAME}"


def test_origins_name_the_variable_or_flag_as_the_user_wrote_it():
    _, applied = resolve_recipe(
        {"max_steps": 10},
        {"BATCH_SIZE": "0", "LEARNING_RATE": "-1"},
        [
            ("max_steps", 0, "--max-steps"),
            *[(key, value, "--set") for key, value in parse_set(["lora_r=abc", "bnb_config_kwargs.x=1"])],
            ("seed", 1),
        ],
    )
    assert origins(applied) == {
        "learning_rate": "LEARNING_RATE=-1",
        "micro_batch_size": "BATCH_SIZE=0",
        "max_steps": "--max-steps 0",
        "lora_r": "--set lora_r=abc",
        "bnb_config_kwargs": "--set bnb_config_kwargs.x=1",
        "seed": "flag",
    }


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


def test_quick_test_values_come_from_the_quick_test_recipe(tmp_path):
    recipe = load_recipe(QUICK_TEST_RECIPE)
    assert quick_test_overrides() == [(key, recipe[key], "--quick-test") for key in QUICK_TEST_KEYS]
    edited = tmp_path / "quick.yml"
    edited.write_text(QUICK_TEST_RECIPE.read_text().replace("max_steps: 20", "max_steps: 7"))
    assert {key: value for key, value, _ in quick_test_overrides(edited)}["max_steps"] == 7
    edited.write_text("max_steps: 7\n")
    with pytest.raises(ValueError, match="lacks sequence_len"):
        quick_test_overrides(edited)
