"""The variants are short copies of production.yml (no inheritance), so nothing keeps them in step but this test:
each may differ from production.yml only in the keys declared here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# Where every run writes: each recipe has its own.
OWN_PLACES = {"output_dir", "dataset_prepared_path"}
VARIANT_KEYS = {
    # the seed's quick test: a short schedule at sequence 1024
    "quick_test.yml": OWN_PLACES
    | {
        "max_steps",
        "sequence_len",
        "learning_rate",
        "micro_batch_size",
        "warmup_steps",
        "save_steps",
        "eval_steps",
    },
    # the same run on the bigger model
    "e4b.yml": OWN_PLACES | {"base_model"},
}


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("variant", sorted(VARIANT_KEYS))
def test_variant_differs_from_production_only_in_its_declared_keys(variant):
    production, other = load("production.yml"), load(variant)
    differing = {key for key in production.keys() | other.keys() if production.get(key) != other.get(key)}
    assert differing == VARIANT_KEYS[variant]


def test_the_check_would_catch_a_drifted_key(tmp_path):
    drifted = (RECIPES / "e4b.yml").read_text(encoding="utf-8").replace("lora_r: 32", "lora_r: 16")
    production, other = load("production.yml"), yaml.safe_load(drifted)
    assert {key for key in production if production[key] != other.get(key)} == VARIANT_KEYS["e4b.yml"] | {"lora_r"}


def test_the_8bit_alternative_in_production_comments_validates(tmp_path, monkeypatch):
    """The commented 8-bit variant, applied with `mathpal train`'s own override machinery, passes
    Axolotl's schema and our checks, and the two ways the comments give it are the same change."""
    from mathpal_train.memory import estimate_peak, model_shape, settings_from_recipe
    from mathpal_train.recipes import parse_set, resolve_recipe
    from mathpal_train.validate import RecipeError, validate_recipe

    text = (RECIPES / "production.yml").read_text(encoding="utf-8")
    (command,) = [line for line in text.splitlines() if "--set load_in_8bit=true" in line]
    sets = parse_set(command.split("--set ")[1:])
    block = text.split("# or these three lines", 1)[1].split("# Caveats", 1)[0].splitlines()[1:]
    lines = yaml.safe_load("\n".join(line.removeprefix("# ") for line in block))
    assert lines == dict(sets)  # the three lines say what the command says
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("train", "validation"):
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"messages": []}\n')
    production = load("production.yml")
    eight_bit, applied = resolve_recipe(production, {}, sets)
    assert [key for key, _, _ in applied] == ["load_in_4bit", "load_in_8bit", "adapter"]
    summary = validate_recipe(eight_bit, RECIPES / "production.yml")
    assert summary.adapter.startswith("lora r=32") and "4-bit" not in summary.adapter
    shape = model_shape(production["base_model"])
    four, eight = (estimate_peak(shape, settings_from_recipe(r)) for r in (production, eight_bit))
    assert f"~{eight.total:.1f} GiB peak estimated" in text and 0.5 < eight.weights - four.weights < 1.5
    with pytest.raises(RecipeError, match="Can't load qlora in 8bit"):  # why the comments switch the adapter
        validate_recipe({**eight_bit, "adapter": "qlora"}, RECIPES / "production.yml")
