"""The DeepSpeed benchmark's command and log reading (its GPU runs are recorded in docs/performance.md)."""

import sys
from pathlib import Path

from benchmarks.train_multi_gpu import ZERO3_QUANT, format_table, run, stage_gpus, summarize_run, train_argv
from mathpal_train.recipes import load_recipe, parse_set, resolve_recipe

REPO = Path(__file__).resolve().parents[2]

LOG = """[2026-11-25 09:20:21,632] [INFO] [axolotl.utils.train] Using auto-resume functionality to resume from checkpoint at /tmp/bench/out-zero3-1/checkpoint-3
{'loss': '12.9', 'grad_norm': '1.2e+05', 'memory/max_allocated (GiB)': '22.7', 'tokens/train_per_sec_per_gpu': '600', 'epoch': '0.1'}
{'loss': '12.88', 'grad_norm': '1.1e+05', 'memory/max_allocated (GiB)': '22.74', 'tokens/train_per_sec_per_gpu': '650', 'epoch': '0.2'}
{'loss': '12.89', 'grad_norm': 'nan', 'memory/max_allocated (GiB)': '22.7', 'tokens/train_per_sec_per_gpu': '640', 'epoch': '0.3'}
"""


def test_train_argv_keeps_the_effective_batch_and_names_the_stage():
    argv = train_argv(Path("/m"), Path("/o"), "zero2", 2, 6, 2, 3)
    assert argv[argv.index("--num-gpus") + 1] == "2" and argv[argv.index("--deepspeed") + 1] == "zero2"
    assert "gradient_accumulation_steps=2" in argv and "save_steps=3" in argv and "base_model=/m" in argv
    assert ZERO3_QUANT not in argv


def test_train_argv_zero3_stores_4bit_weights_as_bf16_and_keeps_the_skip_list():
    argv = train_argv(Path("/m"), Path("/o"), "zero3", 1, 6, 4, 3)
    sets = parse_set([argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
    recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, sets)
    assert recipe["bnb_config_kwargs"]["bnb_4bit_quant_storage"] == "bfloat16"
    assert "correction_coefs" in recipe["bnb_config_kwargs"]["llm_int8_skip_modules"]


def test_summarize_run_reads_rates_losses_and_resume():
    r = summarize_run("zero3 x1", LOG, warmup=1, returncode=0)
    assert r["tokens_per_s_per_gpu"] == 645
    assert r["peak_gib"] == 22.74
    assert r["losses"] == [12.9, 12.88, 12.89]
    assert r["grad_norm_finite"] is False
    assert r["resumed_from"] == "3"


def test_summarize_run_reports_a_failed_run():
    r = summarize_run("zero2 x4", "a\nb\nRuntimeError: NCCL timeout\n", warmup=1, returncode=1)
    assert r["error"].startswith("exit 1:") and "NCCL timeout" in r["error"]


def test_ddp_is_plain_ddp_and_the_micro_batch_is_the_benchmarks():
    argv = train_argv(Path("/m"), Path("/o"), "ddp", 2, 6, 2, 3, micro_batch=1)
    assert argv[argv.index("--deepspeed") + 1] == "none"
    assert "micro_batch_size=1" in argv and "gradient_accumulation_steps=2" in argv


def test_stop_targets_and_the_table():
    assert stage_gpus("ddp:2") == ("ddp", 2) and stage_gpus("") == ("", None)
    rows = [
        {
            "run": "ddp x1",
            "tokens_per_s_per_gpu": 1000.0,
            "per_gpu_efficiency": 1.0,
            "peak_gib": 15.7,
            "time_to_first_step_s": 61.2,
            "adapter_loads": True,
            "losses": [12.9, 12.88],
        },
        {
            "run": "ddp x2 (SIGTERM)",
            "tokens_per_s_per_gpu": None,
            "losses": [12.9],
            "exit_code": 143,
            "exit_after_stop_s": 3.4,
            "left_running": [],
        },
        {"run": "zero3 x2", "error": "exit 1: NCCL timeout"},
    ]
    table = format_table(rows).splitlines()
    assert table[1].split()[:8] == ["ddp", "x1", "1000", "100%", "15.7", "61", "True", "12.900"]
    assert table[2].endswith("exit 143 after 3.4 s, left 0")
    assert table[3] == f"{'zero3 x2':<24} exit 1: NCCL timeout"


def test_run_writes_each_line_to_its_log_as_it_comes(tmp_path):
    # The child waits to see its first line in the log before it ends: a call cut short keeps the log.
    log = tmp_path / "run.log"
    script = (
        "import pathlib, sys, time\n"
        "print('first line', flush=True)\n"
        "log = pathlib.Path(sys.argv[1])\n"
        "deadline = time.time() + 10\n"
        "while 'first line' not in (log.read_text() if log.exists() else '') and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('seen' if 'first line' in log.read_text() else 'not seen', flush=True)\n"
    )
    done = run([sys.executable, "-c", script, str(log)], tmp_path, log)
    assert done.code == 0
    assert log.read_text() == done.log == "first line\nseen\n"
