"""One launch per folder (a real flock held by real processes), and the pending recipe and record that
replace a finished run's only when the new run trains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from mathpal_train.run_folder import (
    FolderInUse,
    lock,
    promote_pending,
    read_pending,
    settle_pending,
    write_pending,
)
from mathpal_train.run_record import RUN_RECORD, read_record, write_record

# Another process that takes the folder, says so, and holds it until it is killed.
HOLDER = """
import sys, time
from mathpal_train.run_folder import lock
with lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_held_folder_refuses_a_second_launch_naming_the_live_one(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    write_record(out / "pending", {"status": "launched", "pid": holder.pid, "started_at": "2026-01-02T03:04:05Z"})
    try:
        with pytest.raises(FolderInUse) as err, lock(out):
            pass
        assert str(err.value) == (
            f"{out} is in use by a `mathpal train` that is still running (pid {holder.pid}, started "
            "2026-01-02T03:04:05Z): wait for it to end, or train into another folder (--set output_dir=outputs/NAME)"
        )
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock with the process
    holder.wait()
    started = time.monotonic()
    with lock(out) as fd:
        assert fd >= 0
    assert time.monotonic() - started < 1
    assert sorted(p.name for p in out.iterdir()) == []  # the lock adds no file


def test_pending_files_replace_the_finished_runs_only_when_training_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_record(out, {"status": "finished", "finished": True, "system_prompt": "old"})
    (out / "recipe.resolved.yml").write_text("lora_r: 16\n")
    (out / "debug.log").write_text("the finished run's log\n")
    launched = write_pending(out, "lora_r: 8\n", {"status": "launched", "system_prompt": "new"})
    assert launched == out / "pending" / "recipe.resolved.yml"
    assert read_record(out)["finished"] is True and (out / "recipe.resolved.yml").read_text() == "lora_r: 16\n"
    assert read_pending(out)["status"] == "launched"
    assert promote_pending(out) and not (out / "pending").exists()
    record = read_record(out)
    assert (record["status"], record["system_prompt"], "finished" in record) == ("training", "new", False)
    assert (out / "recipe.resolved.yml").read_text() == "lora_r: 8\n"
    assert not promote_pending(out) and settle_pending(out, {"status": "failed"}) is None  # nothing pending now


def test_a_launch_that_never_trains_puts_axolotls_truncated_log_back(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "debug.log").write_text("the finished run's log\n")
    write_pending(out, "lora_r: 8\n", {"status": "launched"})
    (out / "debug.log").unlink()  # Axolotl starts a new debug.log before it knows whether the run trains
    (out / "debug.log").write_text("the failed launch's log\n")
    path = settle_pending(out, {"status": "failed before training", "exit_code": 1})
    assert path == out / "pending" / RUN_RECORD
    assert json.loads(path.read_text())["status"] == "failed before training"
    assert (out / "debug.log").read_text() == "the finished run's log\n"
