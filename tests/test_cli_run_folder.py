"""A run's folder tells the truth, done for real: `mathpal train` trains the tiny Gemma-3n on the CPU.

New data is never trained from an old tokenised cache; two runs never share a folder; a dry run
or a refused rerun changes nothing in a finished run's folder, and a rerun that fails before
training keeps it; the job outlives a closed stdout and a full disk under its log; the record
ends true; the terminal shows the losses, not the libraries.

Slow: about ten CPU training runs of a few steps each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mathpal_train.run_record import read_record
from mathpal_train.run_state import adapter_problem
from tests.test_cli_faults import in_namespace, last_error, tree

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
NEW_PROMPT = "Bạn là MathPal phiên bản mới: hãy giải thật ngắn gọn và kết thúc bằng 'Đáp số: ...'."
# What the libraries print before training starts, and that the terminal must not show.
NOISE = ("[INFO]", "[WARNING]", "Failed to load", "_pytree", '"activation_offloading"', "Tokenizing Prompts")


def mathpal(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mathpal_cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def train_args(output: str, steps: int = 2, *more: str) -> list[str]:
    return [
        "train",
        str(REPO / "recipes" / "smoke.yml"),
        "--num-gpus",
        "0",
        "--max-steps",
        str(steps),
        "--set",
        f"output_dir={output}",
        "--set",
        "eval_steps=1000",
        "--set",
        "logging_steps=1",
        *more,
    ]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("run-folder")
    for args in (["seed-qdrant", "--problems", "120"], ["prepare-data"], ["tiny-model", "--vocab-size", "512"]):
        ok(mathpal(*args, cwd=work))
    return work


# --------------------------------------------------------------------------- stale data


@pytest.fixture(scope="module")
def two_exports(workdir):
    """Train, refuse an emptied train.jsonl, re-export every row with a new system prompt, train again."""
    first = ok(mathpal(*train_args("outputs/data"), cwd=workdir))
    first_record = read_record(workdir / "outputs" / "data")
    train = workdir / "data" / "train.jsonl"
    rows = train.read_bytes()
    train.write_bytes(b"")
    before = tree(workdir / "outputs" / "data")
    emptied = mathpal(*train_args("outputs/data"), cwd=workdir)
    emptied_tree = tree(workdir / "outputs" / "data")
    train.write_bytes(rows)
    (workdir / "prompt.txt").write_text(NEW_PROMPT, encoding="utf-8")
    ok(mathpal("prepare-data", "--system-prompt-file", "prompt.txt", cwd=workdir))
    second = ok(mathpal(*train_args("outputs/data"), cwd=workdir))
    return {
        "first": first,
        "first_record": first_record,
        "emptied": emptied,
        "emptied_changed": before != emptied_tree,
        "second": second,
        "second_record": read_record(workdir / "outputs" / "data"),
    }


def test_an_emptied_train_file_is_refused_before_launch_and_changes_nothing(two_exports):
    emptied = two_exports["emptied"]
    assert emptied.returncode == 2 and "accelerate" not in emptied.stdout
    assert " data/train.jsonl has no rows (the file is empty): re-export it" in last_error(emptied.stderr)
    assert not two_exports["emptied_changed"]


def test_new_data_is_tokenised_afresh_and_the_record_names_exactly_the_files_trained_on(two_exports, workdir):
    first, second = two_exports["first_record"], two_exports["second_record"]
    assert second["status"] == "finished" and second["system_prompt"] == NEW_PROMPT
    files = {
        str(workdir / "data" / f"{name}.jsonl"): sha256(workdir / "data" / f"{name}.jsonl")
        for name in ("train", "validation")
    }
    assert second["dataset"]["files"] == files and first["dataset"]["files"] != files
    assert second["dataset"]["manifest_sha256"] == sha256(workdir / "data" / "manifest.json")
    old, new = Path(first["dataset"]["prepared_path"]), Path(second["dataset"]["prepared_path"])
    assert old != new and old.parent == new.parent == workdir / ".mathpal" / "prepared" / "smoke"
    assert f"tokenised data: {new.relative_to(workdir)} (tokenising now;" in two_exports["second"].stdout
    log = (workdir / "outputs" / "data" / "logs" / "training.log").read_text(errors="replace")
    assert "Loading prepared dataset from disk" not in log
    # The tokens the second run trained on hold the new export's rows, not the first's.
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / ".mathpal" / "tiny-gemma3n")
    (train_cache,) = [p for p in new.iterdir() if p.is_dir() and len(load_from_disk(p)) > 50]
    assert NEW_PROMPT in tokenizer.decode(load_from_disk(train_cache)[0]["input_ids"])


def test_the_terminal_shows_losses_and_the_log_holds_everything(two_exports, workdir):
    shown = two_exports["first"].stdout + two_exports["first"].stderr
    assert not [marker for marker in NOISE if marker in shown], shown
    assert "{'loss': " in shown and "Training completed! Saving trained model to outputs/data." in shown
    assert len(shown.splitlines()) < 20, shown
    log = (workdir / "outputs" / "data" / "logs" / "training.log").read_text(errors="replace")
    assert '"activation_offloading"' in log and "Tokenizing Prompts" in log  # Axolotl's whole output


def test_ask_from_another_folder_finds_the_base_model_by_its_absolute_path(two_exports, workdir, tmp_path):
    assert two_exports["second_record"]["base_model"] == str(workdir / ".mathpal" / "tiny-gemma3n")
    asked = ok(
        mathpal(
            "ask", "--adapter", str(workdir / "outputs" / "data"), "--max-new-tokens", "4", "Tính 2 + 3.", cwd=tmp_path
        )
    )
    assert asked.stdout.startswith(f"tutor: base {workdir / '.mathpal' / 'tiny-gemma3n'} + adapter ")


# --------------------------------------------------------------------------- one run per folder


@pytest.fixture(scope="module")
def crossed(two_exports, workdir):
    """Start a run, then a second one into the same folder two seconds after the first took it."""
    first = subprocess.Popen(
        [sys.executable, "-m", "mathpal_cli", *train_args("outputs/crossed", 30, "--set", "lora_r=4")],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pending = workdir / "outputs" / "crossed" / "pending" / "mathpal_run.json"
    deadline = time.monotonic() + 120
    while not pending.exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(2)
    started = time.monotonic()
    second = mathpal(*train_args("outputs/crossed", 30, "--set", "lora_r=8"), cwd=workdir)
    seconds = time.monotonic() - started
    output, _ = first.communicate(timeout=600)
    return first, output, second, seconds


def test_a_second_train_into_a_live_runs_folder_is_refused_in_one_line(crossed, workdir):
    first, output, second, seconds = crossed
    assert first.returncode == 0, output[-3000:]
    assert second.returncode == 2 and seconds < 60 and second.stdout == ""  # refused before printing anything
    assert last_error(second.stderr) == (
        f"error: outputs/crossed is in use by a `mathpal train` that is still running (pid {first.pid}, started "
        f"{read_record(workdir / 'outputs' / 'crossed')['started_at']}): wait for it to end, or train into another "
        "folder (--set output_dir=outputs/NAME)"
    )
    out = workdir / "outputs" / "crossed"
    assert yaml.safe_load((out / "recipe.resolved.yml").read_text())["lora_r"] == 4  # its own recipe
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    log = (out / "logs" / "training.log").read_text(errors="replace")
    assert log.count("Plugin loaded successfully: mathpal_train.run_state.RunStatePlugin") == 1  # one job's output


def test_unchanged_data_reuses_its_tokenised_cache(crossed, two_exports, workdir):
    _, output, _, _ = crossed
    cache = Path(two_exports["second_record"]["dataset"]["prepared_path"]).relative_to(workdir)
    assert f"tokenised data: {cache} (tokenised by an earlier run of the same files;" in output
    log = (workdir / "outputs" / "crossed" / "logs" / "training.log").read_text(errors="replace")
    assert f"Loading prepared dataset from disk at {cache}/" in log


# --------------------------------------------------------------------------- a finished run's folder is kept


@pytest.fixture(scope="module")
def reruns(two_exports, workdir):
    """On the finished run: a dry run, a refused rerun (BATCH_SIZE=0), a rerun that fails before training."""
    out = workdir / "outputs" / "data"
    before = tree(out)
    dry = ok(mathpal(*train_args("outputs/data"), "--dry-run", cwd=workdir))
    after_dry = tree(out)
    refused = mathpal(*train_args("outputs/data"), cwd=workdir, env={**os.environ, "BATCH_SIZE": "0"})
    after_refused = tree(out)
    failed = mathpal(*train_args("outputs/data", 2, "--set", "lora_target_modules=no_such_module"), cwd=workdir)
    after_failed = tree(out)
    merged = ok(mathpal("merge", "outputs/data", cwd=workdir))
    return before, dry, after_dry, refused, after_refused, failed, after_failed, merged


def test_a_dry_run_and_a_refused_rerun_change_nothing_in_a_finished_runs_folder(reruns):
    before, dry, after_dry, refused, after_refused, _, _, _ = reruns
    assert "dry run: nothing written, nothing launched" in dry.stdout and after_dry == before
    assert refused.returncode == 2 and after_refused == before
    assert last_error(refused.stderr) == (
        "error: BATCH_SIZE=0: micro_batch_size is 0; it must be a whole number of at least 1"
    )


def test_a_rerun_that_fails_before_training_keeps_the_finished_run(reruns, workdir):
    before, _, _, _, _, failed, after, merged = reruns
    out = workdir / "outputs" / "data"
    assert failed.returncode == 1
    error = last_error(failed.stderr)
    assert error.startswith("error: training failed (exit 1): ValueError: Target modules") and "\n" not in error
    assert "failed (exit 1) before training started: outputs/data is as it was; this launch's record: " in failed.stdout
    kept = {name: data for name, data in after.items() if not name.startswith(("pending/", "logs/"))}
    assert kept == {name: data for name, data in before.items() if not name.startswith("logs/")}  # debug.log too
    pending = json.loads(after["pending/mathpal_run.json"])
    assert (pending["status"], pending["exit_code"]) == ("failed before training", 1)
    assert pending["error"].startswith("ValueError: Target modules")
    assert adapter_problem(out) is None  # eval, ask and merge still take the finished adapter
    assert (out / "merged" / "recipe.resolved.yml").read_bytes() == before["recipe.resolved.yml"]
    assert "Merged model written to" in merged.stdout


# --------------------------------------------------------------------------- the job outlives its messenger


def test_a_closed_stdout_does_not_end_training(workdir):
    """`mathpal train … | head -n 5`: head exits after five lines; training goes on to the end."""
    command = shlex.join([sys.executable, "-m", "mathpal_cli", *train_args("outputs/head")])
    script = f'{command} | head -n 5; echo "status=${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert "status=0" in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(result.stdout.splitlines()) == 5
    out = workdir / "outputs" / "head"
    assert read_record(out)["status"] == "finished" and adapter_problem(out) is None
    assert "Training completed!" in (out / "logs" / "training.log").read_text(errors="replace")


def test_a_full_disk_under_the_log_does_not_end_training(workdir):
    """The copied log's disk fills up (an 8 KiB tmpfs; the job writes ~20 KiB): one warning; training, the
    terminal and the record go on."""
    (workdir / "outputs" / "full" / "logs").mkdir(parents=True)
    command = shlex.join([sys.executable, "-m", "mathpal_cli", *train_args("outputs/full")])
    script = f"mount -t tmpfs -o size=8k tmpfs outputs/full/logs && {command} > full.out; echo rc=$? > full.rc"
    result = in_namespace(script, workdir)
    assert (workdir / "full.rc").read_text().strip() == "rc=0", result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: cannot write outputs/full/logs/training.log: No space left on device: the rest of the job's output "
        "is not logged; training goes on"
    ]
    assert "Training completed!" in (workdir / "full.out").read_text()
    record = read_record(workdir / "outputs" / "full")
    assert record["status"] == "finished" and record["log"].startswith("incomplete: cannot write outputs/full/logs")
    assert adapter_problem(workdir / "outputs" / "full") is None
