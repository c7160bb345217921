"""The training benchmark's CPU-runnable parts: variants, time to first step, the Unsloth peer's process, the table."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.train_throughput import (
    PEER_RESULT,
    SPEED_PLUGIN,
    first_step_marks,
    format_table,
    parse_args,
    production_changes,
    run_baseline,
    run_unsloth_peer,
    stream_run,
    unsloth_argv,
    unsloth_env,
)
from mathpal_train.recipes import load_recipe, parse_set, resolve_recipe

REPO = Path(__file__).resolve().parents[2]


def test_default_variants_include_production_with_the_speed_plugin():
    args = parse_args([])
    assert args.variants == ["baseline", "production", "production+speed"]
    assert args.peer is None and args.peer_micro_batch == 16
    assert parse_args(["--peer", "unsloth"]).peer == "unsloth"


def test_production_variants_name_their_recipe_changes():
    assert production_changes("production") == []
    assert production_changes("production:lora_dropout=0") == ["lora_dropout=0"]
    assert production_changes("production+speed:micro_batch_size=4;gradient_accumulation_steps=2") == [
        f"plugins=[{SPEED_PLUGIN}]",
        "micro_batch_size=4",
        "gradient_accumulation_steps=2",
    ]
    with pytest.raises(ValueError, match="unknown variant 'prod'"):
        production_changes("prod")


def test_an_unknown_variant_stops_before_any_run(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--variants", "baseline,productoin"])
    assert "unknown variant 'productoin'" in capsys.readouterr().err


def test_the_speed_variant_resolves_to_production_with_the_plugin():
    sets = parse_set(production_changes("production+speed:gemma3n_compile_layers=true"))
    recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, sets)
    assert recipe["plugins"] == [SPEED_PLUGIN] and recipe["gemma3n_compile_layers"] is True
    assert recipe["micro_batch_size"] == 1 and recipe["load_in_4bit"] is True  # the rest as shipped


def test_first_step_is_the_first_training_metrics_line_after_the_step0_eval():
    lines = [
        (1.0, "[INFO] loading model\n"),
        (9.0, "{'eval_loss': '12.9', 'eval_runtime': '4.5', 'epoch': 0}\n"),
        (14.0, "{'loss': '12.88', 'grad_norm': '1.2', 'epoch': '0.01'}\n"),
        (15.0, "{'loss': '12.87', 'grad_norm': '1.1', 'epoch': '0.02'}\n"),
    ]
    assert first_step_marks(lines) == (14.0, 4.5)
    assert first_step_marks(lines[:2]) == (None, 4.5)


def test_stream_run_times_lines_as_they_arrive(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        print("{'eval_loss': '1.0', 'eval_runtime': '0.1'}")
        time.sleep(0.5)
        print("{'loss': '1.0', 'grad_norm': '0.5'}")
        print("done", file=sys.stderr)
        """
    )
    run = stream_run([sys.executable, "-c", script], cwd=tmp_path)
    assert run.returncode == 0 and "done" in run.log
    assert run.first_step_s is not None and run.first_step_s >= 0.5  # unbuffered: not at exit
    assert run.eval_before_first_step_s == pytest.approx(0.1)


def test_unsloth_peer_runs_in_its_own_process_without_statistics(tmp_path):
    argv = unsloth_argv(tmp_path, tmp_path / "m", 16, 40, 5, 2048)
    assert argv[:3] == [sys.executable, "-m", "benchmarks.unsloth_peer"]
    assert argv[argv.index("--micro-batch") + 1] == "16" and argv[argv.index("--model-dir") + 1] == str(tmp_path / "m")
    env = unsloth_env({"PATH": "/bin"})
    assert env["UNSLOTH_DISABLE_STATISTICS"] == "1" and env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"
    import benchmarks.unsloth_peer  # noqa: F401 - importing the module must not import Unsloth

    assert "unsloth" not in sys.modules


def test_unsloth_peer_without_unsloth_is_an_error_row(tmp_path):
    """Unsloth is not a dependency: on a machine without it the row says so, the benchmark goes on."""
    if "unsloth" in sys.modules or _installed("unsloth"):
        pytest.skip("unsloth is installed here")
    row = run_unsloth_peer(tmp_path, tmp_path / "model", 16, 2, 1, 128)
    assert row["variant"] == "unsloth mb=16"
    assert row["error"].startswith("exit 1:") and "unsloth is not installed" in row["error"]
    assert PEER_RESULT not in (tmp_path / "unsloth-peer.log").read_text()


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_table_has_a_time_to_first_step_column_and_survives_missing_numbers():
    rows = [
        {"variant": "baseline mb=8", "trained_tokens_per_s": 335.2, "real_tokens_per_s": 778.0, "peak_gib": 19.6,
         "mfu": 0.01, "loss_first": 12.897, "loss_last": 12.896, "grad_norm_finite": True,
         "time_to_first_step_s": 41.25},
        {"variant": "production+speed", "trained_tokens_per_s": float("nan"), "real_tokens_per_s": float("nan"),
         "peak_gib": None, "loss_first": None, "loss_last": None, "grad_norm_finite": True,
         "time_to_first_step_s": None},
        {"variant": "unsloth mb=16", "error": "exit 1: unsloth is not installed here"},
    ]  # fmt: skip
    table = format_table(rows).splitlines()
    assert table[0].split()[-3:] == ["1st", "step", "s"]
    assert table[2].split()[0:2] == ["baseline", "mb=8"] and table[2].split()[-1] == "41.2"
    assert "12.897→12.896" in table[2] and "1.0%" in table[2]
    assert table[3].split()[1:4] == ["-", "-", "-"] and table[3].split()[-1] == "-"
    assert table[4] == f"{'unsloth mb=16':<44} exit 1: unsloth is not installed here"


def test_baseline_on_the_cpu_reports_its_time_to_first_step(tiny_model_dir, chat_examples):
    """The tiny model on the CPU (a smoke check of the code path, not a measurement)."""
    row = run_baseline(tiny_model_dir, chat_examples, micro_batch=2, steps=2, warmup=1, seq_len=128)
    assert row["variant"] == "baseline mb=2" and "error" not in row
    assert 0 < row["time_to_first_step_s"] < 300
    assert row["trained_tokens_per_s"] > 0 and row["grad_norm_finite"] is True and row["peak_gib"] is None
