"""The training benchmark's CPU-runnable parts: variants, time to first step, the Unsloth peer's process, the table."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.train_throughput import (
    PEER_RESULT,
    RUN_STATE_PLUGIN,
    SPEED_PLUGIN,
    StreamedRun,
    collator,
    first_step_marks,
    first_step_only,
    fixed_length,
    format_table,
    fresh_output_dir,
    parse_args,
    production_changes,
    run_baseline,
    run_unsloth_peer,
    stream_run,
    training_rows,
    unsloth_argv,
    unsloth_env,
)
from mathpal_train.recipes import load_recipe, parse_set, resolve_recipe

REPO = Path(__file__).resolve().parents[2]


def test_default_variants_are_production_with_and_without_its_speed_plugin():
    args = parse_args([])
    assert args.variants == ["baseline", "production", "production-speed"]
    assert args.peer is None and args.peer_micro_batches == "16"
    assert parse_args(["--peer", "unsloth"]).peer == "unsloth"


def test_production_variants_name_their_recipe_changes():
    assert production_changes("production") == []
    assert production_changes("production:lora_dropout=0") == ["lora_dropout=0"]
    assert production_changes("production-speed:micro_batch_size=1;gradient_accumulation_steps=8") == [
        "gemma3n_fused_loss=false",
        "gemma3n_compile_layers=false",
        "micro_batch_size=1",
        "gradient_accumulation_steps=8",
    ]
    with pytest.raises(ValueError, match="unknown variant 'prod'"):
        production_changes("prod")


def test_a_variant_that_would_drop_the_run_state_plugin_is_refused_before_any_run(capsys):
    """The old `production+speed` set plugins=[the speed plugin] and so lost RunStatePlugin: its run was
    never marked finished. Every variant keeps the recipe's plugin list unless told otherwise, and one
    that drops RunStatePlugin stops the benchmark before it starts."""
    for variant in ("production", "production-speed", "production:lora_r=16"):
        sets = parse_set(production_changes(variant))
        recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, sets)
        assert recipe["plugins"] == [SPEED_PLUGIN, RUN_STATE_PLUGIN], variant
    with pytest.raises(ValueError, match="drops mathpal_train.run_state.RunStatePlugin"):
        production_changes(f"production:plugins=[{SPEED_PLUGIN}]")
    with pytest.raises(SystemExit):
        parse_args(["--variants", f"production,production:plugins=[{SPEED_PLUGIN}]"])
    assert "keep it in the list" in capsys.readouterr().err


def test_each_row_starts_from_an_empty_output_folder(tmp_path, capsys):
    """A warm machine keeps the work folder: a checkpoint left by an earlier call made a row resume
    (2 steps, NaN tokens/s). The row's folder is emptied first; other rows' folders are left alone."""
    left = tmp_path / "out-production" / "checkpoint-2"
    left.mkdir(parents=True)
    (left / "trainer_state.json").write_text("{}")
    other = tmp_path / "out-production-speed" / "checkpoint-2"
    other.mkdir(parents=True)
    out = fresh_output_dir(tmp_path, "production")
    assert out == tmp_path / "out-production" and not out.exists()
    assert other.exists()
    assert "removing out-production left by an earlier run" in capsys.readouterr().out
    assert fresh_output_dir(tmp_path, "production:micro_batch_size=8").name == "out-production_micro_batch_size_8"


def test_the_peer_pads_every_batch_to_one_shape(tiny_model_dir, chat_examples):
    """Unsloth recompiles for every new batch shape: its collator pads to one fixed length."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = training_rows(tokenizer, chat_examples, micro_batch=3, steps=3, seq_len=2048)
    assert len(data) == 12
    length = fixed_length(data)
    longest = max(len(d["input_ids"]) for d in data)
    assert length % 64 == 0 and longest <= length < longest + 64
    fixed, longest_first = collator(tokenizer, length), collator(tokenizer)
    batches = [data[i : i + 3] for i in range(0, 12, 3)]
    assert {tuple(fixed(b)["input_ids"].shape) for b in batches} == {(3, length)}
    assert len({tuple(longest_first(b)["input_ids"].shape) for b in batches}) > 1  # what made Unsloth recompile
    padded = fixed(batches[0])
    assert int(padded["attention_mask"].sum()) == sum(len(d["input_ids"]) for d in batches[0])  # padding not real


def test_the_first_step_is_split_from_axolotls_start_and_the_step0_eval():
    run = StreamedRun(0, "", first_step_s=184.0, eval_before_first_step_s=12.5, trainer_start_s=70.0)
    assert first_step_only(run) == pytest.approx(101.5)
    assert first_step_only(StreamedRun(0, "", None, 0.0, 70.0)) is None
    assert first_step_only(StreamedRun(0, "", 50.0, 0.0, None)) is None


def test_an_unknown_variant_stops_before_any_run(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--variants", "baseline,productoin"])
    assert "unknown variant 'productoin'" in capsys.readouterr().err


def test_the_variant_without_speed_resolves_to_production_with_the_plugins_switches_off():
    sets = parse_set(production_changes("production-speed"))
    recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, sets)
    assert recipe["gemma3n_fused_loss"] is False and recipe["gemma3n_compile_layers"] is False
    assert recipe["micro_batch_size"] == 4 and recipe["load_in_4bit"] is True  # the rest as shipped


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


def test_stream_run_writes_each_line_to_its_log_as_it_comes(tmp_path):
    # The child ends only after it has seen its first line in the log: a call cut short keeps the log.
    log = tmp_path / "row.log"
    script = textwrap.dedent(
        """
        import pathlib, sys, time
        print("first line", flush=True)
        log = pathlib.Path(sys.argv[1])
        deadline = time.time() + 10
        while "first line" not in (log.read_text() if log.exists() else "") and time.time() < deadline:
            time.sleep(0.05)
        print("seen" if "first line" in log.read_text() else "not seen", flush=True)
        """
    )
    run = stream_run([sys.executable, "-c", script, str(log)], cwd=tmp_path, log_path=log)
    assert run.returncode == 0
    assert log.read_text() == run.log == "first line\nseen\n"


def test_unsloth_peer_runs_in_its_own_process_without_statistics(tmp_path):
    argv = unsloth_argv(tmp_path, tmp_path / "m", 16, 40, 5, 2048)
    assert argv[:3] == [sys.executable, "-m", "benchmarks.unsloth_peer"]
    assert argv[argv.index("--micro-batch") + 1] == "16" and argv[argv.index("--model-dir") + 1] == str(tmp_path / "m")
    env = unsloth_env({"PATH": "/bin"})
    assert env["UNSLOTH_DISABLE_STATISTICS"] == "1" and env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"
    assert "PYTHONPATH" not in env
    apart = unsloth_env({"PYTHONPATH": "/site", "UNSLOTH_PYTHONPATH": "/uns"})
    assert apart["PYTHONPATH"] == "/uns:/site"  # the peer's own installation first, for the peer only
    import benchmarks.unsloth_peer  # noqa: F401 - importing the module must not import Unsloth

    assert "unsloth" not in sys.modules


def test_unsloth_peer_without_unsloth_is_an_error_row(tmp_path):
    """Unsloth is not a dependency: on a machine without it the row says so, the benchmark goes on."""
    if "unsloth" in sys.modules or _installed("unsloth"):
        pytest.skip("unsloth is installed here")
    row = run_unsloth_peer(tmp_path, tmp_path / "model", 16, 2, 1, 128)
    assert row["variant"] == "unsloth mb=16"
    assert row["error"].startswith("exit 1:") and "unsloth is not installed" in row["error"]
    assert PEER_RESULT not in (tmp_path / "unsloth-peer-mb16.log").read_text()


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_table_has_a_time_to_first_step_column_and_survives_missing_numbers():
    rows = [
        {"variant": "baseline mb=8", "trained_tokens_per_s": 335.2, "real_tokens_per_s": 778.0, "peak_gib": 19.6,
         "mfu": 0.01, "loss_first": 12.897, "loss_last": 12.896, "grad_norm_finite": True,
         "time_to_first_step_s": 41.25},
        {"variant": "production-speed", "trained_tokens_per_s": float("nan"), "real_tokens_per_s": float("nan"),
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


def test_axolotl_qlora_dtypes_puts_norms_and_embeddings_back_to_bf16(tmp_path):
    """The speed profile sees the recipe's dtypes: after prepare_model_for_kbit_training's fp32
    upcast, Axolotl puts norms and the embedding tables (the per-layer one too) back into bf16."""
    import torch
    from transformers import Gemma3nForCausalLM

    from benchmarks.train_throughput import axolotl_qlora_dtypes
    from mathpal_train.tiny_model import tiny_text_config

    model = Gemma3nForCausalLM(tiny_text_config(vocab_size=512)).float()
    axolotl_qlora_dtypes(model)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["model.embed_tokens.weight"] == torch.bfloat16
    assert dtypes["model.embed_tokens_per_layer.weight"] == torch.bfloat16
    assert dtypes["model.norm.weight"] == torch.bfloat16
    assert dtypes["model.layers.0.input_layernorm.weight"] == torch.bfloat16
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] == torch.float32  # 4-bit in the recipe: left alone
    assert dtypes["model.layers.0.altup.correction_coefs.weight"] == torch.float32
