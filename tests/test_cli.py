"""The `mathpal` command line: help, the exact launch command, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mathpal_cli import app
from tests.conftest import write_recipe_inputs

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "smoke.yml"
runner = CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_help_lists_every_command_with_a_description():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for command in ["seed-qdrant", "prepare-data", "tiny-model", "validate", "train", "ask", "merge", "eval", "demo"]:
        line = next(line for line in result.output.splitlines() if f" {command} " in line)
        assert len(line.split(command, 1)[1].strip(" │")) > 10, line


@pytest.mark.slow
def test_help_and_validate_print_only_what_the_user_can_act_on(in_tmp, tiny_model_dir):
    """No torchao library-load failures, torch pytree deprecations or Axolotl advice that this model
    cannot take (flash attention) before the summary; --debug shows them."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    help_ = subprocess.run([sys.executable, "-m", "mathpal_cli", "--help"], capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and help_.stderr == ""
    write_recipe_inputs(in_tmp, tiny_model_dir)
    validate = [sys.executable, "-m", "mathpal_cli", "validate", str(SMOKE.parent / "production.yml")]
    quiet = subprocess.run(validate, cwd=in_tmp, capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.splitlines()[0].startswith("ok ") and "peak GPU memory:" in quiet.stdout
    assert all(line.startswith("  ") for line in quiet.stdout.splitlines()[1:]), quiet.stdout
    debug = subprocess.run([*validate, "--debug"], cwd=in_tmp, capture_output=True, text=True, env=env)
    assert debug.returncode == 0 and "cross-sample decontamination" in debug.stderr


def test_cli_turns_axolotl_telemetry_off_even_when_the_caller_asked_for_it():
    """Importing the CLI sets the switch for itself and all it starts (this test's own process has it from
    conftest, so it looks from a clean child with the variable set to 0)."""
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "0"}
    shown = subprocess.run(
        [sys.executable, "-c", "import os, mathpal_cli; print(os.environ['AXOLOTL_DO_NOT_TRACK'])"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "1"


@pytest.fixture()
def smoke_inputs(in_tmp, tiny_model_dir):
    """What smoke.yml points at: the data splits and a (local) base model folder."""
    return write_recipe_inputs(in_tmp, tiny_model_dir)


def dry_run_recipe(output: str) -> dict:
    """The resolved recipe a dry run printed (everything after its announcement)."""
    return yaml.safe_load(output.split("the resolved recipe would be:", 1)[1])


def test_train_dry_run_prints_the_command_and_the_resolved_recipe_and_writes_nothing(smoke_inputs):
    result = runner.invoke(
        app, ["train", str(SMOKE), "--max-steps", "3", "--set", "lora_r=4", "--dry-run"], terminal_width=400
    )
    assert result.exit_code == 0, result.output
    assert "override max_steps = 3 (from --max-steps)" in result.output
    assert "override lora_r = 4 (from --set)" in result.output
    assert "-m axolotl.cli.train outputs/smoke/pending/recipe.resolved.yml" in result.output
    resolved = dry_run_recipe(result.output)
    assert resolved["max_steps"] == 3 and resolved["lora_r"] == 4
    assert not (smoke_inputs / "outputs").exists()


def test_train_runs_accelerate_with_the_exact_argv_and_returns_its_exit_code(monkeypatch, smoke_inputs):
    import mathpal_train.launch
    import mathpal_train.train_job

    calls = []

    def fake_run(argv, env, log_path, **_):
        calls.append((argv, env, log_path, (smoke_inputs / "outputs/smoke/pending/recipe.resolved.yml").read_text()))
        return mathpal_train.launch.JobEnd(3, last_error="RuntimeError: the stand-in job failed")

    monkeypatch.setattr(mathpal_train.train_job, "run_logged", fake_run)  # where the job is run
    monkeypatch.setenv("LEARNING_RATE", "5e-4")
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.delenv("COMET_START_ONLINE", raising=False)
    result = runner.invoke(app, ["train", str(SMOKE), "--num-gpus", "0"], terminal_width=400)
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: training failed (exit 3): RuntimeError: the stand-in job failed (the job's whole output: "
        "outputs/smoke/logs/training.log)"
    )
    ((argv, env, log_path, launched),) = calls
    assert Path(argv[0]).name == "accelerate"
    assert argv[1:] == [
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--cpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "axolotl.cli.train",
        "outputs/smoke/pending/recipe.resolved.yml",
    ]
    assert env["AXOLOTL_DO_NOT_TRACK"] == "1"
    assert env["COMET_START_ONLINE"] == "0" and env["COMET_OFFLINE_DIRECTORY"] == "outputs/smoke/comet"
    assert log_path == Path("outputs/smoke/logs/training.log")
    assert "learning_rate: 0.0005" in launched
    # The job failed before training started: its recipe and record stay in pending/, saying so.
    record = json.loads((smoke_inputs / "outputs/smoke/pending/mathpal_run.json").read_text())
    assert record["status"] == "failed before training" and record["exit_code"] == 3
    assert record["error"] == "RuntimeError: the stand-in job failed"
    assert sorted(p.name for p in (smoke_inputs / "outputs/smoke").iterdir()) == ["pending"]


@pytest.mark.parametrize(
    "gpus, deepspeed, expected_ds, launch",
    [
        ("0", None, None, ["--num_processes", "1", "--num_machines", "1", "--cpu", "--mixed_precision", "no"]),
        ("1", None, None, ["--num_processes", "1", "--num_machines", "1"]),
        ("1", "zero1", "zero1.json", ["--num_processes", "1", "--num_machines", "1"]),
        ("2", None, "zero2.json", ["--num_processes", "2", "--num_machines", "1", "--multi_gpu"]),
        ("8", "zero3", "zero3_bf16.json", ["--num_processes", "8", "--num_machines", "1", "--multi_gpu"]),
        ("2", "none", None, ["--num_processes", "2", "--num_machines", "1", "--multi_gpu"]),  # plain DDP
    ],
)
def test_dry_run_argv_and_deepspeed_choice(gpus, deepspeed, expected_ds, launch, smoke_inputs):
    args = ["train", str(SMOKE), "--num-gpus", gpus, "--dry-run"] + (["--deepspeed", deepspeed] if deepspeed else [])
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 0, result.output
    command = next(line for line in result.output.splitlines() if " launch " in line).split()
    assert command[2:] == [
        *launch,
        "--dynamo_backend",
        "no",
        "-m",
        "axolotl.cli.train",
        "outputs/smoke/pending/recipe.resolved.yml",
    ]
    resolved = dry_run_recipe(result.output)
    if expected_ds:
        assert Path(resolved["deepspeed"]).name == expected_ds and Path(resolved["deepspeed"]).is_file()
    else:
        assert "deepspeed" not in resolved


def test_zero3_qlora_needs_bf16_storage_which_a_dotted_set_adds(smoke_inputs):
    production = SMOKE.parent / "production.yml"
    args = ["train", str(production), "--num-gpus", "2", "--deepspeed", "zero3", "--dry-run"]
    refused = runner.invoke(app, args, terminal_width=400)
    assert refused.exit_code == 2
    assert "--set bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16" in refused.output
    assert not (smoke_inputs / "outputs").exists()  # refused before anything is written
    result = runner.invoke(
        app, [*args, "--set", "bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16"], terminal_width=400
    )
    assert result.exit_code == 0, result.output
    resolved = dry_run_recipe(result.output)
    assert resolved["bnb_config_kwargs"] == {
        "llm_int8_skip_modules": ["lm_head", "correction_coefs", "prediction_coefs", "modality_router"],
        "bnb_4bit_quant_storage": "bfloat16",
    }


def test_set_through_a_non_mapping_is_a_one_line_error(smoke_inputs):
    result = runner.invoke(app, ["train", str(SMOKE), "--set", "max_steps.x=1", "--dry-run"], terminal_width=400)
    assert result.exit_code == 2
    assert "max_steps is 240, not a mapping" in result.output
    assert not (smoke_inputs / "outputs").exists()


def test_quick_test_and_experiment_name_overrides(smoke_inputs):
    result = runner.invoke(
        app,
        ["train", str(SMOKE), "--num-gpus", "0", "--quick-test", "--experiment-name", "try-1", "--dry-run"],
        terminal_width=400,
    )
    assert result.exit_code == 0, result.output
    resolved = dry_run_recipe(result.output)
    assert {
        k: resolved[k]
        for k in (
            "max_steps",
            "sequence_len",
            "learning_rate",
            "micro_batch_size",
            "gradient_accumulation_steps",
            "save_steps",
            "eval_steps",
        )
    } == {
        "max_steps": 20,
        "sequence_len": 1024,
        "learning_rate": 1e-4,
        "micro_batch_size": 1,
        "gradient_accumulation_steps": 2,
        "save_steps": 10,
        "eval_steps": 10,
    }
    assert resolved["comet_experiment_config"] == {"name": "try-1"}


def test_dry_run_two_nodes(smoke_inputs):
    result = runner.invoke(
        app,
        [
            "train",
            str(SMOKE),
            "--num-gpus",
            "8",
            "--num-machines",
            "2",
            "--machine-rank",
            "0",
            "--main-process-ip",
            "10.1.2.3",
            "--main-process-port",
            "29555",
            "--dry-run",
        ],
        terminal_width=400,
    )
    assert result.exit_code == 0, result.output
    assert (
        "--num_processes 16 --num_machines 2 --machine_rank 0 --main_process_ip 10.1.2.3 "
        "--main_process_port 29555 --multi_gpu"
    ) in result.output


def test_secrets_in_the_environment_stay_out_of_the_resolved_recipe(smoke_inputs, monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", "comet-secret-123")
    monkeypatch.setenv("HF_TOKEN", "hf_" + "s" * 34)
    result = runner.invoke(app, ["train", str(SMOKE), "--num-gpus", "0", "--dry-run"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "comet-secret-123" not in result.output and "hf_sss" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "missing.yml"], "recipe missing.yml does not exist"),
        (["train", "."], "recipe . is a folder: pass a recipe file such as recipes/production.yml"),
        (["validate", "binary.yml"], "recipe binary.yml is not UTF-8 text (byte 0): pass a YAML recipe file"),
        (["train", str(SMOKE), "--set", "lora_r"], "--set 'lora_r' is not key=value"),
        (["train", str(SMOKE), "--num-gpus", "2"], "--num-gpus 2 asked for, but 0 GPU(s) visible"),
        (["train", str(SMOKE), "--deepspeed", "zero9"], "--deepspeed zero9: unknown ZeRO stage"),
        (["train", str(SMOKE), "--num-gpus", "0"], "datasets[0].path data/train.jsonl does not exist"),
        (["prepare-data", "--qdrant-path", "nowhere"], "Qdrant store nowhere does not exist"),
        (["tiny-model"], "data/train.jsonl does not exist: run `mathpal prepare-data` first"),
        (["eval", "--data", "nope.jsonl"], "nope.jsonl does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, in_tmp):
    (in_tmp / "binary.yml").write_bytes(b"\x89\xff\x00PNG")
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], result.output
    assert not any(p.name in {"outputs", "data", ".mathpal", "reports"} for p in in_tmp.iterdir())
    assert "Traceback" not in result.output


def test_prepare_data_missing_collection_is_one_line_error(in_tmp):
    runner.invoke(app, ["seed-qdrant", "--problems", "20", "--collection", "other"])
    result = runner.invoke(app, ["prepare-data", "--collection", "vector_exams"], terminal_width=400)
    assert result.exit_code == 2
    assert "collection 'vector_exams' not found" in result.output
    assert not (in_tmp / "data").exists()


GOOD = json.dumps({"messages": [{"role": "user", "content": "Tính 2 + 3."}, {"role": "assistant", "content": "5"}]})
# Input that used to be refused after ~30 s as a 300-490-line traceback (or trained something else):
# (environment, a change to make, the one line). The variable that gave a bad value is named.
BAD_BEFORE_LAUNCH = {
    "BATCH_SIZE=0": ({"BATCH_SIZE": "0"}, None, "BATCH_SIZE=0: micro_batch_size is 0; it must be a whole number"),
    "GRADIENT_ACCUMULATION_STEPS=0": (
        {"GRADIENT_ACCUMULATION_STEPS": "0"},
        None,
        "GRADIENT_ACCUMULATION_STEPS=0: gradient_accumulation_steps is 0; it must be a whole number of at least 1",
    ),
    "LEARNING_RATE=-1": ({"LEARNING_RATE": "-1"}, None, "LEARNING_RATE=-1: learning_rate is -1; it must be a number"),
    "LEARNING_RATE=abc": ({"LEARNING_RATE": "abc"}, None, "LEARNING_RATE=abc: learning_rate is 'abc'; it must be a"),
    "MAX_INPUT_TOKENS=8": (
        {"MAX_INPUT_TOKENS": "8"},
        None,
        "MAX_INPUT_TOKENS=8: sequence_len 8 is shorter than every training row (the shortest has",
    ),
    "MAX_STEPS=0": ({"MAX_STEPS": "0"}, None, "MAX_STEPS=0: max_steps is 0; it must be a whole number of at least 1"),
    "MAX_STEPS=-5": ({"MAX_STEPS": "-5"}, None, "MAX_STEPS=-5: max_steps is -5; it must be a whole number of at"),
    "MODEL_ID=an empty folder": (
        {"MODEL_ID": "empty-model"},
        lambda d: (d / "empty-model").mkdir(),
        "MODEL_ID=empty-model: base_model empty-model has no config.json (an empty or unfinished folder)",
    ),
    "train.jsonl cut mid-line": (
        {},
        lambda d: (d / "data" / "train.jsonl").write_text(GOOD + "\n" + GOOD[:30]),
        "smoke.yml: data/train.jsonl:2 is not valid JSON (the file ends inside it: cut off mid-line)",
    ),
    "a non-JSON line": (
        {},
        lambda d: (d / "data" / "train.jsonl").write_text(GOOD + "\nnot json\n" + GOOD + "\n"),
        "smoke.yml: data/train.jsonl:2 is not valid JSON: re-export it with `mathpal prepare-data`",
    ),
    "an empty train.jsonl": (
        {},
        lambda d: (d / "data" / "train.jsonl").write_text(""),
        "smoke.yml: data/train.jsonl has no rows (the file is empty)",
    ),
    "a row without messages": (
        {},
        lambda d: (d / "data" / "train.jsonl").write_text(GOOD + "\n" + json.dumps({"question": "2 + 3?"}) + "\n"),
        "smoke.yml: data/train.jsonl:2 has no 'messages' list of messages (missing)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BEFORE_LAUNCH))
def test_bad_input_is_refused_before_launch_by_validate_and_train_and_a_finished_run_is_untouched(
    case, smoke_inputs, trained_run_dir, monkeypatch
):
    env, change, message = BAD_BEFORE_LAUNCH[case]
    if change:
        change(smoke_inputs)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    finished = shutil.copytree(trained_run_dir, smoke_inputs / "outputs" / "smoke")
    before = {str(p): p.read_bytes() for p in Path(finished).rglob("*") if p.is_file()}
    for args in (["validate", str(SMOKE)], ["train", str(SMOKE), "--num-gpus", "0"]):
        result = runner.invoke(app, args, terminal_width=400)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]
        assert "accelerate" not in result.output and "\n" not in lines[-1]
    assert {str(p): p.read_bytes() for p in Path(finished).rglob("*") if p.is_file()} == before
