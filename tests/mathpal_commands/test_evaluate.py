"""One trained run, one loader: eval, ask and merge load the same base model, adapter, tokenizer and
system prompt from it (a finished run's folder as `mathpal train` leaves it; nothing is trained here)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from evals.evaluate import EvalSettings
from mathpal_cli import app
from mathpal_commands.ask import load_tutor
from mathpal_commands.evaluate import eval_settings
from mathpal_train.merge import merge_adapter
from mathpal_train.run_record import RUN_RECORD, RunRecord
from mathpal_train.trained_run import load_trained


def test_eval_ask_and_merge_load_the_same_thing(trained_run_dir, tiny_model_dir, tmp_path):
    assert_one_loader(trained_run_dir, tiny_model_dir, tmp_path)


def assert_one_loader(trained_run_dir: Path, base_model: Path, tmp_path: Path) -> None:
    """Eval, ask and merge take the same base model, adapter, tokenizer, system prompt and experiment
    from the run (also run on the end-to-end pipeline's trained run, tests/test_end_to_end.py)."""
    trained = load_trained(trained_run_dir)
    assert (trained.base_model, trained.adapter, trained.tokenizer) == (
        str(base_model),
        trained_run_dir,
        str(trained_run_dir),  # the tokenizer Axolotl saved beside the adapter, chat template included
    )
    record = RunRecord.read(trained_run_dir)
    assert trained.system_prompt == record.system_prompt and trained.experiment_key == record.experiment_key
    evaluated = eval_settings(EvalSettings(model="", data=tmp_path / "test.jsonl", adapter=str(trained_run_dir)))
    assert (evaluated.model, evaluated.adapter, evaluated.tokenizer, evaluated.experiment_key) == (
        trained.base_model,
        str(trained.adapter),
        trained.tokenizer,
        trained.experiment_key,
    )
    tutor = load_tutor(trained_run_dir)
    assert tutor.system_prompt == trained.system_prompt
    assert tutor.description.startswith(f"base {trained.base_model} + adapter {trained.adapter} (merged in memory);")
    merged = merge_adapter(trained_run_dir, tmp_path / "merged")
    merged_record = json.loads((merged / RUN_RECORD).read_text(encoding="utf-8"))
    assert merged_record["merged"]["base_model"] == trained.base_model
    assert merged_record["system_prompt"] == trained.system_prompt
    assert (merged / "tokenizer_config.json").read_text() == (trained_run_dir / "tokenizer_config.json").read_text()


def test_an_override_base_goes_through_the_same_check(trained_run_dir, tmp_path):
    """--model names another model than the run's: refused the same way for eval as for ask and merge."""
    other = tmp_path / "other-model"
    other.mkdir()
    settings = EvalSettings(model="", data=tmp_path / "test.jsonl", adapter=str(trained_run_dir))
    for load in (
        lambda: eval_settings(settings, model=str(other)),
        lambda: load_tutor(trained_run_dir, model=str(other)),
        lambda: merge_adapter(trained_run_dir, tmp_path / "merged", base_model=str(other)),
    ):
        try:
            load()
        except ValueError as err:
            assert f"was trained on {load_trained(trained_run_dir).base_model}, not {other}" in str(err)
        else:
            raise AssertionError("another base model was accepted")


def test_cli_eval_of_a_run_uses_its_own_base_model_without_model(trained_run_dir, tiny_model_dir, tmp_path):
    """The bug this fixes: `--adapter RUN` without `--model` used to put the adapter on the tiny demo model."""
    data = trained_run_dir.parents[1] / "data" / "test.jsonl"
    report = tmp_path / "report"
    argv = ["eval", "--adapter", str(trained_run_dir), "--data", str(data), "--limit", "2"]
    result = CliRunner().invoke(app, [*argv, "--max-new-tokens", "3", "--no-comet", "--report-dir", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert Path(metrics["model"]) == Path(tiny_model_dir) and metrics["adapter"] == str(trained_run_dir)
