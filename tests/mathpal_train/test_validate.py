"""`validate_recipe`: Axolotl's schema plus the mistakes it lets through, all offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mathpal_cli import app
from mathpal_train.validate import RecipeError, validate_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yml"))


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A folder with what the recipes point at: data splits and the tiny model folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name, rows in (("train", 40), ("validation", 4)):
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"messages": []}\n' * rows)
    (tmp_path / ".mathpal" / "tiny-gemma3n").mkdir(parents=True)
    return tmp_path


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "recipes" / name).read_text())


def test_the_recipes_are_there():
    assert {p.name for p in RECIPES} >= {"production.yml", "quick_test.yml", "e4b.yml", "smoke.yml"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates_offline(recipe, workdir):
    summary = validate_recipe(yaml.safe_load(recipe.read_text()), recipe)
    assert summary.total_steps > 0 and summary.effective_batch >= 1


def test_production_summary_numbers(workdir):
    summary = validate_recipe(load("production.yml"), Path("production.yml"), gpus=2)
    assert summary.model == "google/gemma-3n-E2B-it"
    assert summary.effective_batch == 2 * 4 * 2
    assert summary.tokens_per_step == 16 * 2048
    assert summary.total_steps == 1000
    assert summary.train_examples == 40 and summary.epochs == pytest.approx(1000 * 16 / 40)
    assert summary.checkpoints == "outputs/production/checkpoint-<step> every 100 steps"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"sample_pakcing": True},
            "unknown key 'sample_pakcing' (Axolotl would silently ignore it): did you mean 'sample_packing'?",
        ),
        ({"lora_r": "abc"}, "lora_r: Input should be a valid integer"),
        (
            {"datasets": [{"path": "data/nope.jsonl", "ds_type": "json", "type": "chat_template"}]},
            "datasets[0].path data/nope.jsonl does not exist: run `mathpal prepare-data`",
        ),
        ({"deepspeed": "deepspeed_configs/zero7.json"}, "deepspeed file deepspeed_configs/zero7.json does not exist"),
        ({"base_model": "models/not-here/either"}, "base_model models/not-here/either is not a local folder"),
        ({"comet_api_key": "abc123"}, "'comet_api_key' holds a secret"),
        ({"hub_model_id": "hf_abcdefghijklmnopqrstuvwxyz0123456789"}, "'hub_model_id' looks like a secret token"),
    ],
)
def test_bad_recipes_give_one_line_naming_the_key(change, message, workdir):
    cfg = {**load("production.yml"), **change}
    with pytest.raises(RecipeError) as err:
        validate_recipe(cfg, Path("mine.yml"))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("mine.yml: ")


def test_zero3_qlora_needs_bf16_quant_storage(workdir):
    cfg = {**load("production.yml"), "deepspeed": str(REPO / "deepspeed_configs" / "zero3_bf16.json")}
    with pytest.raises(RecipeError, match="bnb_4bit_quant_storage: bfloat16"):
        validate_recipe(cfg, Path("p.yml"))
    cfg["bnb_config_kwargs"] = {**cfg["bnb_config_kwargs"], "bnb_4bit_quant_storage": "bfloat16"}
    assert validate_recipe(cfg, Path("p.yml"), gpus=4).effective_batch == 32


def test_deepspeed_configs_parse_and_leave_batch_to_the_trainer():
    import json

    for name, stage in (("zero1.json", 1), ("zero2.json", 2), ("zero3_bf16.json", 3)):
        config = json.loads((REPO / "deepspeed_configs" / name).read_text())
        assert config["zero_optimization"]["stage"] == stage
        assert config["train_micro_batch_size_per_gpu"] == "auto" and config["gradient_accumulation_steps"] == "auto"


def test_cli_validate_prints_summary_and_yaml_errors_give_the_line(workdir):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(REPO / "recipes" / "quick_test.yml")], terminal_width=300)
    assert ok.exit_code == 0, ok.output
    assert "effective batch:  2 = 1 micro batch x 2 accumulation x 1 GPU(s)" in ok.output
    broken = workdir / "broken.yml"
    broken.write_text("base_model: x/y\nlora_r: [16\nadapter: lora\n")
    bad = runner.invoke(app, ["validate", str(broken)], terminal_width=300)
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines()[-1].startswith(f"error: recipe {broken} is not valid YAML at line ")


SPEED_PLUGIN = "mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"


@pytest.mark.parametrize(
    "plugin, message",
    [
        (
            "mathpal_train.gemma3n_speed.NoSuchPlugin",
            "plugin mathpal_train.gemma3n_speed.NoSuchPlugin: mathpal_train.gemma3n_speed has no class NoSuchPlugin",
        ),
        ("no_such_module.Plugin", "plugin no_such_module.Plugin cannot be imported (No module named 'no_such_module')"),
    ],
)
def test_a_plugin_that_does_not_import_is_one_line_not_a_skipped_plugin(plugin, message, workdir):
    """Axolotl would log one line and train without the plugin; validate stops the run instead."""
    cfg = {**load("smoke.yml"), "plugins": [SPEED_PLUGIN, plugin]}
    with pytest.raises(RecipeError) as err:
        validate_recipe(cfg, Path("mine.yml"))
    assert str(err.value).startswith("mine.yml: ") and message in str(err.value) and "\n" not in str(err.value)


def test_the_smoke_recipe_names_the_speed_plugin_and_its_keys_validate(workdir):
    cfg = load("smoke.yml")
    assert cfg["plugins"] == [SPEED_PLUGIN, "mathpal_train.run_state.RunStatePlugin"]
    assert validate_recipe(cfg, Path("smoke.yml")).total_steps == 240
    tuned = {**cfg, "gemma3n_loss_impl": "torch", "gemma3n_loss_chunk_size": 256, "gemma3n_compile_layers": True}
    validate_recipe(tuned, Path("smoke.yml"))
    with pytest.raises(RecipeError, match="gemma3n_loss_impl: Input should be 'auto', 'liger' or 'torch'"):
        validate_recipe({**cfg, "gemma3n_loss_impl": "triton"}, Path("smoke.yml"))


def test_cli_validate_names_the_plugin_that_does_not_import(workdir):
    result = CliRunner().invoke(
        app, ["validate", str(REPO / "recipes" / "smoke.yml"), "--set", "plugins=[no_such_module.Plugin]"],
        terminal_width=300,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "plugin no_such_module.Plugin cannot be imported" in result.output.strip().splitlines()[-1]
