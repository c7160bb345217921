"""`mathpal merge` on the tiny Gemma-3n: a standalone folder that answers exactly as base + adapter."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from evals.generate import generate_batch, load_model
from mathpal_cli import app
from mathpal_commands.ask import load_tutor
from mathpal_train.merge import merge_adapter

runner = CliRunner()


@pytest.fixture(scope="module")
def merged_dir(trained_run_dir, tmp_path_factory):
    return merge_adapter(trained_run_dir, tmp_path_factory.mktemp("merged") / "tutor")


def test_merged_greedy_answers_equal_the_adapters(trained_run_dir, tiny_model_dir, merged_dir, chat_examples):
    tokenizer, with_adapter = load_model(str(tiny_model_dir), str(trained_run_dir), tokenizer_path=str(trained_run_dir))
    merged_tokenizer, merged = load_model(str(merged_dir))
    prompts = [[m for m in e["messages"] if m["role"] != "assistant"] for e in chat_examples[:4]]
    adapter_answers = generate_batch(with_adapter, tokenizer, prompts, max_new_tokens=16)
    merged_answers = generate_batch(merged, merged_tokenizer, prompts, max_new_tokens=16)
    assert [a.text for a in merged_answers] == [a.text for a in adapter_answers]
    with with_adapter.disable_adapter():  # the adapter does change the answers: the test can fail
        base_answers = generate_batch(with_adapter, tokenizer, prompts, max_new_tokens=16)
    assert [a.text for a in base_answers] != [a.text for a in adapter_answers]


def test_merged_folder_is_standalone(merged_dir, trained_run_dir):
    names = {p.name for p in merged_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "adapter_config.json" not in names  # the LoRA layers are folded in, not attached
    assert (merged_dir / "chat_template.jinja").read_text() == (trained_run_dir / "chat_template.jinja").read_text()
    record = json.loads((merged_dir / "mathpal_run.json").read_text())
    assert record["merged"]["adapter"] == str(trained_run_dir) and record["merged"]["dtype"] == "float32"
    recipe = yaml.safe_load((merged_dir / "recipe.resolved.yml").read_text())
    assert recipe["output_dir"] == str(trained_run_dir)
    # `mathpal ask --model` finds the training system prompt in the merged folder.
    tutor = load_tutor(model=str(merged_dir))
    assert tutor.system_prompt == record["system_prompt"] and "mathpal_run.json" in tutor.description


def test_cli_merges_a_run_named_by_its_recipe_and_replaces_the_previous_folder(trained_run_dir, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old")
    result = runner.invoke(
        app, ["merge", str(trained_run_dir / "recipe.resolved.yml"), "--out", str(out)], terminal_width=300
    )
    assert result.exit_code == 0, result.output
    assert f"Merged model written to {out}" in result.output
    assert not (out / "stale.bin").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no staging folder left beside it


def test_cli_refuses_a_folder_without_an_adapter(tmp_path):
    result = runner.invoke(app, ["merge", str(tmp_path), "--out", str(tmp_path / "m")], terminal_width=300)
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: ") and "has no adapter_config.json" in result.output
    assert not (tmp_path / "m").exists()


def test_merge_takes_only_an_adapter_eval_would_take_and_writes_nothing_otherwise(trained_run_dir, tmp_path):
    """The check merge shares with eval and ask: finished mark, whole weights, the base model it names."""
    import shutil

    run = shutil.copytree(trained_run_dir, tmp_path / "run")
    weights = run / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])  # a save cut short
    result = runner.invoke(app, ["merge", str(run)], terminal_width=400)
    assert result.exit_code == 2 and result.output.startswith(f"error: {weights} is cut short (")
    shutil.copy(trained_run_dir / "adapter_model.safetensors", weights)
    other = tmp_path / "other-base"
    other.mkdir()
    result = runner.invoke(app, ["merge", str(run), "--model", str(other)], terminal_width=400)
    assert (
        result.exit_code == 2
        and f"was trained on {json.loads((run / 'mathpal_run.json').read_text())['base_model']}, not {other}"
        in result.output
    )
    assert not (run / "merged").exists()
