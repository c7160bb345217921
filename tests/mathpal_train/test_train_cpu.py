"""`mathpal train` for real on the CPU: resume after a kill, the Comet loss curve, no secrets leaked,
and the recipe's speed plugin loaded by Axolotl and running its fused loss.

Slow: Axolotl trains the tiny Gemma-3n through `accelerate launch` (twice).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from benchmarks.train_multi_gpu import processes_with
from mathpal_common.comet import ARTIFACT_METADATA, read_offline_assets, read_offline_key, read_offline_others
from mathpal_train.run_record import read_record
from mathpal_train.run_state import adapter_problem, checkpoint_state, checkpoints, read_marker

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FAKE_HF_TOKEN = "hf_" + "x" * 34
FAKE_COMET_KEY = "comet-key-" + "y" * 20
TRAIN_ARGS = [
    "train",
    str(REPO / "recipes" / "smoke.yml"),
    "--num-gpus",
    "0",
    "--max-steps",
    "40",
    "--set",
    "output_dir=outputs/resume",
    "--set",
    "save_strategy=steps",
    "--set",
    "save_steps=10",
    "--set",
    "eval_steps=20",
    "--set",
    "auto_resume_from_checkpoints=true",
    "--set",
    "use_comet=true",
    "--set",
    "comet_project_name=mathpal-test",
]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mathpal_cli", *args]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    for args in (["seed-qdrant", "--problems", "200"], ["prepare-data"], ["tiny-model", "--vocab-size", "512"]):
        subprocess.run(cli(*args), cwd=work, check=True, capture_output=True)
    return work


@pytest.fixture(scope="module")
def resumed_run(workdir):
    """Start training, SIGKILL it once checkpoint-10 is complete, then run the same command again
    (with a Comet key whose server does not answer)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env["HF_TOKEN"] = FAKE_HF_TOKEN
    first = subprocess.Popen(
        cli(*TRAIN_ARGS),
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    outputs = workdir / "outputs" / "resume"
    deadline = time.monotonic() + 300
    while not (outputs / "checkpoint-10" / "trainer_state.json").exists():
        assert first.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    complete = sorted(
        int(p.name.split("-")[1]) for p in outputs.glob("checkpoint-*") if (p / "trainer_state.json").exists()
    )
    # The rerun has a Comet key whose server does not answer: it must log offline, not drop the metrics.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/clientlib/"
    env = {**env, "COMET_API_KEY": FAKE_COMET_KEY, "COMET_URL_OVERRIDE": closed}
    second = subprocess.run(cli(*TRAIN_ARGS), cwd=workdir, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return outputs, complete[-1], second.stdout + second.stderr


def test_rerun_resumes_from_the_last_checkpoint(resumed_run):
    outputs, last, log = resumed_run
    assert last < 40
    assert f"resume from checkpoint at outputs/resume/checkpoint-{last}" in log
    state = json.loads((outputs / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    assert (outputs / "adapter_model.safetensors").is_file()
    assert (outputs / "logs" / "training.log").read_text(errors="replace").count("Training completed") >= 1


def test_offline_comet_archive_holds_the_loss_curve(resumed_run):
    outputs, _, _ = resumed_run
    # The killed run leaves an empty archive (comet_ml writes it at exit); the rerun's is whole,
    # and beside it is the model artifact's.
    archives = [
        a
        for a in (outputs / "comet").glob("*.zip")
        if "messages.json" in zipfile.ZipFile(a).namelist() and "artifact" not in read_offline_others(a)
    ]
    assert len(archives) == 1, sorted((outputs / "comet").iterdir())
    steps = set()
    for archive in archives:
        with zipfile.ZipFile(archive) as zf:
            for line in zf.read("messages.json").decode().splitlines():
                msg = json.loads(line)
                metric = msg.get("payload", {}).get("metric") if msg.get("type") == "metric_msg" else None
                if metric and metric["metricName"] == "train/loss":
                    steps.add(metric["step"])
    assert len(steps) >= 4, steps


def test_the_run_is_one_experiment_with_its_adapter_as_model_artifact(resumed_run):
    """The finished launch and its model artifact log under the key `mathpal train` recorded (the
    killed launch had a key of its own)."""
    outputs, _, log = resumed_run
    record = json.loads((outputs / "mathpal_run.json").read_text())
    key = record["comet"]["experiment_key"]
    assert record["status"] == "finished" and record["system_prompt"]
    archives = [a for a in (outputs / "comet").glob("*.zip") if "messages.json" in zipfile.ZipFile(a).namelist()]
    assert len(archives) == 2 and {read_offline_key(a) for a in archives} == {key}, archives
    (artifact,) = [a for a in archives if read_offline_others(a).get("artifact_type") == "model"]
    assets = read_offline_assets(artifact)
    assert assets["adapter_model.safetensors"][1] == (outputs / "adapter_model.safetensors").read_bytes()
    metadata = json.loads(assets[ARTIFACT_METADATA][1])
    assert metadata["dataset_manifest_sha256"] == record["dataset"]["manifest_sha256"] is not None
    assert metadata["recipe"]["output_dir"] == "outputs/resume"
    assert "Comet offline archive" in log and "model mathpal-adapter-resume" in log


def test_no_secret_in_recipe_logs_or_comet(resumed_run):
    outputs, _, log = resumed_run
    places = [outputs / "recipe.resolved.yml", outputs / "logs" / "training.log", outputs / "debug.log"]
    texts = [p.read_text(errors="replace") for p in places] + [log]
    for archive in (outputs / "comet").glob("*.zip"):
        with zipfile.ZipFile(archive) as zf:
            texts += [zf.read(name).decode(errors="replace") for name in zf.namelist()]
    assert not [t for t in texts if FAKE_HF_TOKEN in t or FAKE_COMET_KEY in t]


def test_a_comet_key_without_a_server_logs_offline_with_one_warning(resumed_run):
    outputs, _, log = resumed_run
    warnings = [line for line in log.splitlines() if line.startswith("warning: CometML server")]
    assert len(warnings) == 1 and "unreachable within 10 s (ConnectionError)" in warnings[0]
    assert f"this run logs to the offline archive {outputs.relative_to(outputs.parents[1])}/comet" in warnings[0]
    assert "Your experiment will not be logged" not in log


def test_the_recipes_speed_plugin_loads_and_its_fused_loss_trains_and_evaluates(resumed_run):
    """smoke.yml names Gemma3nSpeedPlugin: Axolotl loads it and both training and eval run its torch path.

    (Axolotl skips a plugin that fails to import with only a log line, so it is read from the log.)
    """
    outputs, _, log = resumed_run
    both_runs = (outputs / "logs" / "training.log").read_text(errors="replace")
    assert both_runs.count("Plugin loaded successfully: mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin") == 2
    assert "Gemma3nSpeedPlugin: Gemma3nForCausalLM trains with the fused loss (logits=None)" in both_runs
    assert "Gemma-3n fused loss ran on the torch path (train)" in both_runs
    assert "Gemma-3n fused loss ran on the torch path (eval)" in both_runs
    assert "fused loss ran on the liger path" not in both_runs
    assert "Plugin loaded successfully" not in log  # the terminal shows the losses, the log everything


# --------------------------------------------------------------------------- stops: SIGTERM, SIGINT, a killed save

STOP_ARGS = [
    "train",
    str(REPO / "recipes" / "smoke.yml"),
    "--num-gpus",
    "0",
    "--set",
    "output_dir=outputs/stop",
    "--set",
    "save_strategy=steps",
    "--set",
    "save_steps=5",
    "--set",
    "eval_steps=1000",
    "--set",
    "auto_resume_from_checkpoints=true",
]


def stop_after_checkpoint(workdir, signum: int, after_step: int, max_steps: int = 400) -> dict:
    """Start `mathpal train`, send ``signum`` to it alone (as a scheduler or Ctrl-C would) once a
    checkpoint past ``after_step`` is complete, and report how the job ended."""
    outputs = workdir / "outputs" / "stop"
    proc = subprocess.Popen(
        cli(*STOP_ARGS, "--max-steps", str(max_steps)),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # not our process group: the signal goes to mathpal only
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 400
    while not any(step > after_step and checkpoint_state(path) for step, path in checkpoints(outputs)):
        assert proc.poll() is None, b"".join(lines)[-3000:].decode(errors="replace")
        assert time.monotonic() < deadline, "no new checkpoint after 400 s"
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    seconds = time.monotonic() - sent
    reader.join(timeout=10)
    time.sleep(1)
    return {"code": code, "seconds": seconds, "left": processes_with(str(outputs)), "output": b"".join(lines)}


@pytest.fixture(scope="module")
def stops(workdir):
    """SIGTERM a run, fake a save killed half-way, rerun it to the end, then SIGINT a longer rerun."""
    outputs = workdir / "outputs" / "stop"
    term = stop_after_checkpoint(workdir, signal.SIGTERM, after_step=0)
    term["checkpoints"] = [step for step, path in checkpoints(outputs) if checkpoint_state(path)]
    term["adapter_problem"] = adapter_problem(outputs)
    term["record"] = read_record(outputs)
    last = term["checkpoints"][-1]
    half_saved = outputs / f"checkpoint-{last + 5}"  # what a kill during the next save leaves
    half_saved.mkdir()
    (half_saved / "tokens_state.json").write_text("{}")
    rerun = subprocess.run(
        cli(*STOP_ARGS, "--max-steps", str(last + 5)), cwd=workdir, capture_output=True, text=True, timeout=600
    )
    finished = {"rerun": rerun, "last": last, "marker": read_marker(outputs), "problem": adapter_problem(outputs)}
    interrupt = stop_after_checkpoint(workdir, signal.SIGINT, after_step=last + 5)
    interrupt["adapter_problem"] = adapter_problem(outputs)
    interrupt["record"] = read_record(outputs)
    evaluated = subprocess.run(
        cli("eval", "--adapter", "outputs/stop", "--limit", "1", "--no-comet"),
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    interrupt["asked"] = subprocess.run(
        cli("ask", "--adapter", "outputs/stop", "Tính 2 + 3."), cwd=workdir, capture_output=True, text=True
    )
    interrupt["merged"] = subprocess.run(cli("merge", "outputs/stop"), cwd=workdir, capture_output=True, text=True)
    interrupt["merged_dir"] = (outputs / "merged").exists()
    hangup = stop_after_checkpoint(
        workdir, signal.SIGHUP, after_step=max(step for step, path in checkpoints(outputs) if checkpoint_state(path))
    )
    hangup["record"] = read_record(outputs)
    return term, finished, interrupt, evaluated, hangup


def test_sigterm_stops_the_whole_job_with_143_and_keeps_the_last_checkpoint(stops):
    term, _, _, _, _ = stops
    assert term["code"] == 128 + signal.SIGTERM, term["output"][-3000:]
    assert term["seconds"] < 30
    assert term["left"] == []  # no rank left training, holding the GPU
    assert term["checkpoints"], "a complete checkpoint stays usable"
    # SIGTERM saves nothing into output_dir: eval refuses the folder (no weights), and would refuse any there
    assert "no adapter weights" in term["adapter_problem"]
    assert (term["record"]["status"], term["record"]["signal"], term["record"]["exit_code"]) == (
        "stopped",
        "SIGTERM",
        143,
    )


def test_a_half_saved_checkpoint_is_moved_aside_and_the_run_resumes_from_the_last_complete_one(stops, workdir):
    _, finished, _, _, _ = stops
    rerun, last = finished["rerun"], finished["last"]
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (
        f"warning: outputs/stop/checkpoint-{last + 5} is an incomplete checkpoint (its save was interrupted): "
        f"moved to outputs/stop/incomplete-checkpoint-{last + 5}; resuming from the last complete one"
    ) in rerun.stderr
    assert f"resume from checkpoint at outputs/stop/checkpoint-{last}" in rerun.stdout + rerun.stderr
    assert (workdir / "outputs" / "stop" / f"incomplete-checkpoint-{last + 5}" / "tokens_state.json").is_file()
    assert finished["marker"]["global_step"] == last + 5 and finished["problem"] is None


def test_sigint_saves_stops_with_130_and_the_saved_weights_are_not_taken_for_a_finished_adapter(stops):
    _, _, interrupt, evaluated, _ = stops
    assert interrupt["code"] == 128 + signal.SIGINT, interrupt["output"][-3000:]
    assert interrupt["seconds"] < 30 and interrupt["left"] == []
    assert "was not marked finished" in interrupt["adapter_problem"]
    assert (interrupt["record"]["status"], interrupt["record"]["signal"]) == ("stopped", "SIGINT")
    for result, prefix in ((evaluated, "--adapter "), (interrupt["asked"], "--adapter "), (interrupt["merged"], "")):
        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith(f"error: {prefix}outputs/stop is a training run that was not marked finished")
        assert "--allow-unfinished" in lines[-1]
    assert not interrupt["merged_dir"]  # merge wrote nothing from the interrupted weights


def test_sighup_stops_the_job_like_sigterm_with_129_and_records_it(stops):
    """A closed terminal (SIGHUP to `mathpal train`): the job stops as for SIGTERM, and the record says so."""
    _, _, _, _, hangup = stops
    assert hangup["code"] == 128 + signal.SIGHUP, hangup["output"][-3000:]
    assert hangup["seconds"] < 30 and hangup["left"] == []
    assert (hangup["record"]["status"], hangup["record"]["signal"], hangup["record"]["exit_code"]) == (
        "stopped",
        "SIGHUP",
        129,
    )
