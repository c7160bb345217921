"""A run's folder and record: where ask, merge, eval and the model artifact find what training used."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mathpal_common.comet import read_offline_key, read_offline_others
from mathpal_common.prompt import DEFAULT_SYSTEM_PROMPT
from mathpal_train.launch import PreparedRun
from mathpal_train.run_record import RUN_RECORD, read_record
from mathpal_train.train_job import run_training, start_record
from mathpal_train.trained_run import TrainedRun, dataset_manifest, open_run, training_system_prompt
from tests.conftest import SYSTEM

# A stand-in for `accelerate launch …`: a real child process that records the Comet key it was given;
# unless it fails before training (3), it starts training as RunStatePlugin does (the pending record
# and recipe take their place), then fails (4), or leaves an adapter and ends (10), marked finished (0).
JOB = """
import os, shutil, sys
from mathpal_train.run_folder import promote_pending
from mathpal_train.run_state import write_marker
out, adapter, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(os.path.join(out, "job_key.txt"), "w").write(os.environ.get("COMET_EXPERIMENT_KEY", ""))
if code == 3:
    sys.exit("ValueError: the stand-in failed before training")
promote_pending(out)
if code == 4:
    sys.exit(4)
for name in ("adapter_config.json", "adapter_model.safetensors"):
    shutil.copy(os.path.join(adapter, name), out)
if code == 0:
    write_marker(out, 1, 1)
"""


def test_open_run_from_its_folder_or_its_recipe(trained_run_dir):
    by_folder = open_run(trained_run_dir)
    by_recipe = open_run(trained_run_dir / "recipe.resolved.yml")
    assert by_folder == by_recipe
    assert by_folder.tokenizer_dir == str(trained_run_dir)
    assert by_folder.experiment_key and len(by_folder.experiment_key) == 32


def test_a_run_without_record_or_recipe_falls_back_to_the_adapter_and_the_default_prompt(trained_run_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trained_run_dir / name, bare)
    run = open_run(bare)
    assert run.record == {} and run.experiment_key is None
    adapter_base = json.loads((bare / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert run.base_model == adapter_base and run.tokenizer_dir == adapter_base
    assert run.system_prompt() == (DEFAULT_SYSTEM_PROMPT, "the default of `mathpal prepare-data`")


def test_the_system_prompt_comes_from_the_record_then_the_data(trained_run_dir):
    run = open_run(trained_run_dir)
    assert run.system_prompt() == (SYSTEM, str(trained_run_dir / RUN_RECORD))
    without_record = TrainedRun(run.output_dir, run.recipe, {})
    assert without_record.system_prompt() == (SYSTEM, run.recipe["datasets"][0]["path"])
    assert training_system_prompt({"datasets": [{"path": "nowhere.jsonl"}]})[0] == DEFAULT_SYSTEM_PROMPT


@pytest.mark.parametrize(
    "path, message",
    [("nowhere", "nowhere does not exist"), (".", "has no adapter_config.json")],
)
def test_open_run_refuses_in_one_line(path, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        open_run(tmp_path / path if path != "." else tmp_path)


def test_the_record_names_the_data_export_by_its_manifest_hash(trained_run_dir):
    run = open_run(trained_run_dir)
    manifest, sha = dataset_manifest(run.recipe)
    assert sha == hashlib.sha256(manifest.read_bytes()).hexdigest() == run.record["dataset"]["manifest_sha256"]


@pytest.fixture()
def recipe(trained_run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.delenv("COMET_EXPERIMENT_KEY", raising=False)
    cfg = yaml.safe_load((trained_run_dir / "recipe.resolved.yml").read_text())
    return {**cfg, "output_dir": str(tmp_path / "out")}


def job(recipe: dict, adapter, code: int) -> PreparedRun:
    """A prepared run whose job is the stand-in, ending as ``code`` says."""
    return PreparedRun([sys.executable, "-c", JOB, recipe["output_dir"], str(adapter), str(code)], recipe, [])


def test_a_successful_job_gets_its_key_and_leaves_a_record_and_the_model_artifact(recipe, trained_run_dir, tmp_path):
    out = tmp_path / "out"
    code, lines, error = run_training(job(recipe, trained_run_dir, 0))
    assert (code, error) == (0, None), lines
    record = read_record(out)
    key = record["comet"]["experiment_key"]
    assert record["status"] == "finished" and record["exit_code"] == 0 and (out / "job_key.txt").read_text() == key
    assert record["system_prompt"] == SYSTEM and record["base_model"] == recipe["base_model"]
    assert record["pid"] == os.getpid() and record["training_started_at"] <= record["ended_at"]
    assert lines[0] == f"run record: {out / RUN_RECORD} (finished)" and "Comet offline archive" in lines[1]
    (archive,) = (out / "comet").glob("*.zip")
    assert read_offline_key(archive) == key and read_offline_others(archive)["artifact_type"] == "model"
    assert yaml.safe_load((out / "recipe.resolved.yml").read_text()) == recipe and not (out / "pending").exists()


def test_a_failed_job_logs_nothing_and_each_launch_is_its_own_experiment(recipe, trained_run_dir, tmp_path):
    out = tmp_path / "out"
    code, lines, error = run_training(job(recipe, trained_run_dir, 4))
    assert (code, lines) == (4, [f"run record: {out / RUN_RECORD} (failed (exit 4))"])
    assert error == f"training failed (exit 4): no error line (the job's whole output: {out / 'logs' / 'training.log'})"
    first = read_record(out)
    assert (first["status"], first["exit_code"]) == ("failed", 4) and not (out / "comet").exists()
    code, _, _ = run_training(job(recipe, trained_run_dir, 0))
    assert code == 0
    second = read_record(out)["comet"]["experiment_key"]
    assert second != first["comet"]["experiment_key"] and (out / "job_key.txt").read_text() == second


def test_a_launch_that_fails_before_training_keeps_the_finished_run_and_records_itself(
    recipe, trained_run_dir, tmp_path
):
    out = tmp_path / "out"
    assert run_training(job(recipe, trained_run_dir, 0)).code == 0
    (out / "debug.log").write_text("the finished run's Axolotl log\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, lines, error = run_training(job({**recipe, "lora_r": 8}, trained_run_dir, 3))
    assert code == 1 and error.startswith("training failed (exit 1): ValueError: the stand-in failed before training")
    assert lines == [
        f"failed (exit 1) before training started: {out} is as it was; this launch's record: "
        f"{out / 'pending' / RUN_RECORD}"
    ]
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != "job_key.txt"} == {
        k: v for k, v in before.items() if k != "job_key.txt"
    }
    pending = read_record(out / "pending")
    assert pending["status"] == "failed before training" and pending["exit_code"] == 1
    assert yaml.safe_load((out / "pending" / "recipe.resolved.yml").read_text())["lora_r"] == 8


def test_no_comet_no_key(recipe):
    record = start_record({**recipe, "use_comet": False}, {})
    assert record["comet"] is None and record["system_prompt"] == SYSTEM


def test_the_record_holds_absolute_paths_and_each_data_files_hash(recipe, trained_run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(trained_run_dir.parents[1])
    base = os.path.relpath(recipe["base_model"])  # relative to where training runs, as recipes name it
    relative = {**recipe, "base_model": base, "datasets": [{"path": "data/train.jsonl"}]}
    record = start_record(relative, {})
    assert record["base_model"] == str(Path(recipe["base_model"]).absolute())
    train = trained_run_dir.parents[1] / "data" / "train.jsonl"
    assert record["dataset"]["files"] == {str(train): hashlib.sha256(train.read_bytes()).hexdigest()}
    assert record["dataset"]["path"] == str(train) and Path(record["dataset"]["prepared_path"]).is_absolute()


def test_a_job_that_ends_well_without_the_finished_mark_logs_no_model(recipe, trained_run_dir, tmp_path):
    """Exit 0 is not enough (Axolotl exits 0 after its SIGINT save): only RunStatePlugin's mark counts."""
    out = tmp_path / "out"
    code, lines, _ = run_training(job(recipe, trained_run_dir, 10))
    assert code == 0 and read_record(out)["status"] == "ended without its finished mark"
    assert lines[1].startswith(f"warning: {out} was not marked finished") and not (out / "comet").exists()
