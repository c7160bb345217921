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
        "gradient_accumulation_steps",
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
