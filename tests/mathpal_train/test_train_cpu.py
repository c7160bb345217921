"""`mathpal train` for real on the CPU: resume after a kill, the Comet loss curve, no secrets leaked.

Slow: Axolotl trains the tiny Gemma-3n through `accelerate launch` (twice).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from mathpal_train.comet import ARTIFACT_METADATA, read_offline_assets, read_offline_key, read_offline_others

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FAKE_HF_TOKEN = "hf_" + "x" * 34
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
    """Start training, SIGKILL it once checkpoint-10 is complete, then run the same command again."""
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
    assert not [t for t in texts if FAKE_HF_TOKEN in t]
