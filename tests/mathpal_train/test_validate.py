"""`validate_recipe`: Axolotl's schema plus the mistakes it lets through, all offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mathpal_cli import app
from mathpal_train.validate import RecipeError, validate_recipe
from tests.conftest import chat_example, write_recipe_inputs

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yml"))


@pytest.fixture()
def workdir(tmp_path, monkeypatch, tiny_model_dir):
    """A folder with what the recipes point at: data splits and the tiny model folder."""
    monkeypatch.chdir(tmp_path)
    return write_recipe_inputs(tmp_path, tiny_model_dir)


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


GOOD_ROW = json.dumps(chat_example(0), ensure_ascii=False)
# Data files as a crash, a hand edit or another tool leaves them; each refused naming file and 1-based line.
BAD_DATA = {
    "cut mid-line": (
        GOOD_ROW + "\n" + GOOD_ROW + "\n" + GOOD_ROW[:50],
        "data/train.jsonl:3 is not valid JSON (the file ends inside it: cut off mid-line)",
    ),
    "not JSON": (GOOD_ROW + "\nLan có 5 quả táo\n" + GOOD_ROW + "\n", "data/train.jsonl:2 is not valid JSON"),
    "empty": ("", "data/train.jsonl has no rows (the file is empty)"),
    "blank lines only": ("\n\n", "data/train.jsonl has no rows"),
    "no messages": (
        GOOD_ROW + "\n" + json.dumps({"question": "Tính 2 + 3."}) + "\n",
        "data/train.jsonl:2 has no 'messages' list of messages (missing)",
    ),
    "messages not a list": ('{"messages": "hi"}\n', "data/train.jsonl:1 has no 'messages' list of messages (str 'hi')"),
    "a list, not an object": ("[1, 2]\n", "data/train.jsonl:1 is a JSON list, not an object"),
    "a message without role": (
        '{"messages": [{"content": "hi"}]}\n',
        "data/train.jsonl:1: messages[0] is not a {role, content} object",
    ),
    "a byte-order mark": ("\ufeff" + GOOD_ROW, "data/train.jsonl:1 is not valid JSON: re-export it"),  # not cut
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_every_data_line_is_checked_and_a_bad_one_named_by_file_and_line(case, workdir):
    text, message = BAD_DATA[case]
    (workdir / "data" / "train.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        validate_recipe(load("smoke.yml"), Path("smoke.yml"))
    line = str(err.value)
    assert "\n" not in line and line.startswith("smoke.yml: data/train.jsonl")
    assert message in line, line
    assert "re-export it with `mathpal prepare-data`" in line or "not an object" in line or "no rows" in line


def test_a_bad_validation_line_is_named_too_and_binary_bytes_are_not_text(workdir):
    (workdir / "data" / "validation.jsonl").write_bytes(GOOD_ROW.encode() + b"\n\x89PNG\xff\n")
    with pytest.raises(RecipeError, match=r"data/validation.jsonl:2 is not UTF-8 text \(byte 0\)"):
        validate_recipe(load("smoke.yml"), Path("smoke.yml"))


def test_the_summary_counts_the_rows_it_read(workdir):
    (workdir / "data" / "train.jsonl").write_text((GOOD_ROW + "\n\n") * 7, encoding="utf-8")
    assert validate_recipe(load("smoke.yml"), Path("smoke.yml")).train_examples == 7


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: f.mkdir(), "has no config.json (an empty or unfinished folder)"),
        (lambda f: (f.mkdir(), (f / "config.json").write_text("{}")), "has config.json but no weights"),
        (lambda f: f.write_text("x"), "is a file, not a model folder"),
    ],
    ids=["empty folder", "config only", "a file"],
)
def test_a_base_model_folder_that_is_not_a_model_is_refused(make, message, workdir):
    make(workdir / "model")
    with pytest.raises(RecipeError) as err:
        validate_recipe({**load("smoke.yml"), "base_model": "model"}, Path("smoke.yml"))
    assert str(err.value).startswith(f"smoke.yml: base_model model {message}"), err.value


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("max_steps", 0, "a whole number of at least 1 (0 or less would train whole epochs"),
        ("max_steps", -5, "a whole number of at least 1"),
        ("micro_batch_size", 0, "a whole number of at least 1"),
        ("gradient_accumulation_steps", 0, "a whole number of at least 1"),
        ("gradient_accumulation_steps", 1.5, "a whole number of at least 1"),
        ("learning_rate", -1, "a number above 0"),
        ("learning_rate", 0, "a number above 0"),
        ("learning_rate", float("nan"), "a number above 0"),
        ("sequence_len", 0, "a whole number of at least 1"),
        ("warmup_steps", -1, "a whole number of at least 0"),
        ("eval_steps", 0, "a whole number of at least 1 (or a fraction of the run below 1)"),
        ("num_epochs", 0, "a number above 0"),
        ("micro_batch_size", True, "a whole number of at least 1"),
    ],
)
def test_numbers_no_run_can_be_made_of_are_refused(key, value, rule, workdir):
    with pytest.raises(RecipeError) as err:
        validate_recipe({**load("smoke.yml"), key: value}, Path("smoke.yml"))
    assert str(err.value) == f"smoke.yml: {key} is {value!r}; it must be {rule}" or str(err.value).startswith(
        f"smoke.yml: {key} is {value!r}; it must be {rule}"
    )


def test_a_sequence_len_shorter_than_every_row_is_refused_and_a_partial_drop_is_a_note(workdir):
    with pytest.raises(RecipeError, match=r"smoke.yml: sequence_len 8 is shorter than every training row \(the short"):
        validate_recipe({**load("smoke.yml"), "sequence_len": 8}, Path("smoke.yml"))
    long = chat_example(1)
    long["messages"][2]["content"] *= 40
    with (workdir / "data" / "train.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(long, ensure_ascii=False) + "\n")
    summary = validate_recipe(load("smoke.yml"), Path("smoke.yml"))
    assert summary.notes == ("1 of 41 training rows are longer than sequence_len 512: Axolotl drops them",)


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
