"""The launch plan and the exact accelerate argv (no training here; tests/test_cli.py goes through `mathpal train`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mathpal_train.launch import (
    DEEPSPEED_DIR,
    LaunchError,
    LaunchPlan,
    build_launch_argv,
    launch_env,
    plan_launch,
    run_logged,
    visible_gpus,
)

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


TAIL = ["--dynamo_backend", "no", "-m", "axolotl.cli.train", "r.yml"]


@pytest.mark.parametrize(
    "gpus, middle",
    [
        (0, ["--num_processes", "1", "--num_machines", "1", "--cpu", "--mixed_precision", "no"]),
        (1, ["--num_processes", "1", "--num_machines", "1"]),
        (2, ["--num_processes", "2", "--num_machines", "1", "--multi_gpu"]),
        (8, ["--num_processes", "8", "--num_machines", "1", "--multi_gpu"]),
    ],
)
def test_argv_for_0_1_2_8_gpus(gpus, middle):
    assert build_launch_argv(Path("r.yml"), LaunchPlan(gpus)) == [ACCELERATE, "launch", *middle, *TAIL]


def test_argv_for_two_nodes_counts_all_processes():
    plan = LaunchPlan(8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29501)
    argv = build_launch_argv(Path("r.yml"), plan)
    assert argv == [
        ACCELERATE,
        "launch",
        "--num_processes",
        "16",
        "--num_machines",
        "2",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "10.0.0.1",
        "--main_process_port",
        "29501",
        "--multi_gpu",
        *TAIL,
    ]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1,3"}, 3),
        ({"CUDA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 0),
        ({}, 0),
    ],  # this machine has no GPU, so torch sees none
)
def test_visible_gpus(env, expected):
    assert visible_gpus(env) == expected


def test_run_logged_tees_output_and_returns_the_exit_code(tmp_path, capfd):
    code = run_logged(
        [sys.executable, "-c", "print('hello'); import sys; sys.exit(3)"], {}, tmp_path / "logs" / "t.log"
    )
    assert code == 3
    assert (tmp_path / "logs" / "t.log").read_text() == "hello\n"
    assert "hello" in capfd.readouterr().out


def test_launch_env_turns_telemetry_off_and_keeps_the_rest():
    env = launch_env({"PATH": "/bin", "AXOLOTL_DO_NOT_TRACK": "0"})
    assert env == {"PATH": "/bin", "AXOLOTL_DO_NOT_TRACK": "1"}


@pytest.mark.parametrize(
    "gpus, deepspeed, expected",
    [
        (0, None, None),
        (1, None, None),
        (1, "zero1", "zero1.json"),
        (2, None, "zero2.json"),
        (8, "zero3", "zero3_bf16.json"),
    ],
)
def test_plan_picks_zero2_for_several_gpus_and_finds_presets_from_anywhere(
    gpus, deepspeed, expected, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # outside the checkout: the presets are found beside the package
    plan = plan_launch(gpus, deepspeed, env={}, check_visible=False)
    assert plan.gpus == gpus and plan.processes == max(gpus, 1)
    assert plan.deepspeed == (DEEPSPEED_DIR / expected if expected else None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_gpus": 2}, "--num-gpus 2 asked for, but 0 GPU(s) visible"),
        ({"num_gpus": 1, "deepspeed": "zero9", "check_visible": False}, "--deepspeed zero9: unknown ZeRO stage"),
        (
            {"num_gpus": 1, "deepspeed": "missing.json", "check_visible": False},
            "--deepspeed missing.json: missing.json",
        ),
        ({"num_gpus": 0, "num_machines": 2}, "--num-machines 2 needs --machine-rank and --main-process-ip"),
    ],
)
def test_plan_refuses_what_cannot_run_in_one_line(kwargs, message):
    with pytest.raises(LaunchError, match=re.escape(message)):
        plan_launch(env={}, **kwargs)


def test_plan_uses_the_visible_gpus_when_none_are_asked_for():
    assert plan_launch(None, env={"CUDA_VISIBLE_DEVICES": "0,1"}).deepspeed.name == "zero2.json"
    assert plan_launch(None, env={"CUDA_VISIBLE_DEVICES": ""}).gpus == 0
