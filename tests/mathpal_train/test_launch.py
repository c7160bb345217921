"""The launch plan, the exact accelerate argv, and the job's copier done for real with stand-in jobs
(real processes, pipes, signals and a full tmpfs; no training here: tests/test_cli_run_folder.py trains)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
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
from tests.test_cli_faults import in_namespace

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
    job = "print('hello', flush=True); raise SystemExit('ValueError: a bad row')"
    end = run_logged([sys.executable, "-c", job], {}, tmp_path / "logs" / "t.log")
    assert (end.code, end.stop, end.log_problem) == (1, None, None)
    assert end.last_error == "ValueError: a bad row"
    assert (tmp_path / "logs" / "t.log").read_text() == "hello\nValueError: a bad row\n"
    assert "hello" in capfd.readouterr().out


def pick_dict(line: str) -> str | None:
    return line[line.index("{") :] if "{" in line else None


def test_the_terminal_gets_the_lines_show_picks_and_the_log_everything(tmp_path, capfd):
    job = "import sys; print('noise'); print('\\r 5%|#| 1/20 {\\'loss\\': \\'7.1\\'}'); sys.stdout.write('tail')"
    end = run_logged([sys.executable, "-c", job], {}, tmp_path / "t.log", show=pick_dict)
    assert end.code == 0
    assert capfd.readouterr().out == "{'loss': '7.1'}\n"
    assert (tmp_path / "t.log").read_bytes() == b"noise\n\r 5%|#| 1/20 {'loss': '7.1'}\ntail"


# A stand-in job: writes its pid, prints LINES lines (one every SLEEP s), notes a SIGTERM, ends by itself.
JOB = """
import os, signal, sys, time
out = sys.argv[1]
def stopped(signum, frame):
    open(os.path.join(out, "job_stopped"), "w").write(signal.Signals(signum).name)
    sys.exit(143)
signal.signal(signal.SIGTERM, stopped)
open(os.path.join(out, "job_pid"), "w").write(str(os.getpid()))
for i in range(int(sys.argv[2])):
    print(f"line {i} " + "x" * 200, flush=True)
    time.sleep(float(sys.argv[3]))
open(os.path.join(out, "job_done"), "w").write("done")
"""
# `mathpal train`'s copier around the stand-in job, as its own process: it exits with the job's code.
RUNNER = """
import json, sys
from pathlib import Path
from mathpal_train.launch import run_logged
out, lines, sleep, job = sys.argv[1:5]
end = run_logged([sys.executable, job, out, lines, sleep], {}, Path(out) / "logs" / "job.log",
                 warn=lambda line: print("warning: " + line, file=sys.stderr))
open(out + "/end.json", "w").write(json.dumps({"code": end.code, "stop": end.stop, "log_problem": end.log_problem}))
print("copier done")
sys.exit(end.code)
"""


def runner(out: Path, lines: int, sleep: float) -> list[str]:
    """The copier's command line, its script and the stand-in job's written into ``out``."""
    (out / "runner.py").write_text(RUNNER)
    (out / "job.py").write_text(JOB)
    return [sys.executable, str(out / "runner.py"), str(out), str(lines), str(sleep), str(out / "job.py")]


def ended(out: Path) -> dict:
    return json.loads((out / "end.json").read_text())


def test_a_closed_stdout_never_ends_the_job(tmp_path):
    """`mathpal train … | head -n 3`: head exits after three lines; the job and the log go on to the end."""
    script = f'{shlex.join(runner(tmp_path, 300, 0.002))} | head -n 3; echo "status=${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "status=0" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert (tmp_path / "job_done").is_file() and ended(tmp_path) == {"code": 0, "stop": None, "log_problem": None}
    assert (tmp_path / "logs" / "job.log").read_text().count("\n") == 300


def test_a_full_disk_under_the_log_never_ends_the_job(tmp_path):
    """The log's disk fills up (a small tmpfs): one warning line, the terminal copy and the job go on."""
    (tmp_path / "logs").mkdir()
    script = f"mount -t tmpfs -o size=16k tmpfs logs && {shlex.join(runner(tmp_path, 200, 0.001))} > out.txt; "
    script += "echo rc=$? > rc.txt"
    result = in_namespace(script, tmp_path)
    assert (tmp_path / "rc.txt").read_text().strip() == "rc=0", result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: cannot write {tmp_path}/logs/job.log: No space left on device: the rest of the job's output "
        "is not logged; training goes on"
    ]
    assert (tmp_path / "job_done").is_file() and ended(tmp_path)["log_problem"].endswith("No space left on device")
    assert (tmp_path / "out.txt").read_text().count("line ") == 200  # the terminal got every line


def start_runner(out: Path, **popen) -> subprocess.Popen:
    proc = subprocess.Popen(runner(out, 10_000, 0.01), stdout=subprocess.DEVNULL, start_new_session=True, **popen)
    deadline = time.monotonic() + 60
    while not (out / "job_pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_sighup_stops_the_job_as_sigterm_does_and_exits_129(tmp_path):
    proc = start_runner(tmp_path)
    job = int((tmp_path / "job_pid").read_text())
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 128 + signal.SIGHUP
    assert (tmp_path / "job_stopped").read_text() == "SIGTERM"  # passed on as SIGTERM
    assert ended(tmp_path) == {"code": 129, "stop": signal.SIGHUP, "log_problem": None}
    assert gone(job) and not (tmp_path / "job_done").exists()


def test_under_nohup_a_hangup_changes_nothing(tmp_path):
    """SIGHUP ignored by the parent (`nohup mathpal train`): the copier and the job keep ignoring it."""
    proc = start_runner(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    job = int((tmp_path / "job_pid").read_text())
    proc.send_signal(signal.SIGHUP)
    os.kill(job, signal.SIGHUP)  # a hung-up terminal signals its whole process group
    time.sleep(1)
    assert proc.poll() is None and not gone(job)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM


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
