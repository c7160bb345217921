"""The model artifact and the evaluation, added to the training run's own Comet experiment, read back
from the offline archives that real comet_ml writes (no key: offline, as on a machine without one)."""

from __future__ import annotations

import hashlib
import json

import pytest

from dataprep.artifact import log_dataset_artifact
from evals.evaluate import EvalSettings, run_eval
from mathpal_commands.evaluate import eval_settings
from mathpal_common.comet import (
    ARTIFACT_METADATA,
    COMET_PROJECT,
    QUIET_EXPERIMENT,
    flatten_metrics,
    read_offline_assets,
    read_offline_key,
    read_offline_metrics,
    read_offline_others,
)
from mathpal_train.model_artifact import log_model_artifact
from mathpal_train.trained_run import open_run


@pytest.fixture()
def training_archive(trained_run_dir, tmp_path, monkeypatch):
    """The training experiment as Axolotl's Comet callback leaves it offline: an archive under the
    key `mathpal train` gave the job (COMET_EXPERIMENT_KEY)."""
    import comet_ml

    monkeypatch.delenv("COMET_API_KEY", raising=False)
    key = open_run(trained_run_dir).experiment_key
    experiment = comet_ml.OfflineExperiment(
        project_name=COMET_PROJECT, offline_directory=str(tmp_path / "comet"), experiment_key=key, **QUIET_EXPERIMENT
    )
    experiment.log_metric("train/loss", 4.2, step=1)
    experiment.end()
    (archive,) = (tmp_path / "comet").glob("*.zip")
    return archive


def test_the_adapter_its_recipe_and_dataset_hash_go_into_the_training_experiment(trained_run_dir, training_archive):
    run = open_run(trained_run_dir)
    line = log_model_artifact(run, training_archive.parent)
    assert "model mathpal-adapter-tiny: its " in line and "upload it after the training archive" in line
    (archive,) = set(training_archive.parent.glob("*.zip")) - {training_archive}
    assert read_offline_key(archive) == read_offline_key(training_archive) == run.experiment_key
    assets = read_offline_assets(archive)
    for name in ("adapter_model.safetensors", "adapter_config.json", "recipe.resolved.yml", "mathpal_run.json"):
        assert assets[name] == ("asset", (trained_run_dir / name).read_bytes()), name
    assert "chat_template.jinja" in assets and "tokenizer.json" in assets
    others = read_offline_others(archive)
    assert (others["artifact"], others["artifact_type"]) == ("mathpal-adapter-tiny", "model")
    metadata = json.loads(assets[ARTIFACT_METADATA][1])
    assert metadata["recipe"] == run.recipe and metadata["base_model"] == run.recipe["base_model"]
    manifest = trained_run_dir.parents[1] / "data" / "manifest.json"
    assert metadata["dataset_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert metadata["dataset_artifact"] == "mathpal-vector_exams"


def test_the_dataset_artifact_carries_the_same_manifest_hash(trained_run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    data = trained_run_dir.parents[1] / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    log_dataset_artifact(data, manifest, tmp_path / "comet")
    (archive,) = (tmp_path / "comet").glob("*.zip")
    dataset = json.loads(read_offline_assets(archive)[ARTIFACT_METADATA][1])
    model_side = open_run(trained_run_dir).record["dataset"]["manifest_sha256"]
    assert dataset["manifest_sha256"] == model_side == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()


def test_eval_of_the_adapter_adds_its_metrics_to_the_training_experiment(
    trained_run_dir, tiny_model_dir, training_archive, tmp_path
):
    settings = EvalSettings(
        model=str(tiny_model_dir),
        data=trained_run_dir.parents[1] / "data" / "test.jsonl",
        adapter=str(trained_run_dir),
        limit=2,
        batch_size=2,
        max_new_tokens=4,
        report_dir=tmp_path / "report",
    )
    report, metrics = run_eval(eval_settings(settings))  # the command's loader: the run's experiment key
    (archive,) = (report / "comet").glob("*.zip")
    assert read_offline_key(archive) == read_offline_key(training_archive)
    logged = read_offline_metrics(archive)
    expected = flatten_metrics(metrics)
    assert {name: logged[name] for name in expected} == expected
    assert read_offline_others(archive)["eval_run"].startswith("eval-")  # the experiment keeps its training name
    assert sorted(read_offline_assets(archive)) == [
        "accuracy_by_topic.png",
        "metrics.json",
        "report.md",
        "samples.csv",
        "samples.jsonl",
    ]
